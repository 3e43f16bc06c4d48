"""Helpers of the state-machine tests: every replicated key and value of a store."""

from __future__ import annotations

from quorumlog.node.state.state_machine import STATE_PREFIXES
from quorumlog.node.storage.raft_store import RocksStorage


def dump(storage: RocksStorage) -> list[tuple[bytes, bytes]]:
    """Every state machine key and value, in key order."""
    pairs: list[tuple[bytes, bytes]] = []
    for prefix in STATE_PREFIXES:
        iterator = storage.db.iter()
        iterator.seek(prefix)
        while iterator.valid() and iterator.key().startswith(prefix):
            pairs.append((iterator.key(), iterator.value()))
            iterator.next()
    return pairs
