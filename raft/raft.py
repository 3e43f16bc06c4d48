"""The Raft state machine: one node's role, term, vote, log and view of its peers.

Owns: every protocol decision (elections with PreVote and CheckQuorum, replication with
pipelining and fast backtracking, commitment, ReadIndex, leadership transfer, chunked
InstallSnapshot, one-at-a-time membership changes). Must never: block, sleep, read a clock,
draw randomness other than from ``Config.rng``, or do I/O. Its outputs are the messages it
queues (``msgs`` to send now, ``msgs_after_append`` to send once state is durable), the log's
unstable tail, hard state and ``read_states``; ``RawNode`` packs them into ``Ready``.

Section numbers cite the Raft paper (Ongaro & Ousterhout, 2014) and, as "thesis", Ongaro's
dissertation (2014).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from quorumlog.raft import quorum
from quorumlog.raft.errors import (
    Compacted,
    ConfChangeRefused,
    ProposalDropped,
    SnapshotTemporarilyUnavailable,
    Unavailable,
)
from quorumlog.raft.log import RaftLog
from quorumlog.raft.progress import Progress, ProgressState
from quorumlog.raft.read_only import ReadOnly
from quorumlog.raft.storage import Storage
from quorumlog.raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    NodeId,
    ReadState,
    Snapshot,
    SoftState,
    StateRole,
)

# VOTE context marking an election started by leadership transfer: voters skip the lease check.
CAMPAIGN_TRANSFER = b"transfer"

MT = MessageType


class RandomSource(Protocol):
    """The one randomness the core uses: the caller injects it (a seeded ``random.Random``)."""

    def randrange(self, stop: int, /) -> int: ...


@dataclass
class Config:
    """How one node runs Raft. ``rng`` is the only source of randomness (seed it in tests)."""

    id: NodeId
    rng: RandomSource
    election_tick: int = 10
    heartbeat_tick: int = 1
    applied: int = 0
    max_size_per_msg: int = 1 << 20
    max_entries_per_msg: int = 4096
    max_inflight_msgs: int = 256
    max_apply_bytes: int = 64 << 20
    snapshot_chunk_bytes: int = 1 << 20
    promote_max_lag: int = 1000
    check_quorum: bool = True
    pre_vote: bool = True
    # When a follower's acknowledgement advances the commit index, etcd-style Raft sends every
    # follower an append at once just to carry the new index (half of all appends when clients
    # write one at a time). With ``lazy_commit`` the new index rides on the next append or
    # heartbeat instead, or goes out when the application calls ``flush_commit`` (the node
    # does so after a short delay). Safety is unchanged: only when followers learn it moves.
    lazy_commit: bool = False
    logger: Callable[[str], None] | None = field(default=None, repr=False)

    def validate(self) -> None:
        if self.id == NONE:
            raise ValueError("node id must not be 0")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat_tick must be positive")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election_tick must be greater than heartbeat_tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max_inflight_msgs must be positive")
        if self.snapshot_chunk_bytes <= 0:
            raise ValueError("snapshot_chunk_bytes must be positive")


@dataclass
class SnapshotReceiver:
    """A follower's partly received InstallSnapshot (chunks arrive in order)."""

    frm: NodeId
    snapshot: Snapshot
    buffer: bytearray


