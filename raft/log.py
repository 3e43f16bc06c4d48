"""The Raft log as the core sees it: a stable part in ``Storage`` plus an unstable tail.

Owns: indices, terms, conflict detection, commit and applied positions, and the entries not
yet handed to the application for persistence (the "unstable" tail and snapshot). Must never:
write to storage; the application persists what ``Ready`` carries and then calls
``stable_to``/``stable_snapshot_to`` through ``advance``.

Invariant: ``applied <= committed <= last_index()``; entries ``>= unstable_offset`` live in
``unstable``; everything below comes from storage (or the unstable snapshot).
"""

from __future__ import annotations

from quorumlog.raft.errors import Compacted, Unavailable
from quorumlog.raft.storage import Storage, limit_size
from quorumlog.raft.types import Entry, Snapshot


class RaftLog:
    __slots__ = (
        "applied",
        "committed",
        "max_apply_bytes",
        "storage",
        "unstable",
        "unstable_offset",
        "unstable_snapshot",
    )

    def __init__(self, storage: Storage, max_apply_bytes: int = 1 << 26) -> None:
        self.storage = storage
        self.unstable: list[Entry] = []
        last = storage.last_index()
        self.unstable_offset = last + 1
        self.unstable_snapshot: Snapshot | None = None
        first = storage.first_index()
        self.committed = first - 1
        self.applied = first - 1
        self.max_apply_bytes = max_apply_bytes

    # -- positions -------------------------------------------------------------------------
    def first_index(self) -> int:
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot.metadata.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        if self.unstable:
            return self.unstable_offset + len(self.unstable) - 1
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot.metadata.index
        return self.storage.last_index()

    def term(self, index: int) -> int:
        """Term at ``index``; raises ``Compacted`` / ``Unavailable`` outside the log."""
        offset = self.unstable_offset
        if index >= offset:
            position = index - offset
            if position < len(self.unstable):
                return self.unstable[position].term
            raise Unavailable(f"index {index} beyond last {self.last_index()}")
        snapshot = self.unstable_snapshot
        if snapshot is not None:
            if index == snapshot.metadata.index:
                return snapshot.metadata.term
            if index < snapshot.metadata.index:
                raise Compacted(f"index {index} compacted by snapshot {snapshot.metadata.index}")
        return self.storage.term(index)

    def term_or_zero(self, index: int) -> int:
        try:
            return self.term(index)
        except (Compacted, Unavailable):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        try:
            return self.term(index) == term
        except (Compacted, Unavailable):
            return False

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a candidate's log is at least as up to date as ours (Raft §5.4.1)."""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index())

    # -- reading entries ---------------------------------------------------------------------
    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``, limited by ``max_bytes`` (at least one)."""
        if lo >= hi:
            return []
        first = self.first_index()
        if lo < first:
            raise Compacted(f"entries from {lo} compacted (first is {first})")
        last = self.last_index()
        if hi > last + 1:
            raise Unavailable(f"entries up to {hi - 1} requested, last is {last}")
        offset = self.unstable_offset
        if lo >= offset:
            return limit_size(self.unstable[lo - offset : hi - offset], max_bytes)
        stored = self.storage.entries(lo, min(hi, offset), max_bytes)
        if hi <= offset or len(stored) < min(hi, offset) - lo:
            return stored
        tail = self.unstable[: hi - offset]
        if max_bytes is None:
            return stored + tail
        return limit_size(stored + tail, max_bytes)

    def entries_from(self, lo: int, max_bytes: int | None = None) -> list[Entry]:
        if lo > self.last_index():
            return []
        return self.slice(lo, self.last_index() + 1, max_bytes)

    def all_entries(self) -> list[Entry]:
        """Every retained entry (tests and tracing only)."""
        return self.entries_from(self.first_index())

    # -- appending ---------------------------------------------------------------------------
    def append(self, entries: list[Entry]) -> int:
        """Append ``entries`` to the unstable tail, truncating a conflicting suffix."""
        if not entries:
            return self.last_index()
        after = entries[0].index - 1
        if after < self.committed:
            raise AssertionError(f"append after {after} would overwrite commit {self.committed}")
        self._truncate_and_append(entries)
        return self.last_index()

    def _truncate_and_append(self, entries: list[Entry]) -> None:
        first_new = entries[0].index
        offset = self.unstable_offset
        if first_new == offset + len(self.unstable):
            self.unstable.extend(entries)
        elif first_new <= offset:
            # The new entries replace every unstable one (and storage's suffix, once persisted).
            self.unstable_offset = first_new
            self.unstable = list(entries)
        else:
            del self.unstable[first_new - offset :]
            self.unstable.extend(entries)

    def find_conflict(self, entries: list[Entry]) -> int:
        """Index of the first entry whose term differs from ours, or 0 if none (§5.3)."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest (i, term(i)) with i ≤ index and term(i) ≤ term: the backtracking hint."""
        while index > 0:
            try:
                our_term = self.term(index)
            except Compacted:
                return index, 0
            except Unavailable:
                index = self.last_index()
                continue
            if our_term <= term:
                return index, our_term
            index -= 1
        return 0, 0

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: list[Entry]
    ) -> int | None:
        """Follower side of AppendEntries; returns the last new index, or None on mismatch."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries) if entries else 0
        if conflict:
            if conflict <= self.committed:
                raise AssertionError(f"conflict at {conflict} below commit {self.committed}")
            self.append(entries[conflict - entries[0].index :])
        self.commit_to(min(committed, last_new))
        return last_new

    # -- commit and apply --------------------------------------------------------------------
    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(f"commit {index} beyond last index {self.last_index()}")
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit ``index`` if it is newer and from ``term`` (Raft §5.4.2, Figure 8)."""
        if index > self.committed and self.term_or_zero(index) == term:
            self.committed = index
            return True
        return False

    def has_next_committed_entries(self) -> bool:
        return self.committed > max(self.applied, self.first_index() - 1)

    def next_committed_entries(self) -> list[Entry]:
        lo = max(self.applied + 1, self.first_index())
        if self.committed < lo:
            return []
        return self.slice(lo, self.committed + 1, self.max_apply_bytes)

    def applied_to(self, index: int) -> None:
        if index == 0:
            return
        if index > self.committed or index < self.applied:
            raise AssertionError(
                f"applied {index} out of range [{self.applied}, {self.committed}]"
            )
        self.applied = index

    # -- persistence feedback ------------------------------------------------------------------
    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``(index, term)`` are durable; drop them from the unstable tail."""
        offset = self.unstable_offset
        position = index - offset
        if position < 0 or position >= len(self.unstable):
            return
        if self.unstable[position].term != term:
            return  # replaced by a newer leader's entries while being persisted
        del self.unstable[: position + 1]
        self.unstable_offset = index + 1

    def stable_snapshot_to(self, index: int) -> None:
        if self.unstable_snapshot is not None and self.unstable_snapshot.metadata.index == index:
            self.unstable_snapshot = None

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log with ``snapshot`` (InstallSnapshot on a follower)."""
        index = snapshot.metadata.index
        self.committed = index
        self.unstable_snapshot = snapshot
        self.unstable = []
        self.unstable_offset = index + 1

    def snapshot(self) -> Snapshot:
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot
        return self.storage.snapshot()
