"""The application's handle on one Raft node: inputs in, ``Ready`` batches out.

Owns: the ``Ready`` contract and the bookkeeping between ``ready()`` and ``advance()``
(which hard state and soft state were already handed out, which entries became durable,
which committed entries were applied, membership changes taking effect as they are applied).
Must never: do I/O itself; the application persists, sends and applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quorumlog.raft.errors import ProposalDropped, RaftError
from quorumlog.raft.raft import Config, Raft
from quorumlog.raft.storage import Storage
from quorumlog.raft.types import (
    NONE,
    ConfChange,
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
    is_local_message,
)


@dataclass
class Ready:
    """Everything the application must act on, in this order:

    1. Persist ``hard_state`` (if set), ``entries`` (replacing any conflicting suffix) and
       ``snapshot`` (if set) in one atomic write; fsync it when ``must_sync``.
    2. Send ``messages`` at once (they need nothing durable). Send ``persisted_messages`` only
       after step 1 is durable: they are votes and append acknowledgements that vouch for it.
    3. Restore ``snapshot`` into the state machine (if set), then apply ``committed_entries``
       in order. Serve ``read_states`` once the applied index reaches each one's ``index``.
    4. Call ``RawNode.advance(ready)``.

    ``soft_state`` is informational (leader and role changes) and needs no persisting.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    committed_entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    persisted_messages: list[Message] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    must_sync: bool = False


@dataclass(frozen=True)
class ProgressView:
    match: int
    next: int
    state: str
    is_learner: bool
    recent_active: bool


@dataclass(frozen=True)
class Status:
    id: NodeId
    term: int
    vote: NodeId
    commit: int
    applied: int
    last_index: int
    first_index: int
    role: StateRole
    leader_id: NodeId
    lead_transferee: NodeId
    conf_state: ConfState
    progress: dict[NodeId, ProgressView]


class ReadyOutstanding(RaftError):
    """``ready()`` was called again before ``advance()`` for the previous Ready."""