class Raft:
    """One node of Raft. Drive it with ``step`` and ``tick``; read outputs from the fields."""

    def __init__(self, config: Config, storage: Storage) -> None:
        config.validate()
        self.id = config.id
        self.config = config
        self.rng = config.rng
        self.log = RaftLog(storage, config.max_apply_bytes)
        hard_state, conf_state = storage.initial_state()
        self.term = 0
        self.vote: NodeId = NONE
        self.role = StateRole.FOLLOWER
        self.leader_id: NodeId = NONE
        self.lead_transferee: NodeId = NONE
        self.pending_conf_index = 0
        self.voters: set[NodeId] = set()
        self.learners: set[NodeId] = set()
        self.prs: dict[NodeId, Progress] = {}
        self.votes: dict[NodeId, bool] = {}
        self.msgs: list[Message] = []
        self.msgs_after_append: list[Message] = []
        self.commit_unsent = False  # lazy_commit: some follower has not heard the commit index
        self.read_states: list[ReadState] = []
        self.read_only = ReadOnly()
        self.pending_read_index: list[Message] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.election_timeout = config.election_tick
        self.heartbeat_timeout = config.heartbeat_tick
        self.randomized_election_timeout = config.election_tick
        self.snapshot_receiver: SnapshotReceiver | None = None
        self._step_role: Callable[[Message], None] = self._step_follower
        self._tick_role: Callable[[], None] = self._tick_election
        self._apply_conf_state(conf_state)
        if hard_state.term or hard_state.vote or hard_state.commit:
            self._load_hard_state(hard_state)
        if config.applied > 0:
            self.log.applied_to(min(config.applied, self.log.committed))
        self.become_follower(self.term, NONE)

    # -- small helpers -----------------------------------------------------------------------
    def _log(self, text: str) -> None:
        if self.config.logger is not None:
            self.config.logger(f"n{self.id} {text}")

    def _load_hard_state(self, hard_state: HardState) -> None:
        if not (self.log.committed <= hard_state.commit <= self.log.last_index()):
            raise AssertionError(
                f"n{self.id} commit {hard_state.commit} out of range "
                f"[{self.log.committed}, {self.log.last_index()}]"
            )
        self.term = hard_state.term
        self.vote = hard_state.vote
        self.log.committed = hard_state.commit

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def soft_state(self) -> SoftState:
        return SoftState(self.leader_id, self.role)

    def conf_state(self) -> ConfState:
        return ConfState(tuple(sorted(self.voters)), tuple(sorted(self.learners)))

    def promotable(self) -> bool:
        """Only a voter of the current configuration may campaign."""
        return self.id in self.voters

    def _send(self, message: Message) -> None:
        message.frm = self.id
        if message.term == 0 and message.type not in (MT.PROPOSE, MT.READ_INDEX):
            message.term = self.term
        if message.type in (MT.VOTE, MT.VOTE_RESP, MT.APP_RESP):
            # Vote requests vouch for our own vote, vote grants for the vote we recorded,
            # append acks for entries we appended: all must be durable before they leave.
            self.msgs_after_append.append(message)
        else:
            self.msgs.append(message)

    def _persisted_last_index(self) -> int:
        """Last index known to be durable locally (entries below the unstable tail)."""
        return self.log.unstable_offset - 1

    # -- role transitions --------------------------------------------------------------------
    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.leader_id = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(
            self.election_timeout
        )
        self.lead_transferee = NONE
        self.votes = {}
        self.read_only = ReadOnly()
        self.pending_read_index = []
        last = self.log.last_index()
        max_inflight = self.config.max_inflight_msgs
        for node_id in list(self.prs):
            progress = Progress(last + 1, max_inflight, node_id in self.learners)
            if node_id == self.id:
                progress.match = self._persisted_last_index()
            self.prs[node_id] = progress

    def become_follower(self, term: int, leader_id: NodeId) -> None:
        self._step_role = self._step_follower
        self._tick_role = self._tick_election
        self._reset(term)
        self.leader_id = leader_id
        self.role = StateRole.FOLLOWER
        self._log(f"became follower at term {self.term}")

    def become_pre_candidate(self) -> None:
        if self.role == StateRole.LEADER:
            raise AssertionError("leader cannot become pre-candidate")
        # PreVote does not change term or vote (thesis §9.6).
        self._step_role = self._step_candidate
        self._tick_role = self._tick_election
        self.votes = {}
        self.leader_id = NONE
        self.role = StateRole.PRE_CANDIDATE
        self._log(f"became pre-candidate at term {self.term}")

    def become_candidate(self) -> None:
        if self.role == StateRole.LEADER:
            raise AssertionError("leader cannot become candidate")
        self._step_role = self._step_candidate
        self._tick_role = self._tick_election
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = StateRole.CANDIDATE
        self._log(f"became candidate at term {self.term}")

    def become_leader(self) -> None:
        if self.role == StateRole.FOLLOWER:
            raise AssertionError("follower cannot become leader without an election")
        self._step_role = self._step_leader
        self._tick_role = self._tick_heartbeat
        self._reset(self.term)
        self.leader_id = self.id
        self.role = StateRole.LEADER
        own = self.prs.get(self.id)
        if own is not None:
            own.become_replicate()
            own.match = self._persisted_last_index()
            own.recent_active = True
        # An empty entry of our own term lets us commit everything before it (§5.4.2, §8);
        # membership changes wait until it is applied (thesis §4.1 bug fix).
        self._append_entries([Entry(0, 0)])
        self.pending_conf_index = self.log.last_index()
        self._log(f"became leader at term {self.term}")

    # -- ticks -------------------------------------------------------------------------------
    def tick(self) -> None:
        self._tick_role()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.step(Message(MT.HUP, frm=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.config.check_quorum:
                self.step(Message(MT.CHECK_QUORUM, frm=self.id))
            if self.role == StateRole.LEADER and self.lead_transferee != NONE:
                self._log(f"aborted transfer to n{self.lead_transferee}: timed out")
                self.lead_transferee = NONE
        if self.role != StateRole.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(MT.BEAT, frm=self.id))

    # -- elections -----------------------------------------------------------------------------
    def _has_unapplied_conf_change(self) -> bool:
        if self.log.committed <= self.log.applied:
            return False
        try:
            pending = self.log.slice(self.log.applied + 1, self.log.committed + 1)
        except (Compacted, Unavailable):
            return False
        return any(entry.type == EntryType.CONF_CHANGE for entry in pending)

    def _hup(self, transfer: bool) -> None:
        if self.role == StateRole.LEADER:
            return
        if not self.promotable():
            self._log("is not a voter and does not campaign")
            return
        if not transfer and self._has_unapplied_conf_change():
            # A transfer campaign goes ahead: the leader chose us from its applied
            # configuration, and a removed leader's TimeoutNow follows right behind the append
            # that commits its removal, usually before we could apply it. One-server changes
            # keep every quorum of the old configuration overlapping every quorum of the new
            # one (thesis §4.1), so counting votes with the old one is still safe.
            self._log("cannot campaign: committed membership change not yet applied")
            return
        if self.config.pre_vote and not transfer:
            self._campaign(pre_vote=True, transfer=False)
        else:
            self._campaign(pre_vote=False, transfer=transfer)

    def _campaign(self, pre_vote: bool, transfer: bool) -> None:
        if pre_vote:
            self.become_pre_candidate()
            vote_type, term = MT.PRE_VOTE, self.term + 1
        else:
            self.become_candidate()
            vote_type, term = MT.VOTE, self.term
        if self._poll(self.id, True) == quorum.VoteResult.WON:
            if pre_vote:
                self._campaign(pre_vote=False, transfer=transfer)
            else:
                self.become_leader()
            return
        last_index = self.log.last_index()
        last_term = self.log.last_term()
        context = CAMPAIGN_TRANSFER if transfer else b""
        for voter in sorted(self.voters):
            if voter == self.id:
                continue
            kind = "pre-vote" if pre_vote else "vote"
            self._log(f"sent {kind} request to n{voter} at term {term}")
            self._send(
                Message(
                    vote_type,
                    to=voter,
                    term=term,
                    log_term=last_term,
                    index=last_index,
                    context=context,
                )
            )

    def _poll(self, voter: NodeId, granted: bool) -> quorum.VoteResult:
        self.votes.setdefault(voter, granted)
        return quorum.vote_result(self.voters, self.votes)

    # -- the single input path -----------------------------------------------------------------
    def step(self, m: Message) -> None:
        """Feed one message (network or local). The term check lives here, for every role."""
        if m.term == 0:
            pass  # local message
        elif m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                in_lease = (
                    self.config.check_quorum
                    and self.leader_id != NONE
                    and self.election_elapsed < self.election_timeout
                )
                if in_lease and m.context != CAMPAIGN_TRANSFER:
                    # We heard from a live leader recently: do not let a partitioned or
                    # rejoining node depose it (thesis §4.2.3).
                    self._log(f"ignored {m.type.name} from n{m.frm} at term {m.term}: in lease")
                    return
            if m.type == MT.PRE_VOTE or (m.type == MT.PRE_VOTE_RESP and not m.reject):
                pass  # a pre-vote never changes our term
            elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                self.become_follower(m.term, m.frm)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.config.check_quorum or self.config.pre_vote) and m.type in (
                MT.HEARTBEAT,
                MT.APP,
            ):
                # A stale leader learns our term and steps down; otherwise a node that
                # rejoined with a higher term could be ignored forever under PreVote.
                self._send(Message(MT.HEARTBEAT_RESP, to=m.frm))
            elif m.type == MT.PRE_VOTE:
                self._send(Message(MT.PRE_VOTE_RESP, to=m.frm, reject=True))
            return

        if m.type == MT.HUP:
            self._hup(transfer=False)
        elif m.type in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
        else:
            self._step_role(m)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.frm
            or (self.vote == NONE and self.leader_id == NONE)
            or (m.type == MT.PRE_VOTE and m.term > self.term)
        )
        response = MT.VOTE_RESP if m.type == MT.VOTE else MT.PRE_VOTE_RESP
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self._log(f"granted {m.type.name} to n{m.frm} at term {m.term}")
            self._send(Message(response, to=m.frm, term=m.term))
            if m.type == MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self._log(f"rejected {m.type.name} from n{m.frm} at term {m.term}")
            self._send(Message(response, to=m.frm, term=self.term, reject=True))

    # -- leader --------------------------------------------------------------------------------
    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MT.PROPOSE:
            self._leader_propose(m)
            return
        if t == MT.BEAT:
            self._bcast_heartbeat(b"")
            return
        if t == MT.CHECK_QUORUM:
            self._check_quorum()
            return
        if t == MT.READ_INDEX:
            self._leader_read_index(m)
            return
        if t == MT.TRANSFER_LEADER:
            self._leader_transfer(m.frm)
            return
        progress = self.prs.get(m.frm)
        if progress is None:
            return
        if t == MT.APP_RESP:
            progress.recent_active = True
            self._handle_append_response(m, progress)
        elif t == MT.HEARTBEAT_RESP:
            progress.recent_active = True
            self._handle_heartbeat_response(m, progress)
        elif t == MT.SNAP_RESP:
            progress.recent_active = True
            self._handle_snapshot_response(m, progress)
        elif t == MT.UNREACHABLE and progress.state == ProgressState.REPLICATE:
            progress.become_probe()

    def _leader_propose(self, m: Message) -> None:
        if not m.entries:
            raise ProposalDropped("empty proposal")
        if self.id not in self.prs:
            raise ProposalDropped(f"n{self.id} was removed from the configuration")
        if self.lead_transferee != NONE:
            raise ProposalDropped(f"leadership transfer to n{self.lead_transferee} in progress")
        for position, entry in enumerate(m.entries):
            if entry.type == EntryType.CONF_CHANGE:
                self._check_conf_change(ConfChange.decode(entry.data))
                self.pending_conf_index = self.log.last_index() + position + 1
        self._append_entries(m.entries)
        self._bcast_append()

    def _check_conf_change(self, change: ConfChange) -> None:
        """Refuse a membership change that is unsafe now (thesis §4.1, §4.2.1)."""
        if self.pending_conf_index > self.log.applied:
            raise ConfChangeRefused(
                f"previous membership change at {self.pending_conf_index} not applied yet "
                f"(applied {self.log.applied})"
            )
        node_id = change.node_id
        if node_id == NONE:
            raise ConfChangeRefused("node id 0 is reserved")
        if change.type == ConfChangeType.ADD_NODE:
            if node_id in self.voters:
                raise ConfChangeRefused(f"n{node_id} is already a voter")
            progress = self.prs.get(node_id)
            if progress is not None:
                lag = self.log.last_index() - progress.match
                if lag > self.config.promote_max_lag:
                    raise ConfChangeRefused(
                        f"learner n{node_id} is {lag} entries behind; promote it once caught up"
                    )
        elif change.type == ConfChangeType.ADD_LEARNER:
            if node_id in self.learners:
                raise ConfChangeRefused(f"n{node_id} is already a learner")
            if node_id in self.voters:
                raise ConfChangeRefused(f"n{node_id} is a voter; remove it first")
        elif change.type == ConfChangeType.REMOVE_NODE:
            if node_id not in self.prs:
                raise ConfChangeRefused(f"n{node_id} is not a member")
            if self.voters == {node_id}:
                raise ConfChangeRefused(f"n{node_id} is the last voter")

    def _append_entries(self, entries: list[Entry]) -> None:
        index = self.log.last_index()
        term = self.term
        for entry in entries:
            index += 1
            entry.term = term
            entry.index = index
        self.log.append(entries)
        # Our own acknowledgement comes from ``advance`` once these are durable, so the
        # leader writes its log in parallel with replication (thesis §10.2.1).

    def on_persisted(self, index: int) -> None:
        """The application made entries up to ``index`` durable (called by ``advance``)."""
        if self.role != StateRole.LEADER:
            return
        own = self.prs.get(self.id)
        if own is not None and own.maybe_update(index) and self._maybe_commit():
            self._commit_advanced()

    def _maybe_commit(self) -> bool:
        """Commit the largest index a quorum holds, if it is from our term (§5.4.2)."""
        match = {node_id: self.prs[node_id].match for node_id in self.voters if node_id in self.prs}
        index = quorum.committed_index(self.voters, match)
        if not self.log.maybe_commit(index, self.term):
            return False
        if self.pending_read_index and self._committed_in_current_term():
            pending, self.pending_read_index = self.pending_read_index, []
            for request in pending:
                self._leader_read_index(request)
        return True

    def _committed_in_current_term(self) -> bool:
        return self.log.term_or_zero(self.log.committed) == self.term

    def _commit_advanced(self) -> bool:
        """Tell followers about a new commit index: now (True: every follower was sent an
        append), or lazily (see ``Config.lazy_commit``)."""
        if self.config.lazy_commit:
            self.commit_unsent = True
            return False
        self._bcast_append()
        return True

    def forget_progress(self, node_id: NodeId) -> bool:
        """Leader only: forget what ``node_id``'s log was known to hold (match 0, probing
        from the end of the log), because that log is gone: its disk was wiped or replaced
        and the node came back empty. A remembered match would count the lost entries toward
        commits until the empty log's first answer showed it regressed. False when not
        leader or ``node_id`` is not tracked."""
        progress = self.prs.get(node_id)
        if self.role != StateRole.LEADER or progress is None or node_id == self.id:
            return False
        progress.match = 0
        progress.reset_state(ProgressState.PROBE)
        progress.next = self.log.last_index() + 1
        progress.recent_active = False
        return True

    def flush_commit(self) -> bool:
        """Lazy commit: send the commit index to every follower now if one has not heard it."""
        if self.role != StateRole.LEADER or not self.commit_unsent:
            return False
        self._bcast_append()
        return True

    def _bcast_append(self) -> None:
        self.commit_unsent = False
        for node_id in self.prs:
            if node_id != self.id:
                self._send_append(node_id)

    def _send_append(self, to: NodeId) -> None:
        """Send one append (empty if nothing new) and then pipeline while the window allows."""
        if self._maybe_send_append(to, send_if_empty=True):
            while self._maybe_send_append(to, send_if_empty=False):
                pass

    def _maybe_send_append(self, to: NodeId, send_if_empty: bool) -> bool:
        progress = self.prs[to]
        if progress.is_paused():
            return False
        log = self.log
        prev_index = progress.next - 1
        last = log.last_index()
        try:
            prev_term = log.term(prev_index)
            entries: list[Entry] = []
            if progress.next <= last:
                hi = min(last + 1, progress.next + self.config.max_entries_per_msg)
                entries = log.slice(progress.next, hi, self.config.max_size_per_msg)
        except Compacted:
            return self._send_snapshot_chunk(to, progress)
        if not entries and not send_if_empty:
            return False
        self._send(
            Message(
                MT.APP,
                to=to,
                index=prev_index,
                log_term=prev_term,
                entries=entries,
                commit=log.committed,
            )
        )
        progress.sent_entries(entries[-1].index if entries else prev_index, len(entries))
        return True

    def _send_snapshot_chunk(self, to: NodeId, progress: Progress) -> bool:
        """Stream the current snapshot to ``to``, one acknowledged chunk at a time (§7)."""
        if not progress.recent_active:
            return False  # do not stream a snapshot to a node we have not heard from
        try:
            snapshot = self.log.snapshot()
        except SnapshotTemporarilyUnavailable:
            return False
        index = snapshot.metadata.index
        if index == 0:
            raise AssertionError("need a snapshot but none exists")
        if progress.state != ProgressState.SNAPSHOT or progress.pending_snapshot != index:
            progress.become_snapshot(index)
            self._log(f"sending snapshot at {index} to n{to}")
        offset = progress.snap_offset
        data = snapshot.data
        chunk = data[offset : offset + self.config.snapshot_chunk_bytes]
        done = offset + len(chunk) >= len(data)
        self._send(
            Message(
                MT.SNAP,
                to=to,
                snapshot=Snapshot(snapshot.metadata, chunk),
                snap_offset=offset,
                snap_done=done,
            )
        )
        progress.snap_sent_offset = offset + len(chunk)
        return False  # chunks are stop-and-wait: nothing more to pipeline

    def _handle_append_response(self, m: Message, progress: Progress) -> None:
        if m.reject:
            if m.index >= progress.match > m.reject_hint:
                # A rejection at or past what it acknowledged, hinting below it.
                self._follower_regressed(m.frm, progress, m.reject_hint)
                self._send_append(m.frm)
                return
            # Fast backtracking (§5.3, "the follower can include the term of the conflicting
            # entry"): jump to the largest index where our term is ≤ the follower's hint term.
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if progress.maybe_decr_to(m.index, next_probe):
                if progress.state == ProgressState.REPLICATE:
                    progress.become_probe()
                self._send_append(m.frm)
            return
        was_paused = progress.is_paused()
        if not progress.maybe_update(m.index) and not (
            progress.state == ProgressState.PROBE and progress.match == m.index
        ):
            return
        if progress.state == ProgressState.PROBE:
            progress.become_replicate()
        elif progress.state == ProgressState.SNAPSHOT:
            if progress.match >= progress.pending_snapshot or (
                progress.match + 1 >= self.log.first_index()
            ):
                self._log(f"n{m.frm} caught up from snapshot at {progress.pending_snapshot}")
                progress.become_probe()
                progress.become_replicate()
        else:
            progress.inflights.free_le(m.index)
        broadcast = self._maybe_commit() and self._commit_advanced()
        if not broadcast:
            if was_paused:
                self._send_append(m.frm)
            else:
                while self._maybe_send_append(m.frm, send_if_empty=False):
                    pass
        if m.frm == self.lead_transferee and progress.match == self.log.last_index():
            self._log(f"sent timeout-now to n{m.frm}: caught up")
            self._send(Message(MT.TIMEOUT_NOW, to=m.frm))

    def _follower_regressed(self, follower: NodeId, progress: Progress, last: int) -> None:
        self._log(f"n{follower} lost entries: has up to {last}, acked {progress.match}")
        progress.regress_to(last)

    def _handle_heartbeat_response(self, m: Message, progress: Progress) -> None:
        progress.msg_app_probe_sent = False
        if m.index < progress.match and progress.state != ProgressState.SNAPSHOT:
            self._follower_regressed(m.frm, progress, m.index)  # its log is now shorter
        if progress.state == ProgressState.REPLICATE and progress.inflights.full():
            # Appends in the window may all have been lost: let one more through so a gap
            # is detected (and the follower falls back to probing) instead of stalling.
            progress.inflights.free_first()
        if progress.state == ProgressState.SNAPSHOT:
            # The chunk or its acknowledgement may have been lost: resend from the last ack.
            self._send_snapshot_chunk(m.frm, progress)
        elif progress.match < self.log.last_index():
            self._send_append(m.frm)
        if m.context:
            self._handle_read_ack(m.frm, m.context)

    def _handle_snapshot_response(self, m: Message, progress: Progress) -> None:
        if progress.state != ProgressState.SNAPSHOT or progress.pending_snapshot != m.index:
            return
        if m.reject or m.snap_offset > progress.snap_offset:
            progress.snap_offset = m.snap_offset
        else:
            return  # duplicate acknowledgement
        try:
            size = len(self.log.snapshot().data)
        except SnapshotTemporarilyUnavailable:
            return
        if progress.snap_offset < size or m.reject:
            self._send_snapshot_chunk(m.frm, progress)

    def _bcast_heartbeat(self, context: bytes) -> None:
        self.commit_unsent = False  # heartbeats carry the commit index too
        for node_id, progress in self.prs.items():
            if node_id == self.id:
                continue
            commit = min(progress.match, self.log.committed)
            self._send(Message(MT.HEARTBEAT, to=node_id, commit=commit, context=context))

    def _check_quorum(self) -> None:
        """Step down if a quorum has not been heard from for an election timeout (§6.2)."""
        active = [node_id for node_id, pr in self.prs.items() if pr.recent_active]
        if self.id in self.prs and self.id not in active:
            active.append(self.id)
        for node_id, progress in self.prs.items():
            if node_id != self.id:
                progress.recent_active = False
        if not quorum.has_quorum(self.voters, active):
            self._log("stepped down: lost contact with quorum")
            self.become_follower(self.term, NONE)

    # -- ReadIndex (thesis §6.4) -------------------------------------------------------------
    def _leader_read_index(self, m: Message) -> None:
        if len(self.voters) == 1 and self.id in self.voters:
            self._release_read(m, self.log.committed)
            return
        if not self._committed_in_current_term():
            # Until an entry of our term commits we do not know the true commit index.
            self.pending_read_index.append(m)
            return
        context = m.context
        if self.read_only.add(context, self.log.committed, m):
            self.read_only.ack(context, self.id)
            self._bcast_heartbeat(context)

    def _handle_read_ack(self, frm: NodeId, context: bytes) -> None:
        acks = self.read_only.ack(context, frm)
        if acks is None or not quorum.has_quorum(self.voters, acks):
            return
        for index, request in self.read_only.release_through(context):
            self._release_read(request, index)

    def _release_read(self, request: Message, index: int) -> None:
        if request.frm in (NONE, self.id):
            self.read_states.append(ReadState(index, request.context))
        else:
            self._send(
                Message(MT.READ_INDEX_RESP, to=request.frm, index=index, context=request.context)
            )

    # -- leadership transfer (thesis §3.10) --------------------------------------------------
    def _leader_transfer(self, transferee: NodeId) -> None:
        progress = self.prs.get(transferee)
        if progress is None or progress.is_learner:
            self._log(f"ignored transfer to n{transferee}: not a voter")
            return
        if transferee == self.id:
            return
        if self.lead_transferee == transferee:
            return
        self.lead_transferee = transferee
        self.election_elapsed = 0
        self._log(f"starts transfer to n{transferee}")
        if progress.match == self.log.last_index():
            self._send(Message(MT.TIMEOUT_NOW, to=transferee))
        else:
            self._send_append(transferee)

    # -- candidate -----------------------------------------------------------------------------
    def _step_candidate(self, m: Message) -> None:
        t = m.type
        if t == MT.READ_INDEX and m.frm != NONE:
            # A peer's forwarded read: dropping it is the answer (the requester retries);
            # stepping a network message must not raise.
            self._log(f"dropped read from n{m.frm}: campaigning, no leader")
            return
        if t in (MT.PROPOSE, MT.READ_INDEX):
            raise ProposalDropped(f"n{self.id} is campaigning; no leader")
        if t in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            self.become_follower(m.term, m.frm)
            self._step_follower(m)
            return
        expected = MT.PRE_VOTE_RESP if self.role == StateRole.PRE_CANDIDATE else MT.VOTE_RESP
        if t != expected:
            return
        result = self._poll(m.frm, not m.reject)
        if result == quorum.VoteResult.WON:
            if self.role == StateRole.PRE_CANDIDATE:
                self._campaign(pre_vote=False, transfer=False)
            else:
                self.become_leader()
                self._bcast_append()
        elif result == quorum.VoteResult.LOST:
            self.become_follower(self.term, NONE)

    # -- follower ------------------------------------------------------------------------------
    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MT.APP:
            self.election_elapsed = 0
            self.leader_id = m.frm
            self._handle_append(m)
        elif t == MT.HEARTBEAT:
            self.election_elapsed = 0
            self.leader_id = m.frm
            self._handle_heartbeat(m)
        elif t == MT.SNAP:
            self.election_elapsed = 0
            self.leader_id = m.frm
            self._handle_snapshot_chunk(m)
        elif t == MT.PROPOSE:
            raise ProposalDropped(f"n{self.id} is not the leader (leader n{self.leader_id})")
        elif t == MT.TRANSFER_LEADER:
            if self.leader_id != NONE:
                self.msgs.append(
                    Message(MT.TRANSFER_LEADER, to=self.leader_id, frm=m.frm, term=self.term)
                )
        elif t == MT.TIMEOUT_NOW:
            self._log(f"received timeout-now from n{m.frm}: campaigning")
            self._hup(transfer=True)
        elif t == MT.READ_INDEX:
            if self.leader_id == NONE and m.frm != NONE:
                # Forwarded to us while we led, arriving after we stepped down in the same
                # term (CheckQuorum, removal): drop it; the requester retries.
                self._log(f"dropped read from n{m.frm}: no leader")
                return
            if self.leader_id == NONE:
                raise ProposalDropped(f"n{self.id} knows no leader to serve a read")
            self.msgs.append(
                Message(
                    MT.READ_INDEX,
                    to=self.leader_id,
                    frm=self.id,
                    term=self.term,
                    context=m.context,
                )
            )
        elif t == MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))

    def _handle_append(self, m: Message) -> None:
        log = self.log
        if m.index < log.committed:
            self._send(Message(MT.APP_RESP, to=m.frm, index=log.committed))
            return
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(Message(MT.APP_RESP, to=m.frm, index=last_new))
            return
        hint_index = min(m.index, log.last_index())
        hint_index, hint_term = log.find_conflict_by_term(hint_index, m.log_term)
        self._log(f"rejected append at {m.index} (hint {hint_index}/{hint_term})")
        self._send(
            Message(
                MT.APP_RESP,
                to=m.frm,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(min(m.commit, self.log.last_index()))
        # Our last index lets the leader notice a log that went backwards (a wiped disk).
        self._send(
            Message(MT.HEARTBEAT_RESP, to=m.frm, context=m.context, index=self.log.last_index())
        )

    def _handle_snapshot_chunk(self, m: Message) -> None:
        snapshot = m.snapshot
        if snapshot is None:
            return
        meta = snapshot.metadata
        if meta.index <= self.log.committed:
            # Already have everything it covers: tell the leader where we are instead.
            self.snapshot_receiver = None
            self._send(Message(MT.APP_RESP, to=m.frm, index=self.log.committed))
            return
        receiver = self.snapshot_receiver
        if m.snap_offset == 0:
            receiver = SnapshotReceiver(m.frm, snapshot, bytearray())
            self.snapshot_receiver = receiver
        if (
            receiver is None
            or receiver.snapshot.metadata != meta
            or m.snap_offset != len(receiver.buffer)
        ):
            expected = 0 if receiver is None or receiver.snapshot.metadata != meta else len(
                receiver.buffer
            )
            self._send(
                Message(
                    MT.SNAP_RESP, to=m.frm, index=meta.index, reject=True, snap_offset=expected
                )
            )
            return
        receiver.buffer.extend(snapshot.data)
        if not m.snap_done:
            self._send(
                Message(MT.SNAP_RESP, to=m.frm, index=meta.index, snap_offset=len(receiver.buffer))
            )
            return
        self.snapshot_receiver = None
        whole = Snapshot(meta, bytes(receiver.buffer))
        if self._restore(whole):
            self._log(f"restored snapshot at {meta.index} term {meta.term}")
            self._send(Message(MT.APP_RESP, to=m.frm, index=self.log.last_index()))
        else:
            self._send(Message(MT.APP_RESP, to=m.frm, index=self.log.committed))

    def _restore(self, snapshot: Snapshot) -> bool:
        meta = snapshot.metadata
        if meta.index <= self.log.committed:
            return False
        if self.log.match_term(meta.index, meta.term):
            # Our log already holds the snapshot's last entry: just move commit forward.
            self.log.commit_to(meta.index)
            return False
        self.log.restore(snapshot)
        self._apply_conf_state(meta.conf_state)
        return True

    # -- membership (thesis §4.1: one server at a time) ----------------------------------------
    def _apply_conf_state(self, conf_state: ConfState) -> None:
        self.voters = set(conf_state.voters)
        self.learners = set(conf_state.learners)
        last = self.log.last_index()
        max_inflight = self.config.max_inflight_msgs
        prs: dict[NodeId, Progress] = {}
        for node_id in self.voters | self.learners:
            existing = self.prs.get(node_id)
            if existing is None:
                existing = Progress(last + 1, max_inflight)
                if node_id == self.id:
                    existing.match = self._persisted_last_index()
            existing.is_learner = node_id in self.learners
            prs[node_id] = existing
        self.prs = prs

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        """Apply a committed membership change (called as its entry is applied)."""
        node_id = change.node_id
        if change.type == ConfChangeType.ADD_NODE:
            self.learners.discard(node_id)
            self.voters.add(node_id)
        elif change.type == ConfChangeType.ADD_LEARNER:
            self.voters.discard(node_id)
            self.learners.add(node_id)
        elif change.type == ConfChangeType.REMOVE_NODE:
            self.voters.discard(node_id)
            self.learners.discard(node_id)
        self._apply_conf_state(self.conf_state())
        self._log(f"applied {change.type.name} n{node_id}: voters {sorted(self.voters)}")
        if self.lead_transferee != NONE and self.lead_transferee not in self.voters:
            self.lead_transferee = NONE
        if self.role in (StateRole.CANDIDATE, StateRole.PRE_CANDIDATE) and not self.promotable():
            # Removed while campaigning (the application applied the change between ready()
            # and advance()): votes still in flight must not make a non-voter leader.
            self.become_follower(self.term, NONE)
        if self.role != StateRole.LEADER:
            return self.conf_state()
        if self.id not in self.voters:
            self._step_down_removed()
        elif self._maybe_commit():
            self._commit_advanced()
        return self.conf_state()

    def _step_down_removed(self) -> None:
        """A leader removed from the voters hands over to its most caught-up voter."""
        last = self.log.last_index()
        successor = NONE
        for node_id in sorted(self.voters):
            progress = self.prs.get(node_id)
            if progress is not None and progress.match == last:
                successor = node_id
                break
        if successor != NONE:
            self._send(Message(MT.TIMEOUT_NOW, to=successor))
        self._log("stepped down: removed from voters")
        self.become_follower(self.term, NONE)
