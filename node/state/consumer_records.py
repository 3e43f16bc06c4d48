"""Consumer state records: the ``C/`` keys, their encodings, and the replicated limits.

Owns: the ``C/`` sub-key table below (the bytes are the on-disk format), the encodings of its
values (:class:`Cursor`: one (session, group)'s cursor, lease and unsettled deliveries; the
rest are ``consumer_commands`` protobuf records or raw integers), the limits and defaults that
are part of the replicated contract, and the input checks shared by the consumer service and
the apply. Must never: read a clock, touch the database beyond the ordered ``scan`` helper,
or hold anything beyond one call.

Key layout (``<sid>`` is the ``>H`` length + UTF-8 session id of ``quorumlog.node.state.keys``,
so one session's keys are one contiguous range per sub-prefix; integers unsigned big-endian):

==============================  ==============================================================
key                             value
==============================  ==============================================================
``C/clock``                     ``>Q`` the latest leader time any consumer command used
``C/policies``                  ``>Q`` sessions with a TTL or retention policy (sweeps needed)
``C/sweep``                     UTF-8 name of the session the last sweep stopped after
``C/g/<group UTF-8>``           ``GroupRecord``: lock duration, max deliveries
``C/r/<group UTF-8>``           UTF-8 name of the session "accept next" last handed out
``C/c/<sid><group UTF-8>``      the (session, group) cursor: ``>QQQH`` next undelivered offset,
                                fencing token, lease expiry (leader ms, 0 none), owner length;
                                the owner's name; then one ``>QIQB`` per delivered but
                                unsettled message, by offset: offset, delivery count, time,
                                kind (0 locked until time, 1 available again from time and
                                before any later message, 2 scheduled: available from time
                                without holding later ones back, 3 deferred: only by offset,
                                4 a deferred message locked until time)
``C/m/<sid>``                   ``SessionPolicy``: TTLs, retention, closed flag, dead-letter
                                sequence and count, last consumer activity
``C/d/<sid><sequence >Q>``      ``DeadLetterRecord`` (a copy of the payload: never lost to a
                                trim)
``C/x/<sid>``                   session state: ``>Q`` version, then the opaque blob
``C/t/<sid><time >Q><offset>``  time index: the leader time of an append and its first
                                offset, kept only for sessions with an age policy
``C/i/<sid><message id>``       ``>QQ`` the offset a ``message_id`` was written at and the
                                leader time it was recorded (duplicate detection)
``C/j/<sid><time >Q><id>``      the same ids ordered by that time, to prune expired ones
``C/e/<sid><offset >Q>``        a message with a delivery time or a time to live: ``>QQB``
                                deliver at (leader ms, 0 at once), expires at (0 never),
                                canceled (a scheduled message canceled before it was due)
==============================  ==============================================================

Who writes what while applying (modules of ``quorumlog.node.state``): ``consumer_overlay``
``C/clock``; ``consumer_groups`` ``C/g/`` and a cursor's deliveries (next offset, unsettled
messages); ``leases`` ``C/r/`` and a cursor's lease (token, expiry, owner); ``session_state``
``C/x/``; ``dead_letters`` ``C/d/`` and the dead-letter counters of ``C/m/``;
``session_policies`` the rest of ``C/m/``, ``C/t/``, ``C/policies`` and ``C/sweep``;
``message_ids`` ``C/i/`` and ``C/j/``; ``timed_messages`` ``C/e/``. A
session's delete removes its keys under every per-session sub-prefix (``SESSION_SUBPREFIXES``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import rocksdict
from google.protobuf.message import Message

from quorumlog.node.common.limits import ErrorCode, InvalidInput, check_name
from quorumlog.node.state.keys import CONSUMER_PREFIX, sid, successor
from quorumlog.proto import consumer_commands_pb2, consumer_pb2

CLOCK_KEY = CONSUMER_PREFIX + b"clock"
POLICIES_KEY = CONSUMER_PREFIX + b"policies"
SWEEP_KEY = CONSUMER_PREFIX + b"sweep"
GROUP_PREFIX = CONSUMER_PREFIX + b"g/"
ROTATION_PREFIX = CONSUMER_PREFIX + b"r/"
CURSOR_PREFIX = CONSUMER_PREFIX + b"c/"
POLICY_PREFIX = CONSUMER_PREFIX + b"m/"
DEAD_PREFIX = CONSUMER_PREFIX + b"d/"
STATE_PREFIX = CONSUMER_PREFIX + b"x/"
TIME_PREFIX = CONSUMER_PREFIX + b"t/"
ID_PREFIX = CONSUMER_PREFIX + b"i/"
ID_TIME_PREFIX = CONSUMER_PREFIX + b"j/"
TIMED_PREFIX = CONSUMER_PREFIX + b"e/"
# The per-session sub-prefixes: deleted with the session.
SESSION_SUBPREFIXES = (
    CURSOR_PREFIX, POLICY_PREFIX, DEAD_PREFIX, STATE_PREFIX, TIME_PREFIX, ID_PREFIX,
    ID_TIME_PREFIX, TIMED_PREFIX,
)

# Part of the replicated contract (apply-time checks): every node must agree.
MAX_GROUP_BYTES = 128
MAX_CONSUMER_BYTES = 128
MAX_REASON_BYTES = 1024
MAX_STATE_BYTES = 256 * 1024
MAX_IN_FLIGHT = 10_000  # delivered, unsettled messages per (session, group)
MAX_RECEIVE = 5_000
MAX_SETTLE = 10_000
MAX_DURATION_MS = 7 * 24 * 3600 * 1000
DEFAULT_LOCK_MS = 30_000
DEFAULT_LEASE_MS = 30_000
DEFAULT_MAX_DELIVERIES = 10
DEFAULT_RECEIVE = 100
DEFAULT_RECEIVE_BYTES = 1 << 20
ACCEPT_SCAN_LIMIT = 1_000  # sessions "accept next" looks at per command
SWEEP_LIMIT = 128  # sessions one sweep looks at
TIME_INDEX_PRUNE = 10_000  # time index entries one sweep removes per session
RESUBMIT_LIMIT = 1_000  # dead letters one resubmit names or takes
PURGE_LIMIT = 1_000  # dead letters one purge names or removes
MAX_LIST = 1_000

LOCKED = 0
AVAILABLE = 1
SCHEDULED = 2  # due at its time; does not hold later messages back
DEFERRED = 3  # left the delivery order: received only by its offset
DEFERRED_LOCKED = 4  # a deferred message received by offset: back to DEFERRED if it lapses
COMPLETE = consumer_pb2.COMPLETE
ABANDON = consumer_pb2.ABANDON
DEAD_LETTER = consumer_pb2.DEAD_LETTER
DEFER = consumer_pb2.DEFER

_CURSOR = struct.Struct(">QQQH")
_PENDING = struct.Struct(">QIQB")
TIME = struct.Struct(">QQ")


def cursor_key(session: bytes, group: bytes) -> bytes:
    return CURSOR_PREFIX + sid(session) + group


def refuse(message: str) -> InvalidInput:
    return InvalidInput(ErrorCode.FAILED_PRECONDITION, message)


def invalid(message: str) -> InvalidInput:
    return InvalidInput(ErrorCode.INVALID_ARGUMENT, message)


def check_group(group: str) -> bytes:
    return check_name("group", group, 1, MAX_GROUP_BYTES)


def check_consumer(consumer: str) -> bytes:
    return check_name("consumer name", consumer, 1, MAX_CONSUMER_BYTES)


def check_duration(what: str, value: int) -> None:
    if value > MAX_DURATION_MS:
        raise invalid(f"{what} of {value} ms is over the limit of {MAX_DURATION_MS} ms")


def check_state_size(data: bytes) -> None:
    if len(data) > MAX_STATE_BYTES:
        raise InvalidInput(
            ErrorCode.RESOURCE_EXHAUSTED,
            f"session state is {len(data)} bytes; the limit is {MAX_STATE_BYTES}",
        )


# -- records -------------------------------------------------------------------------------------
@dataclass(slots=True)
class Cursor:
    """One (session, group): its cursor, lease and unsettled deliveries (sorted by offset)."""

    next: int = 0
    token: int = 0
    lease_until: int = 0
    owner: str = ""
    # [offset, delivery count, time, kind], by offset
    pending: list[list[int]] = field(default_factory=list)

    @staticmethod
    def decode(value: bytes) -> Cursor:
        next_offset, token, lease_until, owner_length = _CURSOR.unpack_from(value)
        start = _CURSOR.size + owner_length
        owner = value[_CURSOR.size : start].decode("utf-8")
        pending = [list(item) for item in _PENDING.iter_unpack(value[start:])]
        return Cursor(next_offset, token, lease_until, owner, pending)

    def encode(self) -> bytes:
        owner = self.owner.encode("utf-8")
        pack = _PENDING.pack
        return b"".join(
            [
                _CURSOR.pack(self.next, self.token, self.lease_until, len(owner)),
                owner,
                *(pack(*item) for item in self.pending),
            ]
        )

    def live_owner(self, now: int) -> bool:
        return self.lease_until > now

    def backlog(self, first: int, end: int) -> int:
        """Messages the group has not settled: unsettled deliveries plus never delivered."""
        return sum(1 for item in self.pending if item[0] >= first) + max(
            0, end - max(self.next, first)
        )

    def next_delivery(self, first: int) -> int:
        """The next offset delivered for the first time (never below ``first``, the
        session's first retained offset: a trim moves a cursor that lagged behind)."""
        return max(self.next, first)

    def first_unsettled(self, first: int) -> int:
        """The lowest retained offset the group has not settled: its lowest unsettled
        delivery, else ``next_delivery``."""
        return min(
            (item[0] for item in self.pending if item[0] >= first),
            default=self.next_delivery(first),
        )

    def in_flight(self, now: int) -> int:
        return sum(
            1 for item in self.pending if item[3] in (LOCKED, DEFERRED_LOCKED) and item[2] > now
        )

    def deliverable(self, now: int, first: int, end: int) -> bool:
        for offset, _, until, kind in self.pending:
            if offset < first or kind in (DEFERRED, DEFERRED_LOCKED):
                continue  # trimmed, or received only by offset
            if kind == SCHEDULED and until > now:
                continue  # not due: later messages may go first
            if kind == AVAILABLE and until > now:
                return False  # a delayed redelivery blocks everything after it
            if until <= now:
                return True
        return max(self.next, first) < end

    def release_locks(self) -> None:
        """Every locked delivery becomes available at once (a new owner or a release); a
        deferred one goes back to waiting for its offset."""
        for item in self.pending:
            if item[3] == LOCKED:
                item[2] = 0
                item[3] = AVAILABLE
            elif item[3] == DEFERRED_LOCKED:
                item[2] = 0
                item[3] = DEFERRED


@dataclass(frozen=True, slots=True)
class ConsumerResult:
    """A consumer command's answer: the API response (a receive's without payloads: the
    service reads them once the entry is applied)."""

    response: Message


def policy_has_sweep(policy: consumer_commands_pb2.SessionPolicy) -> bool:
    return bool(
        policy.session_ttl_ms or policy.message_ttl_ms or policy.retention_ms
        or policy.retention_bytes
    )


def needs_time_index(policy: consumer_commands_pb2.SessionPolicy) -> bool:
    return bool(policy.message_ttl_ms or policy.retention_ms)


def scan(
    db: rocksdict.Rdict, prefix: bytes, start: bytes, limit: int
) -> Iterator[tuple[bytes, bytes]]:
    options = rocksdict.ReadOptions()
    options.set_iterate_upper_bound(successor(prefix))
    iterator = db.iter(options)
    iterator.seek(start)
    count = 0
    while iterator.valid() and count < limit:
        yield iterator.key(), iterator.value()
        count += 1
        iterator.next()
    iterator.status()  # an iteration that stopped on damaged data raises here