class RawNode:
    def __init__(self, config: Config, storage: Storage) -> None:
        self.raft = Raft(config, storage)
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()
        self._outstanding = False

    # -- inputs --------------------------------------------------------------------------------
    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        self.raft.step(Message(MessageType.HUP, frm=self.raft.id))

    def step(self, message: Message) -> None:
        """Feed a message received from a peer."""
        if is_local_message(message.type):
            raise RaftError(f"{message.type.name} is a local message and cannot come from a peer")
        if message.frm != NONE and message.frm not in self.raft.prs and message.type in (
            MessageType.APP_RESP,
            MessageType.HEARTBEAT_RESP,
            MessageType.SNAP_RESP,
        ):
            return  # response from a node no longer in the configuration
        self.raft.step(message)

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append one entry; returns its (term, index). Raises ``ProposalDropped``."""
        term, first, _ = self.propose_batch([data])
        return term, first

    def propose_batch(self, payloads: list[bytes]) -> tuple[int, int, int]:
        """Append many entries in one step; returns (term, first index, last index)."""
        raft = self.raft
        if raft.role != StateRole.LEADER:
            raise ProposalDropped(f"n{raft.id} is not the leader (leader n{raft.leader_id})")
        first = raft.log.last_index() + 1
        entries = [Entry(0, 0, data) for data in payloads]
        raft.step(Message(MessageType.PROPOSE, frm=raft.id, entries=entries))
        return raft.term, first, first + len(payloads) - 1

    def propose_conf_change(self, change: ConfChange) -> tuple[int, int]:
        raft = self.raft
        if raft.role != StateRole.LEADER:
            raise ProposalDropped(f"n{raft.id} is not the leader (leader n{raft.leader_id})")
        entry = Entry(0, 0, change.encode(), EntryType.CONF_CHANGE)
        raft.step(Message(MessageType.PROPOSE, frm=raft.id, entries=[entry]))
        return raft.term, entry.index

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read point; the answer arrives as a ``ReadState``."""
        if not context:
            raise ValueError("read_index needs a non-empty, unique context")
        self.raft.step(Message(MessageType.READ_INDEX, frm=NONE, context=context))

    def transfer_leader(self, transferee: NodeId) -> None:
        self.raft.step(Message(MessageType.TRANSFER_LEADER, frm=transferee))

    def flush_commit(self) -> bool:
        """With ``Config.lazy_commit``: send the commit index to followers that lack it."""
        return self.raft.flush_commit()

    def forget_progress(self, node_id: NodeId) -> bool:
        """Leader only: ``node_id`` lost its log (a new incarnation); see ``Raft``."""
        return self.raft.forget_progress(node_id)

    def report_unreachable(self, node_id: NodeId) -> None:
        self.raft.step(Message(MessageType.UNREACHABLE, frm=node_id))

    # -- outputs -------------------------------------------------------------------------------
    def has_ready(self) -> bool:
        raft = self.raft
        if self._outstanding:
            return False
        if raft.msgs or raft.msgs_after_append or raft.read_states:
            return True
        log = raft.log
        if log.unstable or log.unstable_snapshot is not None:
            return True
        if log.has_next_committed_entries():
            return True
        if raft.term != self._prev_hard.term or raft.vote != self._prev_hard.vote:
            return True
        if log.committed != self._prev_hard.commit:
            return True
        return raft.leader_id != self._prev_soft.leader_id or raft.role != self._prev_soft.role

    def ready(self) -> Ready:
        if self._outstanding:
            raise ReadyOutstanding("advance() the previous Ready first")
        raft = self.raft
        log = raft.log
        rd = Ready()
        soft = raft.soft_state()
        if soft != self._prev_soft:
            rd.soft_state = soft
            self._prev_soft = soft
        hard = HardState(raft.term, raft.vote, log.committed)
        prev = self._prev_hard
        if hard != prev:
            rd.hard_state = hard
            rd.must_sync = hard.term != prev.term or hard.vote != prev.vote
            self._prev_hard = hard
        if log.unstable:
            rd.entries = list(log.unstable)
            rd.must_sync = True
        if log.unstable_snapshot is not None:
            rd.snapshot = log.unstable_snapshot
            rd.must_sync = True
        if log.has_next_committed_entries():
            rd.committed_entries = log.next_committed_entries()
        if raft.msgs:
            rd.messages = raft.msgs
            raft.msgs = []
        if raft.msgs_after_append:
            rd.persisted_messages = raft.msgs_after_append
            raft.msgs_after_append = []
        if raft.read_states:
            rd.read_states = raft.read_states
            raft.read_states = []
        self._outstanding = True
        return rd

    def advance(self, rd: Ready) -> None:
        """The application persisted, sent and applied ``rd``."""
        if not self._outstanding:
            raise RaftError("advance() without an outstanding Ready")
        self._outstanding = False
        raft = self.raft
        log = raft.log
        if rd.snapshot is not None:
            index = rd.snapshot.metadata.index
            log.stable_snapshot_to(index)
            log.applied = max(log.applied, index)
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
            raft.on_persisted(min(last.index, raft._persisted_last_index()))
        if rd.committed_entries:
            for entry in rd.committed_entries:
                if entry.type == EntryType.CONF_CHANGE:
                    raft.apply_conf_change(ConfChange.decode(entry.data))
            log.applied_to(rd.committed_entries[-1].index)

    # -- inspection ----------------------------------------------------------------------------
    def status(self) -> Status:
        raft = self.raft
        progress = {
            node_id: ProgressView(pr.match, pr.next, str(pr.state), pr.is_learner, pr.recent_active)
            for node_id, pr in raft.prs.items()
        } if raft.role == StateRole.LEADER else {}
        return Status(
            id=raft.id,
            term=raft.term,
            vote=raft.vote,
            commit=raft.log.committed,
            applied=raft.log.applied,
            last_index=raft.log.last_index(),
            first_index=raft.log.first_index(),
            role=raft.role,
            leader_id=raft.leader_id,
            lead_transferee=raft.lead_transferee,
            conf_state=raft.conf_state(),
            progress=progress,
        )
