"""The log store a node's Raft loop writes to, and its in-memory twin.

Owns: the ``LogStore`` protocol — what ``RaftNode`` (and the membership replay) call on the
durable Raft log: the core's read-only ``Storage`` (``initial_state``, ``first_index``,
``last_index``, ``term``, ``entries``, ``snapshot``) plus ``snapshot_index``, ``write_ready``
(step 1 of the ``Ready`` contract), ``create_snapshot``, ``compact`` and ``close`` — the
optional ``Bootstrappable`` capability (founding a cluster on an empty store), and
``MemoryLogStore``, a store in Python lists with the same semantics and named errors as
``RocksStorage`` (``quorumlog.node.storage.raft_store``), used by tests and the in-process
cluster. Small protocols in the hashicorp/raft style: a capability is a protocol of its own,
not a method every store must grow.

What "durable" means for ``MemoryLogStore``: every write is visible at once (as a RocksDB
write is), but only a write made with ``sync=True`` makes it, and everything written before
it, survive ``crash()`` (a power loss: unsynced writes are dropped, as an un-fsynced WAL
tail is). ``reopen()`` is a clean close and open again: nothing is lost. Must never: do I/O,
or mutate a state it has already published (a write builds a new one, so the synced view is
a reference, not a copy).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from quorumlog.node.storage.raft_store import LogBatch, RocksStorage, StorageNotEmpty
from quorumlog.raft.errors import Compacted, SnapshotTemporarilyUnavailable, Unavailable
from quorumlog.raft.rawnode import Ready
from quorumlog.raft.storage import Storage, bootstrap_snapshot, limit_size
from quorumlog.raft.types import (
    EMPTY_HARD_STATE,
    ConfState,
    Entry,
    HardState,
    NodeId,
    Snapshot,
    SnapshotMetadata,
)


@runtime_checkable
class LogStore(Storage, Protocol):
    """The durable Raft log as the node's loop uses it (reads are the core's ``Storage``)."""

    def snapshot_index(self) -> int:
        """The current snapshot's index, cheaply (no read of its data)."""
        ...

    def write_ready(self, ready: Ready, *, sync: bool | None = None) -> None:
        """Snapshot, entries (conflicting suffix replaced) and hard state of ``ready`` in one
        atomic write; durable on return when ``sync`` (default: ``ready.must_sync``)."""
        ...

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record the application state at applied ``index`` as the current snapshot."""
        ...

    def compact(self, compact_index: int) -> None:
        """Discard entries up to and including ``compact_index`` (need not be synced)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Bootstrappable(Protocol):
    """A store that can found a cluster (founding snapshot at index 1, term 1, commit 1)."""

    def is_empty(self) -> bool: ...

    def bootstrap(self, voters: tuple[NodeId, ...], learners: tuple[NodeId, ...] = ()) -> None:
        ...


def write_readies(items: Sequence[tuple[LogStore, Ready]], *, sync: bool) -> None:
    """Step 1 of the ``Ready`` contract for several groups at once: groups whose stores
    share one storage engine (the node's RocksDB) go into one atomic write, fsynced once
    when ``sync``: one write and one fsync for every group ready together (the group commit
    across groups). Other stores (in memory) each write their own, synced when ``sync``."""
    rocks = [store for store, _ in items if isinstance(store, RocksStorage)]
    if len(items) < 2 or len(rocks) < len(items) or len({id(s.engine) for s in rocks}) > 1:
        for store, ready in items:
            store.write_ready(ready, sync=sync)
        return
    engine = rocks[0].engine
    shared = engine.shared_batch()
    staged: list[tuple[RocksStorage, LogBatch]] = [
        (store, store.stage_ready(ready, shared))
        for store, (_, ready) in zip(rocks, items, strict=True)
    ]
    engine.write_shared(shared, sync=sync)
    for store, batch in staged:
        store.commit_staged(batch)


class StoreClosed(Exception):
    """The store was used after ``close()``."""


@dataclasses.dataclass(slots=True)
class _Log:
    """One published state of a ``MemoryLogStore``. ``entries[0]`` is a dummy holding the
    (index, term) of the compaction point, as in ``MemoryStorage``."""

    hard_state: HardState
    snapshot: Snapshot
    entries: list[Entry]

    def copy(self) -> _Log:
        return _Log(self.hard_state, self.snapshot, list(self.entries))

    @property
    def offset(self) -> int:
        return self.entries[0].index

    @property
    def last_index(self) -> int:
        return self.offset + len(self.entries) - 1

    def term(self, index: int) -> int:
        offset = self.offset
        if index < offset:
            raise Compacted(f"index {index} compacted (first retained {offset + 1})")
        if index > self.last_index:
            raise Unavailable(f"index {index} beyond last {self.last_index}")
        return self.entries[index - offset].term

    def append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        first = self.offset + 1
        if entries[-1].index < first:
            return
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        if entries[0].index > self.last_index + 1:
            raise Unavailable(f"gap: appending {entries[0].index} after {self.last_index}")
        for position, entry in enumerate(entries):
            if entry.index != entries[0].index + position:
                raise ValueError(f"entries not contiguous at {entry.index}")
        del self.entries[entries[0].index - self.offset :]
        self.entries.extend(entries)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        metadata = snapshot.metadata
        if metadata.index <= self.snapshot.metadata.index:
            raise SnapshotTemporarilyUnavailable("snapshot is out of date")
        self.snapshot = snapshot
        self.entries = [Entry(metadata.term, metadata.index)]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        if index <= self.snapshot.metadata.index:
            raise SnapshotTemporarilyUnavailable(f"snapshot at {index} is out of date")
        if index > self.last_index:
            raise Unavailable(f"snapshot index {index} beyond last {self.last_index}")
        self.snapshot = Snapshot(SnapshotMetadata(index, self.term(index), conf_state), data)
        return self.snapshot

    def compact(self, compact_index: int) -> None:
        offset = self.offset
        if compact_index <= offset:
            raise Compacted(f"already compacted to {offset}")
        if compact_index > self.last_index:
            raise Unavailable(f"compact {compact_index} beyond last {self.last_index}")
        head = self.entries[compact_index - offset]
        self.entries = [Entry(head.term, head.index), *self.entries[compact_index - offset + 1 :]]


