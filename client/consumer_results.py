"""The plain values the consumer calls answer with (``quorumlog.client.consumer``).

Owns: the receive modes and settle actions, and the frozen dataclasses of received messages,
settlements, leases, session state, dead letters, scheduled messages and group and session
status, plus building a :class:`Lease` from its protobuf. Must never: talk to the network or
validate input (the consumer calls and the server do).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from quorumlog.client.envelope import Envelope
from quorumlog.proto import consumer_pb2 as cpb


class ReceiveMode(enum.IntEnum):
    PEEK_LOCK = cpb.PEEK_LOCK  # locked until settled or the lock expires (at-least-once)
    RECEIVE_AND_DELETE = cpb.RECEIVE_AND_DELETE  # settled as delivered (at-most-once)


class Action(enum.IntEnum):
    COMPLETE = cpb.COMPLETE
    ABANDON = cpb.ABANDON  # redelivered (after a delay), before any later message
    DEAD_LETTER = cpb.DEAD_LETTER  # moved to the session's dead-letter log
    DEFER = cpb.DEFER  # out of the delivery order: received again only by its offset


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    session: str
    group: str
    offset: int
    data: bytes
    delivery_count: int  # 1 on the first delivery
    locked_until_ms: int  # leader time; 0 in receive-and-delete mode
    token: int  # the fencing token it was received under (0: no lease)
    envelope: Envelope | None = None  # None: appended without one
    append_time_ms: int = 0  # the leader's clock at the append


@dataclass(frozen=True, slots=True)
class Received:
    session: str
    group: str
    messages: list[ReceivedMessage]
    token: int
    backlog: int  # messages of the group not settled yet, after this receive


@dataclass(frozen=True, slots=True)
class Settlement:
    offset: int
    delivery_count: int
    action: Action = Action.COMPLETE
    delay_ms: int = 0
    reason: str = ""

    @classmethod
    def of(cls, message: ReceivedMessage, action: Action = Action.COMPLETE, *,
           delay_ms: int = 0, reason: str = "") -> Settlement:
        return cls(message.offset, message.delivery_count, action, delay_ms, reason)


@dataclass(frozen=True, slots=True)
class StateWrite:
    """Compare-and-set: ``expected_version`` is the version read (0: never written)."""

    expected_version: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SettleResult:
    completed: int
    abandoned: int
    dead_lettered: int
    state_version: int  # the new version when a state write went with the settle
    deferred: int = 0


@dataclass(frozen=True, slots=True)
class Lease:
    session: str  # "" from accept_next when no session was available
    group: str
    consumer: str
    token: int  # fencing token: grows with each new owner
    expires_ms: int  # leader time


@dataclass(frozen=True, slots=True)
class SessionState:
    session: str
    version: int  # 0: never written
    data: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    sequence: int
    offset: int
    group: str
    reason: str
    delivery_count: int
    dead_lettered_ms: int
    data: bytes
    envelope: Envelope | None = None  # the message's, None: appended without one
    append_time_ms: int = 0  # the leader's clock at the original append


@dataclass(frozen=True, slots=True)
class ScheduledMessage:
    offset: int
    deliver_at_ms: int  # leader time
    canceled: bool


@dataclass(frozen=True, slots=True)
class GroupInfo:
    group: str
    lock_ms: int
    max_deliveries: int
    created_ms: int
    created: bool


@dataclass(frozen=True, slots=True)
class GroupStatus:
    group: str
    owner: str  # "" when no live lease
    lease_expires_ms: int
    token: int
    backlog: int  # lag: messages not settled by the group
    in_flight: int
    next_offset: int = 0  # the cursor: the next offset delivered for the first time
    first_unsettled: int = 0  # the lowest offset not settled (next_offset: nothing pending)


@dataclass(frozen=True, slots=True)
class ConsumerSessionStatus:
    session: str
    groups: list[GroupStatus] = field(default_factory=list)
    dead_letters: int = 0
    closed: bool = False
    messages_expired: int = 0  # expired messages skipped (per group that skipped one)


def lease_of(response: cpb.Lease) -> Lease:
    return Lease(response.session, response.group, response.consumer, response.token,
                 response.expires_ms)
