"""Raft's safety properties as a checker any test can run after every step.

Owns: ``InvariantChecker``, which watches nodes (their ``Raft`` objects, durable hard state,
sent messages, applied entries) and raises ``InvariantViolation`` naming the property that
broke. It checks:

- ``election-safety``: at most one leader per term, over the whole history (§5.2);
- ``log-matching``: two entries with the same (index, term) hold the same data and follow
  entries of the same term, so by induction the logs agree on everything before (§5.3);
  committed terms never decrease along the log;
- ``leader-completeness``: every committed entry is in the log of every leader of a later
  term, unless that leader's snapshot already covers it (§5.4);
- ``committed-mismatch``: a node commits an entry other than the one already committed at
  that index;
- ``state-machine-safety``: every node applies the same (term, data) at each index, only
  committed entries, and reaches the same state digest at each applied index (§5.4.3);
- ``monotonic-term``, ``monotonic-commit``, ``vote-once``: per incarnation in memory and,
  across restarts, for the durable hard state;
- ``durable-before-send``: a vote request, vote grant or append acknowledgement leaves a node
  only once the state it vouches for is durable (the ``Ready`` contract);
- ``durable-log``: every entry the core counts as stable (below its unstable tail) is on the
  node's disk, also when the application finished persisting a Ready long after ``ready()``;
- ``acknowledged-lost``: an entry acknowledged to a client as committed is in the log of
  every later leader;
- ``stale-read``: a ReadIndex read is served at an index at least as high as the highest
  index acknowledged to any client before the read was invoked.

Everything is incremental so it can run after every step: a node's unstable tail is checked
once (the rest of its log came from there), commits are checked only over the newly committed
range, and the committed log is summarised as runs of equal terms, so "the highest committed
entry older than term T" is a binary search.

Must never: do I/O, read a clock, draw randomness, mutate a node, or import anything beyond
the standard library's pure modules and ``quorumlog.raft`` itself.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from quorumlog.raft.errors import Compacted, Unavailable
from quorumlog.raft.raft import Raft
from quorumlog.raft.types import (
    NONE,
    Entry,
    HardState,
    Message,
    MessageType,
    NodeId,
    StateRole,
)


class InvariantViolation(AssertionError):
    """A safety property broke; ``invariant`` names it, the message says exactly how."""

    def __init__(self, invariant: str, message: str) -> None:
        super().__init__(f"{invariant}: {message}")
        self.invariant = invariant
        self.detail = message


@dataclass
class _Incarnation:
    """What the checker last saw of one node since it (re)started."""

    term: int
    vote: NodeId
    commit: int
    tail_offset: int = -1
    tail_length: int = 0
    tail_last: Entry | None = None
    leader_checked_term: int = 0


@dataclass
class _Durable:
    term: int = 0
    vote: NodeId = NONE
    commit: int = 0


def _term_or_none(raft: Raft, index: int) -> int | None:
    try:
        return raft.log.term(index)
    except (Compacted, Unavailable):
        return None


class InvariantChecker:
    """Feed it observations; it raises ``InvariantViolation`` on the first broken property.

    ``committed_index``/``committed_term`` describe the point every node starts from (the
    bootstrap snapshot), which counts as committed.
    """

    def __init__(
        self, committed_index: int = 1, committed_term: int = 1, check_sends: bool = True
    ) -> None:
        # ``check_sends=False`` skips ``durable-before-send``, so a test can show that the
        # safety properties alone catch a node that breaks the Ready contract.
        self.check_sends = check_sends
        self.leaders: dict[int, NodeId] = {}  # term -> the one leader of that term
        self._nodes: dict[NodeId, _Incarnation] = {}
        self._durable: dict[NodeId, _Durable] = {}
        # (index, term) -> (term of the entry before it or 0 if unknown, data)
        self._chain: dict[tuple[int, int], tuple[int, bytes]] = {}
        # The committed log as runs: run k covers [run_starts[k], run_starts[k+1]) in run_terms[k].
        self._run_starts: list[int] = [committed_index]
        self._run_terms: list[int] = [committed_term]
        self.committed_index = committed_index
        self._applied: dict[int, tuple[int, bytes]] = {}
        self._digests: dict[int, bytes] = {}
        self._acknowledged: list[tuple[int, int]] = []
        self.acknowledged_index = 0
        self._reads: dict[bytes, int] = {}
        self.reads_served = 0

    # -- the committed log -----------------------------------------------------------------
    def committed_term(self, index: int) -> int:
        """Term of committed entry ``index`` (known only from the first committed index on)."""
        if index > self.committed_index or index < self._run_starts[0]:
            raise KeyError(index)
        return self._run_terms[bisect_right(self._run_starts, index) - 1]

    def _extend_committed(self, node_id: NodeId, index: int, term: int) -> None:
        last_term = self._run_terms[-1]
        if term < last_term:
            raise InvariantViolation(
                "log-matching",
                f"n{node_id} committed {index} at term {term} after committed "
                f"{self.committed_index} at term {last_term}: terms went down",
            )
        if term > last_term:
            self._run_starts.append(index)
            self._run_terms.append(term)
        self.committed_index = index

    def _highest_committed_before(self, term: int) -> tuple[int, int] | None:
        """The highest committed (index, term) whose term is below ``term``."""
        run = bisect_left(self._run_terms, term) - 1
        if run < 0:
            return None
        if run + 1 < len(self._run_starts):
            return self._run_starts[run + 1] - 1, self._run_terms[run]
        return self.committed_index, self._run_terms[run]

    def _record_commit(self, node_id: NodeId, raft: Raft, old: int, new: int) -> None:
        for index in range(old + 1, new + 1):
            term = _term_or_none(raft, index)
            if term is None:
                if index > self.committed_index:
                    raise InvariantViolation(
                        "checker-gap",
                        f"n{node_id} committed {index} beyond every commit seen "
                        f"({self.committed_index}) without holding the entry: an observation "
                        "was missed",
                    )
                continue  # covered by a snapshot; the snapshot point is checked on its own
            if index <= self.committed_index:
                if index < self._run_starts[0]:
                    continue
                expected = self.committed_term(index)
                if term != expected:
                    raise InvariantViolation(
                        "committed-mismatch",
                        f"n{node_id} committed index {index} at term {term}, but index {index} "
                        f"was already committed at term {expected}",
                    )
            elif index == self.committed_index + 1:
                self._extend_committed(node_id, index, term)
            else:  # pragma: no cover - guarded by the None case above
                raise InvariantViolation("checker-gap", f"n{node_id} skipped to {index}")

    # -- node lifecycle ----------------------------------------------------------------------
    def node_started(self, node_id: NodeId, raft: Raft, durable: HardState) -> None:
        """A node (re)started from its disk: in-memory history restarts at the durable state."""
        self.observe_durable(node_id, durable)
        self._nodes[node_id] = _Incarnation(durable.term, durable.vote, durable.commit)
        if raft.term != durable.term or raft.log.committed < durable.commit:
            raise InvariantViolation(
                "monotonic-term",
                f"n{node_id} restarted at term {raft.term} commit {raft.log.committed}, but its "
                f"disk holds term {durable.term} commit {durable.commit}",
            )
        self.observe(node_id, raft)

    def node_crashed(self, node_id: NodeId) -> None:
        self._nodes.pop(node_id, None)

    # -- observations --------------------------------------------------------------------------
    def observe(self, node_id: NodeId, raft: Raft) -> None:
        """Check a live node after it took any input or finished a Ready."""
        seen = self._nodes.get(node_id)
        if seen is None:  # never announced with node_started: check its whole committed log
            start = min(raft.log.committed, raft.log.first_index() - 1)
            seen = self._nodes[node_id] = _Incarnation(raft.term, raft.vote, start)
        term = raft.term
        if term < seen.term:
            raise InvariantViolation(
                "monotonic-term", f"n{node_id} term went from {seen.term} to {term}"
            )
        if term == seen.term and seen.vote not in (NONE, raft.vote):
            raise InvariantViolation(
                "vote-once",
                f"n{node_id} changed its vote in term {term} from n{seen.vote} to n{raft.vote}",
            )
        seen.term = term
        seen.vote = raft.vote
        log = raft.log
        commit = log.committed
        if commit < seen.commit:
            raise InvariantViolation(
                "monotonic-commit", f"n{node_id} commit went from {seen.commit} to {commit}"
            )
        self._check_tail(node_id, raft, seen)
        if commit > seen.commit:
            self._record_commit(node_id, raft, seen.commit, commit)
            seen.commit = commit
        if raft.role == StateRole.LEADER:
            self._check_leader(node_id, raft, seen)

    def _check_tail(self, node_id: NodeId, raft: Raft, seen: _Incarnation) -> None:
        log = raft.log
        snapshot = log.unstable_snapshot
        if snapshot is not None:
            self._check_snapshot_point(node_id, snapshot.metadata.index, snapshot.metadata.term)
        tail = log.unstable
        if not tail:
            seen.tail_offset, seen.tail_length, seen.tail_last = log.unstable_offset, 0, None
            return
        offset = log.unstable_offset
        start = 0
        if (
            seen.tail_offset == offset
            and 0 < seen.tail_length <= len(tail)
            and tail[seen.tail_length - 1] is seen.tail_last
        ):
            start = seen.tail_length
            if start == len(tail):
                return
        prev_term = tail[start - 1].term if start else (_term_or_none(raft, offset - 1) or 0)
        chain = self._chain
        for position in range(start, len(tail)):
            entry = tail[position]
            key = (entry.index, entry.term)
            known = chain.get(key)
            if known is None:
                chain[key] = (prev_term, entry.data)
            else:
                known_prev, known_data = known
                if known_data != entry.data:
                    raise InvariantViolation(
                        "log-matching",
                        f"n{node_id} holds entry {entry.index} of term {entry.term} with data "
                        f"{entry.data!r}; another log has {known_data!r} there",
                    )
                if prev_term and known_prev and known_prev != prev_term:
                    raise InvariantViolation(
                        "log-matching",
                        f"n{node_id} holds entry {entry.index} of term {entry.term} after an "
                        f"entry of term {prev_term}; another log has it after term {known_prev}",
                    )
                if prev_term and not known_prev:
                    chain[key] = (prev_term, known_data)
            prev_term = entry.term
        seen.tail_offset, seen.tail_length, seen.tail_last = offset, len(tail), tail[-1]

    def _check_snapshot_point(self, node_id: NodeId, index: int, term: int) -> None:
        if index > self.committed_index:
            raise InvariantViolation(
                "state-machine-safety",
                f"n{node_id} holds a snapshot at {index} beyond every commit seen "
                f"({self.committed_index})",
            )
        if index >= self._run_starts[0] and self.committed_term(index) != term:
            raise InvariantViolation(
                "committed-mismatch",
                f"n{node_id} holds a snapshot at {index} term {term}, but {index} was "
                f"committed at term {self.committed_term(index)}",
            )

    def _check_leader(self, node_id: NodeId, raft: Raft, seen: _Incarnation) -> None:
        term = raft.term
        leader = self.leaders.setdefault(term, node_id)
        if leader != node_id:
            raise InvariantViolation(
                "election-safety", f"n{node_id} and n{leader} are both leaders of term {term}"
            )
        self._check_holds_committed(node_id, raft)
        if seen.leader_checked_term != term:
            # Once per leadership: every acknowledged entry must be there (the log of a leader
            # only grows, and later acknowledgements are covered by the committed check).
            seen.leader_checked_term = term
            # Same (index, term) means same data, by the log-matching check.
            for index, entry_term in self._acknowledged:
                if entry_term < term:
                    self._check_holds(node_id, raft, index, entry_term, "acknowledged-lost")

    def _check_holds_committed(self, node_id: NodeId, raft: Raft) -> None:
        """Leader completeness with one lookup: by log matching, holding the highest
        committed entry of our term or older means holding every committed entry before it."""
        term = raft.term
        if self._run_terms[-1] <= term:
            point: tuple[int, int] | None = (self.committed_index, self._run_terms[-1])
        else:  # a deposed leader that has not heard yet: only older terms are owed to it
            point = self._highest_committed_before(term)
        if point is not None:
            self._check_holds(node_id, raft, point[0], point[1], "leader-completeness")

    def _check_holds(
        self, node_id: NodeId, raft: Raft, index: int, term: int, invariant: str
    ) -> None:
        if index < raft.log.first_index():
            return  # covered by this leader's snapshot, itself checked against the commit
        have = _term_or_none(raft, index)
        if have != term:
            what = "nothing" if have is None else f"term {have}"
            raise InvariantViolation(
                invariant,
                f"n{node_id}, leader of term {raft.term}, has {what} at {index} where entry "
                f"{index} of term {term} is committed",
            )

    def observe_durable(self, node_id: NodeId, hard_state: HardState) -> None:
        """The hard state a node just made durable (or restarted from)."""
        durable = self._durable.setdefault(node_id, _Durable())
        if hard_state.term < durable.term:
            raise InvariantViolation(
                "monotonic-term",
                f"n{node_id} durable term went from {durable.term} to {hard_state.term}",
            )
        if hard_state.commit < durable.commit:
            raise InvariantViolation(
                "monotonic-commit",
                f"n{node_id} durable commit went from {durable.commit} to {hard_state.commit}",
            )
        if hard_state.term == durable.term and durable.vote not in (NONE, hard_state.vote):
            raise InvariantViolation(
                "vote-once",
                f"n{node_id} durably voted for n{durable.vote} and then n{hard_state.vote} "
                f"in term {hard_state.term}",
            )
        durable.term, durable.vote, durable.commit = (
            hard_state.term,
            hard_state.vote,
            hard_state.commit,
        )

    def observe_sent(
        self,
        node_id: NodeId,
        messages: Iterable[Message],
        durable: HardState,
        durable_last_index: int,
    ) -> None:
        """Messages about to leave ``node_id`` while its disk holds ``durable`` and entries up
        to ``durable_last_index``."""
        if not self.check_sends:
            return
        for message in messages:
            kind = message.type
            if kind == MessageType.VOTE:
                # A durable later term also vouches: this node can never vote in the older one.
                vouched = durable.term > message.term or (
                    durable.term == message.term and durable.vote == node_id
                )
                what = f"vote request of term {message.term}"
            elif kind == MessageType.VOTE_RESP and not message.reject:
                vouched = durable.term > message.term or (
                    durable.term == message.term and durable.vote == message.to
                )
                what = f"vote for n{message.to} in term {message.term}"
            elif kind == MessageType.APP_RESP and not message.reject:
                vouched = durable_last_index >= message.index
                what = f"append acknowledgement up to {message.index}"
            else:
                continue
            if not vouched:
                raise InvariantViolation(
                    "durable-before-send",
                    f"n{node_id} sent a {what} while its disk holds term {durable.term}, vote "
                    f"n{durable.vote}, last index {durable_last_index}",
                )

    def observe_stable(self, node_id: NodeId, raft: Raft, durable_last_index: int) -> None:
        """After ``advance``: the entries ``raft`` no longer keeps unstable must be durable,
        i.e. the disk's last index (``durable_last_index``) reaches below its unstable tail."""
        log = raft.log
        if log.unstable_snapshot is not None:
            return  # the snapshot, and everything after it, is still to be persisted
        stable_last = log.unstable_offset - 1
        if stable_last > durable_last_index:
            raise InvariantViolation(
                "durable-log",
                f"n{node_id} counts entries up to {stable_last} as stable, but its disk ends "
                f"at {durable_last_index}",
            )

    def observe_applied(self, node_id: NodeId, entries: Iterable[Entry], commit: int) -> None:
        """Entries ``node_id`` is about to apply while its commit index is ``commit``."""
        applied = self._applied
        for entry in entries:
            if entry.index > commit:
                raise InvariantViolation(
                    "state-machine-safety",
                    f"n{node_id} applies entry {entry.index} beyond its commit index {commit}",
                )
            known = applied.get(entry.index)
            if known is None:
                if entry.index >= self._run_starts[0] and (
                    entry.index > self.committed_index
                    or self.committed_term(entry.index) != entry.term
                ):
                    raise InvariantViolation(
                        "state-machine-safety",
                        f"n{node_id} applies entry {entry.index} of term {entry.term}, which is "
                        "not the committed one",
                    )
                applied[entry.index] = (entry.term, entry.data)
            elif known != (entry.term, entry.data):
                raise InvariantViolation(
                    "state-machine-safety",
                    f"n{node_id} applies {entry.data!r} (term {entry.term}) at {entry.index}; "
                    f"another node applied {known[1]!r} (term {known[0]}) there",
                )

    def observe_state(self, node_id: NodeId, applied_index: int, digest: bytes) -> None:
        """The state machine's digest after applying through ``applied_index``."""
        known = self._digests.setdefault(applied_index, digest)
        if known != digest:
            raise InvariantViolation(
                "state-machine-safety",
                f"n{node_id} state at applied index {applied_index} differs from another "
                "node's state at that index",
            )

    # -- the client's view ---------------------------------------------------------------------
    def acknowledge(self, index: int, term: int, data: bytes) -> None:
        """The client was told entry ``index`` (``term``, ``data``) is committed."""
        if index > self.committed_index or (
            index >= self._run_starts[0] and self.committed_term(index) != term
        ):
            raise InvariantViolation(
                "acknowledged-lost",
                f"acknowledged {data!r} at {index} term {term}, which is not committed",
            )
        self._acknowledged.append((index, term))
        self.acknowledged_index = max(self.acknowledged_index, index)

    def read_invoked(self, context: bytes) -> None:
        self._reads[context] = self.acknowledged_index

    def read_served(self, node_id: NodeId, context: bytes, index: int) -> None:
        """A ReadIndex read ``context`` was served by ``node_id`` at read index ``index``."""
        required = self._reads.pop(context, None)
        if required is None:
            return  # served twice (a duplicated response): checked the first time
        self.reads_served += 1
        if index < required:
            raise InvariantViolation(
                "stale-read",
                f"n{node_id} served read {context!r} at index {index}, but {required} was "
                "acknowledged to a client before the read began",
            )

    def check_all(self, nodes: Iterable[tuple[NodeId, Raft]]) -> None:
        for node_id, raft in nodes:
            self.observe(node_id, raft)