def _empty_log() -> _Log:
    return _Log(EMPTY_HARD_STATE, Snapshot(SnapshotMetadata()), [Entry(0, 0)])


class MemoryLogStore:
    """A ``LogStore`` in memory with a synced view (see the module docstring)."""

    def __init__(self, *, _state: _Log | None = None) -> None:
        self._live = _state if _state is not None else _empty_log()
        self._synced = self._live
        self._closed = False
        self.synced_writes = 0  # writes made with sync=True (tests check when they happen)

    # -- read side (the core's Storage) ----------------------------------------------------
    def initial_state(self) -> tuple[HardState, ConfState]:
        state = self._open()
        return state.hard_state, state.snapshot.metadata.conf_state

    def first_index(self) -> int:
        return self._open().offset + 1

    def last_index(self) -> int:
        return self._open().last_index

    def term(self, index: int) -> int:
        return self._open().term(index)

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        state = self._open()
        offset = state.offset
        if lo <= offset:
            raise Compacted(f"index {lo} compacted (first retained {offset + 1})")
        if hi > state.last_index + 1:
            raise Unavailable(f"entries up to {hi - 1} requested, last is {state.last_index}")
        return limit_size(state.entries[lo - offset : hi - offset], max_bytes)

    def snapshot(self) -> Snapshot:
        return self._open().snapshot

    def snapshot_index(self) -> int:
        return self._open().snapshot.metadata.index

    # -- write side: each write is atomic (built on a copy, then published) ------------------
    def write_ready(self, ready: Ready, *, sync: bool | None = None) -> None:
        state = self._open().copy()
        if ready.snapshot is not None:
            state.apply_snapshot(ready.snapshot)
        if ready.entries:
            state.append(ready.entries)
        if ready.hard_state is not None:
            state.hard_state = ready.hard_state
        self._publish(state, sync=ready.must_sync if sync is None else sync)

    def set_hard_state(self, hard_state: HardState, *, sync: bool = True) -> None:
        state = self._open().copy()
        state.hard_state = hard_state
        self._publish(state, sync=sync)

    def append(self, entries: Sequence[Entry], *, sync: bool = True) -> None:
        state = self._open().copy()
        state.append(entries)
        self._publish(state, sync=sync)

    def apply_snapshot(self, snapshot: Snapshot, *, sync: bool = True) -> None:
        state = self._open().copy()
        state.apply_snapshot(snapshot)
        self._publish(state, sync=sync)

    def create_snapshot(
        self, index: int, conf_state: ConfState, data: bytes, *, sync: bool = True
    ) -> Snapshot:
        state = self._open().copy()
        snapshot = state.create_snapshot(index, conf_state, data)
        self._publish(state, sync=sync)
        return snapshot

    def compact(self, compact_index: int, *, sync: bool = False) -> None:
        """Compaction need not be synced: losing it in a crash only keeps more log."""
        state = self._open().copy()
        state.compact(compact_index)
        self._publish(state, sync=sync)

    def sync(self) -> None:
        """Make every write so far durable (an fsync of the WAL)."""
        self._open()
        self._synced = self._live
        self.synced_writes += 1

    # -- the Bootstrappable capability -------------------------------------------------------
    def is_empty(self) -> bool:
        state = self._open()
        return (
            state.hard_state == EMPTY_HARD_STATE
            and state.snapshot.metadata.index == 0
            and state.last_index == 0
        )

    def bootstrap(self, voters: tuple[NodeId, ...], learners: tuple[NodeId, ...] = ()) -> None:
        if not self.is_empty():
            raise StorageNotEmpty("the store already holds state; refusing to bootstrap")
        state = self._open().copy()
        state.apply_snapshot(bootstrap_snapshot(voters, learners))
        state.hard_state = HardState(term=1, vote=0, commit=1)
        self._publish(state, sync=True)

    # -- lifecycle and simulated failures ----------------------------------------------------
    def close(self) -> None:
        self._closed = True

    def reopen(self) -> MemoryLogStore:
        """A clean close and open again: everything written survives."""
        self.close()
        return MemoryLogStore(_state=self._live)

    def crash(self) -> MemoryLogStore:
        """A power loss and open again: only what a synced write made durable survives."""
        self.close()
        return MemoryLogStore(_state=self._synced)

    def _open(self) -> _Log:
        if self._closed:
            raise StoreClosed("the log store is closed")
        return self._live

    def _publish(self, state: _Log, *, sync: bool) -> None:
        self._live = state
        if sync:
            self._synced = state
            self.synced_writes += 1


__all__ = ["Bootstrappable", "LogStore", "MemoryLogStore", "StoreClosed"]
