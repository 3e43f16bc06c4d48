"""Plain data of the Raft core: entries, messages, hard state, snapshots, configuration.

Owns: the value types every other module of ``quorumlog.raft`` exchanges, and their wire-free
shape. Must never: perform I/O, read a clock, or hold behaviour beyond trivial helpers; the
node layer maps these to protobuf, the core never sees bytes on a wire.

Node ids are positive integers; ``NONE`` (0) means "nobody" (no vote, no known leader).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NodeId = int
NONE: NodeId = 0


class MessageType(enum.IntEnum):
    """Every input and output message kind.

    Local messages (``HUP``, ``BEAT``, ``PROPOSE``, ``CHECK_QUORUM``, ``TRANSFER_LEADER``,
    ``READ_INDEX`` from the application, ``UNREACHABLE``, ``SNAP_STATUS``) never cross the
    network; timers are delivered as local messages so there is a single input path.
    """

    HUP = 0  # local: start an election (timer fired or application asked)
    BEAT = 1  # local: leader should broadcast heartbeats
    PROPOSE = 2  # local: append entries (leader only)
    APP = 3  # AppendEntries
    APP_RESP = 4
    VOTE = 5  # RequestVote
    VOTE_RESP = 6
    PRE_VOTE = 7
    PRE_VOTE_RESP = 8
    SNAP = 9  # InstallSnapshot chunk
    SNAP_RESP = 10  # acknowledges one InstallSnapshot chunk
    HEARTBEAT = 11
    HEARTBEAT_RESP = 12
    TRANSFER_LEADER = 13  # local on leader (or forwarded by a follower)
    TIMEOUT_NOW = 14  # leader tells the transfer target to campaign at once
    READ_INDEX = 15  # linearizable read request (local, or forwarded to the leader)
    READ_INDEX_RESP = 16
    CHECK_QUORUM = 17  # local: leader verifies it still heard from a quorum
    UNREACHABLE = 18  # local: transport reports a peer unreachable


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


class ConfChangeType(enum.IntEnum):
    ADD_NODE = 0  # add a voter, or promote a learner to voter
    ADD_LEARNER = 1  # add a non-voting member (or demote a voter)
    REMOVE_NODE = 2


@dataclass(slots=True)
class Entry:
    term: int
    index: int
    data: bytes = b""
    type: EntryType = EntryType.NORMAL

    def size(self) -> int:
        """Approximate bytes this entry costs on the wire, for batching limits."""
        return len(self.data) + 16


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any vote or acknowledgement leaves the node."""

    term: int = 0
    vote: NodeId = NONE
    commit: int = 0


EMPTY_HARD_STATE = HardState()


@dataclass(frozen=True, slots=True)
class ConfState:
    voters: tuple[NodeId, ...] = ()
    learners: tuple[NodeId, ...] = ()

    def all_ids(self) -> tuple[NodeId, ...]:
        return tuple(sorted(set(self.voters) | set(self.learners)))


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Application state as of ``metadata.index``; ``data`` is opaque to the core."""

    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)
    data: bytes = b""

    def is_empty(self) -> bool:
        return self.metadata.index == 0


EMPTY_SNAPSHOT = Snapshot()


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One membership change; ``context`` is opaque (the node layer puts addresses there)."""

    type: ConfChangeType
    node_id: NodeId
    context: bytes = b""

    def encode(self) -> bytes:
        return bytes([int(self.type)]) + self.node_id.to_bytes(8, "big") + self.context

    @staticmethod
    def decode(data: bytes) -> ConfChange:
        if len(data) < 9:
            raise ValueError(f"conf change too short: {len(data)} bytes")
        return ConfChange(ConfChangeType(data[0]), int.from_bytes(data[1:9], "big"), data[9:])


@dataclass(slots=True)
class Message:
    """One Raft message. Which fields matter depends on ``type``.

    ``log_term``/``index``: for APP the (term, index) preceding ``entries``; for VOTE/PRE_VOTE
    the candidate's last (term, index); for APP_RESP the follower's match (or, on reject, the
    index that was rejected). ``reject_hint`` + ``log_term`` on a rejected APP_RESP carry the
    fast-backtracking conflict hint (the follower's last index ≤ the probe whose term is
    ≤ the probe's term). ``context`` carries ReadIndex request ids and the transfer marker on
    VOTE. For SNAP, ``snapshot`` carries metadata plus one chunk of data starting at
    ``snap_offset``; ``snap_done`` marks the last chunk.
    """

    type: MessageType
    to: NodeId = NONE
    frm: NodeId = NONE
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: list[Entry] = field(default_factory=list)
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    snap_offset: int = 0
    snap_done: bool = False
    context: bytes = b""


class StateRole(enum.IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth telling the application about; never persisted."""

    leader_id: NodeId = NONE
    role: StateRole = StateRole.FOLLOWER


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the applied index reaches ``index``."""

    index: int
    request_ctx: bytes


def is_local_message(message_type: MessageType) -> bool:
    return message_type in _LOCAL_TYPES


def is_response_message(message_type: MessageType) -> bool:
    return message_type in _RESPONSE_TYPES


_LOCAL_TYPES = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.CHECK_QUORUM,
        MessageType.UNREACHABLE,
    }
)

_RESPONSE_TYPES = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.PRE_VOTE_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.SNAP_RESP,
        MessageType.READ_INDEX_RESP,
        MessageType.UNREACHABLE,
    }
)
