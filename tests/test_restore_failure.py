"""A state restore whose own write or fsync fails ends the Raft loop (fatal, never retried),
while a peer that cannot serve the state is just skipped for the next one. A chaos soak found
the first one retried forever: the EIO of an fsync during a restore was taken for the peer's
failure (issue 21)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import pytest

from quorumlog.node.replication.applier import EntryResult
from quorumlog.node.replication.raft_node import RaftNode
from quorumlog.node.storage.log_store import MemoryLogStore
from quorumlog.raft import Entry


class FailingImport:
    """A state machine whose imports fail with the errors given, one per attempt."""

    def __init__(self, failures: list[Exception | None]) -> None:
        self.failures = failures
        self.imports = 0
        self._applied = 0

    def applied_index(self) -> int:
        return self._applied

    @property
    def import_incomplete(self) -> bool:
        return False

    def apply(self, entries: Iterable[Entry]) -> list[EntryResult]:
        return []

    def import_state(self, chunks: Iterable[bytes]) -> None:
        for _ in chunks:
            pass
        self.imports += 1
        failure = self.failures.pop(0)
        if failure is not None:
            raise failure
        self._applied = 10


def _node(state_machine: FailingImport) -> RaftNode:
    store = MemoryLogStore()
    store.bootstrap((1, 2, 3))

    async def fetch(peer: int, min_index: int) -> AsyncIterator[bytes]:
        yield b"chunk"

    return RaftNode(node_id=1, storage=store, state_machine=state_machine,  # type: ignore[arg-type]
                    send=lambda messages: None, fetch_state=fetch, peer_ids=lambda: [2, 3],
                    tick_seconds=0.05, election_tick=10, heartbeat_tick=1,
                    snapshot_every=1000, snapshot_keep=10, max_entry_bytes=1 << 20, seed=1)


def test_a_failed_write_of_our_own_during_a_restore_is_fatal() -> None:
    machine = FailingImport([Exception("IO error: While fdatasync: db/000067.log: "
                                       "Input/output error")])

    async def main() -> None:
        await _node(machine)._restore(5)

    with pytest.raises(Exception, match="Input/output error"):
        asyncio.run(main())
    assert machine.imports == 1  # not retried with another peer


def test_a_peer_that_fails_is_skipped_for_the_next() -> None:
    machine = FailingImport([RuntimeError("n2's stream broke"), None])

    async def main() -> None:
        await _node(machine)._restore(5)

    asyncio.run(main())
    assert machine.imports == 2 and machine.applied_index() == 10
