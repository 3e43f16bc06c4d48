"""What the leader knows about each follower's log, and the flow control over it.

Owns: ``Progress`` (match/next index, probe / replicate / snapshot state) and ``Inflights``
(the bounded window of unacknowledged AppendEntries in replicate state). Must never: send
messages or read the log; the leader decides what to send from what this says.

States (as in etcd raft):
- PROBE: one append at a time until the follower's match is found; paused after each send
  until a response or heartbeat response arrives.
- REPLICATE: optimistic pipelining; ``next`` advances at send time; at most
  ``max_inflight`` messages unacknowledged.
- SNAPSHOT: the follower needs a snapshot; chunks are streamed and no appends are sent.
"""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2

    def __str__(self) -> str:
        return self.name.lower()


class Inflights:
    """Last index of each in-flight append message, oldest first, bounded in count."""

    __slots__ = ("_capacity", "_queue")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._queue: deque[int] = deque()

    def add(self, last_index: int) -> None:
        if len(self._queue) >= self._capacity:
            raise OverflowError("inflight window is full")
        self._queue.append(last_index)

    def free_le(self, index: int) -> None:
        """Forget every in-flight message whose last index is at most ``index``."""
        queue = self._queue
        while queue and queue[0] <= index:
            queue.popleft()

    def free_first(self) -> None:
        if self._queue:
            self._queue.popleft()

    def reset(self) -> None:
        self._queue.clear()

    def full(self) -> bool:
        return len(self._queue) >= self._capacity

    def __len__(self) -> int:
        return len(self._queue)


class Progress:
    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "msg_app_probe_sent",
        "next",
        "pending_snapshot",
        "recent_active",
        "snap_offset",
        "snap_sent_offset",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int, is_learner: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.msg_app_probe_sent = False
        self.pending_snapshot = 0  # index of the snapshot being sent in SNAPSHOT state
        self.snap_offset = 0  # bytes of the snapshot the follower acknowledged
        self.snap_sent_offset = 0  # bytes sent so far (≥ snap_offset)
        self.recent_active = False
        self.is_learner = is_learner
        self.inflights = Inflights(max_inflight)

    def reset_state(self, state: ProgressState) -> None:
        self.msg_app_probe_sent = False
        self.pending_snapshot = 0
        self.snap_offset = 0
        self.snap_sent_offset = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self.reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self.reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self.reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self.reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: int) -> bool:
        """Record an acknowledgement up to ``index``; return whether match advanced."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.msg_app_probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def sent_entries(self, last_index: int, count: int) -> None:
        """Account for an append carrying ``count`` entries ending at ``last_index``."""
        if self.state == ProgressState.REPLICATE:
            if count > 0:
                self.next = last_index + 1
                self.inflights.add(last_index)
        elif self.state == ProgressState.PROBE:
            self.msg_app_probe_sent = True

    def regress_to(self, follower_last: int) -> None:
        """The follower's log ends at ``follower_last``, below what it acknowledged: its disk
        was wiped or replaced. Forget the acknowledgement and probe from what it has now (a
        snapshot follows if the leader's log is compacted past that). Lowering ``match`` only
        ever delays commitment, never advances it."""
        self.match = follower_last
        self.become_probe()

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """Handle a rejection of the append at ``rejected``; False if it is stale."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # stale: already known to match past it
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # stale: not the probe we are waiting on
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.msg_app_probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.msg_app_probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def __repr__(self) -> str:
        learner = " learner" if self.is_learner else ""
        return (
            f"{self.state} match={self.match} next={self.next}"
            f" inflight={len(self.inflights)}{learner}"
        )
