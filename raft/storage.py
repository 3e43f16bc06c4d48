"""The read-only storage the core reads from, and its in-memory twin.

Owns: the ``Storage`` protocol (what the core may ask of durable state) and ``MemoryStorage``,
used by tests, the simulator and benchmarks. Must never: be written by the core; every write
reaches storage through ``Ready`` handling by the application.

Index layout: storage retains entries ``first_index() .. last_index()``; the entry just before
``first_index()`` is represented only by its (index, term), taken from the last snapshot, so
``term(first_index() - 1)`` always answers.
"""

from __future__ import annotations

from typing import Protocol

from quorumlog.raft.errors import Compacted, SnapshotTemporarilyUnavailable, Unavailable
from quorumlog.raft.types import (
    EMPTY_HARD_STATE,
    ConfState,
    Entry,
    HardState,
    Snapshot,
    SnapshotMetadata,
)


class Storage(Protocol):
    def initial_state(self) -> tuple[HardState, ConfState]:
        """Persisted hard state and the configuration as of the last snapshot."""
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def term(self, index: int) -> int:
        """Term of entry ``index``; raises ``Compacted`` or ``Unavailable``."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``, at least one, at most ``max_bytes`` after the first."""
        ...

    def snapshot(self) -> Snapshot:
        """The most recent snapshot; may raise ``SnapshotTemporarilyUnavailable``."""
        ...


def limit_size(entries: list[Entry], max_bytes: int | None) -> list[Entry]:
    """Longest prefix within ``max_bytes``, but always at least one entry."""
    if max_bytes is None or len(entries) <= 1:
        return entries
    total = 0
    for position, entry in enumerate(entries):
        total += len(entry.data) + 16
        if total > max_bytes and position > 0:
            return entries[:position]
    return entries


class MemoryStorage:
    """Storage in Python lists; the application's writes are the methods below.

    ``_entries[0]`` is a dummy entry holding the (index, term) of the last compaction point.
    """

    def __init__(self, conf_state: ConfState | None = None) -> None:
        self.hard_state: HardState = EMPTY_HARD_STATE
        self._snapshot = Snapshot(SnapshotMetadata(0, 0, conf_state or ConfState()))
        self._entries: list[Entry] = [Entry(0, 0)]

    # -- read side (the Storage protocol) ------------------------------------------------
    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state, self._snapshot.metadata.conf_state

    def first_index(self) -> int:
        return self._entries[0].index + 1

    def last_index(self) -> int:
        return self._entries[0].index + len(self._entries) - 1

    def term(self, index: int) -> int:
        offset = self._entries[0].index
        if index < offset:
            raise Compacted(f"index {index} compacted (first retained {offset + 1})")
        if index - offset >= len(self._entries):
            raise Unavailable(f"index {index} beyond last {self.last_index()}")
        return self._entries[index - offset].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        offset = self._entries[0].index
        if lo <= offset:
            raise Compacted(f"index {lo} compacted (first retained {offset + 1})")
        if hi > self.last_index() + 1:
            raise Unavailable(f"entries up to {hi - 1} requested, last is {self.last_index()}")
        return limit_size(self._entries[lo - offset : hi - offset], max_bytes)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- write side (called by the application while handling Ready) ---------------------
    def set_hard_state(self, hard_state: HardState) -> None:
        self.hard_state = hard_state

    def append(self, entries: list[Entry]) -> None:
        """Append, truncating any conflicting suffix first."""
        if not entries:
            return
        first = self.first_index()
        if entries[-1].index < first:
            return
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._entries[0].index
        if offset > len(self._entries):
            raise Unavailable(f"gap: appending {entries[0].index} after {self.last_index()}")
        del self._entries[offset:]
        self._entries.extend(entries)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace everything with ``snapshot`` (a follower catching up)."""
        if snapshot.metadata.index <= self._snapshot.metadata.index:
            raise SnapshotTemporarilyUnavailable("snapshot is out of date")
        self._snapshot = snapshot
        self._entries = [Entry(snapshot.metadata.term, snapshot.metadata.index)]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record application state at applied ``index`` as the current snapshot."""
        if index <= self._snapshot.metadata.index:
            raise SnapshotTemporarilyUnavailable(f"snapshot at {index} is out of date")
        if index > self.last_index():
            raise Unavailable(f"snapshot index {index} beyond last {self.last_index()}")
        self._snapshot = Snapshot(SnapshotMetadata(index, self.term(index), conf_state), data)
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Discard entries up to and including ``compact_index``."""
        offset = self._entries[0].index
        if compact_index <= offset:
            raise Compacted(f"already compacted to {offset}")
        if compact_index > self.last_index():
            raise Unavailable(f"compact {compact_index} beyond last {self.last_index()}")
        position = compact_index - offset
        head = self._entries[position]
        self._entries = [Entry(head.term, head.index), *self._entries[position + 1 :]]


def bootstrap_snapshot(voters: tuple[int, ...], learners: tuple[int, ...] = ()) -> Snapshot:
    """The snapshot a brand-new cluster starts from: index 1, term 1, the initial members.

    Starting every founding member from this snapshot (instead of from nothing) means a node
    added later, whose log is empty, is caught up with a snapshot that tells it the founding
    configuration; every later change reaches it through the log.
    """
    return Snapshot(SnapshotMetadata(1, 1, ConfState(tuple(sorted(voters)), learners)), b"")


def bootstrap_memory_storage(voters: tuple[int, ...]) -> MemoryStorage:
    storage = MemoryStorage()
    storage.apply_snapshot(bootstrap_snapshot(voters))
    storage.set_hard_state(HardState(term=1, vote=0, commit=1))
    return storage
