"""Records, keys and the per-apply overlay of the consumer state (``C/`` keys).

Owns: the encodings of the keys ``quorumlog.node.state.consumer_state`` documents (its module
docstring has the layout), the limits and defaults that are part of the replicated contract,
the input checks shared by the consumer service and the apply, :class:`Cursor` (one (session,
group): cursor, lease, unsettled deliveries) and :class:`ConsumerBatch`, the read-your-writes
overlay of one apply call. Must never: read a clock or hold anything beyond one apply call.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import rocksdict
from google.protobuf.message import Message

from quorumlog.node.common.limits import ErrorCode, InvalidInput, check_name
from quorumlog.proto import consumer_commands_pb2, consumer_pb2

CONSUMER_PREFIX = b"C/"
CLOCK_KEY = b"C/clock"
POLICIES_KEY = b"C/policies"
SWEEP_KEY = b"C/sweep"
GROUP_PREFIX = b"C/g/"
ROTATION_PREFIX = b"C/r/"
CURSOR_PREFIX = b"C/c/"
POLICY_PREFIX = b"C/m/"
DEAD_PREFIX = b"C/d/"
STATE_PREFIX = b"C/x/"
TIME_PREFIX = b"C/t/"
# The per-session sub-prefixes: deleted with the session.
SESSION_SUBPREFIXES = (CURSOR_PREFIX, POLICY_PREFIX, DEAD_PREFIX, STATE_PREFIX, TIME_PREFIX)

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
RESUBMIT_LIMIT = 1_000
MAX_LIST = 1_000

LOCKED = 0
AVAILABLE = 1
COMPLETE = consumer_pb2.COMPLETE
ABANDON = consumer_pb2.ABANDON
DEAD_LETTER = consumer_pb2.DEAD_LETTER

V = TypeVar("V")
M = TypeVar("M", bound=Message)

U16 = struct.Struct(">H")
U64 = struct.Struct(">Q")
_CURSOR = struct.Struct(">QQQH")
_PENDING = struct.Struct(">QIQB")
TIME = struct.Struct(">QQ")


def sid_of(session: bytes) -> bytes:
    return U16.pack(len(session)) + session


def successor(prefix: bytes) -> bytes:
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def cursor_key(session: bytes, group: bytes) -> bytes:
    return CURSOR_PREFIX + sid_of(session) + group


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

    def in_flight(self, now: int) -> int:
        return sum(1 for item in self.pending if item[3] == LOCKED and item[2] > now)

    def deliverable(self, now: int, first: int, end: int) -> bool:
        for offset, _, until, kind in self.pending:
            if offset < first:
                continue
            if kind == AVAILABLE and until > now:
                return False  # a delayed redelivery blocks everything after it
            if until <= now:
                return True
        return max(self.next, first) < end

    def release_locks(self) -> None:
        """Every locked delivery becomes available at once (a new owner or a release)."""
        for item in self.pending:
            if item[3] == LOCKED:
                item[2] = 0
                item[3] = AVAILABLE


class SessionView(Protocol):
    """What the session state machine's apply batch offers this module."""

    raw: rocksdict.WriteBatch
    consumer: ConsumerBatch | None

    def meta_range(self, session: bytes) -> tuple[int, int] | None: ...

    def cumulative_before(self, session: bytes, offset: int) -> int: ...

    def payload(self, session: bytes, offset: int) -> bytes | None: ...

    def total_bytes(self, session: bytes) -> int: ...

    def last_append(self, session: bytes) -> int: ...

    def live_sessions(self, start: bytes, upper: bytes) -> Iterator[bytes]: ...


class SessionOps(Protocol):
    """Session-level writes the state machine performs for this module (same apply batch)."""

    # ``batch`` is the caller's own apply batch (a SessionView), passed back unchanged.
    def append_messages(
        self, batch: Any, session: str, messages: list[bytes], now: int, principal: str
    ) -> tuple[int, int]: ...

    def trim_before(self, batch: Any, session: str, before: int) -> None: ...

    def delete(self, batch: Any, session: str) -> None: ...


class PolicyHint:
    """Whether any session may have a policy record (``C/m/``): False only when none exists,
    so the append hook can skip its point read. Set on every policy write (before it is even
    written: True is always safe); recomputed after the whole state is replaced."""

    __slots__ = ("maybe",)

    def __init__(self, db: rocksdict.Rdict) -> None:
        self.maybe = True
        self.recompute(db)

    def recompute(self, db: rocksdict.Rdict) -> None:
        self.maybe = any(True for _ in scan(db, POLICY_PREFIX, POLICY_PREFIX, 1))


class ConsumerBatch:
    """Read-your-writes overlay of one apply call over the ``C/`` keys (decoded objects).

    Every read inside an apply call goes through it (point reads and ordered key listings),
    so what a command sees never depends on how the entries were grouped into apply calls
    (the leader and a catching-up follower group them differently)."""

    __slots__ = ("clock", "db", "dirty", "erased", "hint", "values")

    def __init__(self, db: rocksdict.Rdict, hint: PolicyHint) -> None:
        self.db = db
        self.hint = hint
        self.values: dict[bytes, object] = {}
        self.dirty: set[bytes] = set()
        self.clock: int | None = None
        self.erased: set[bytes] = set()  # <sid> of sessions range-deleted in this call

    def _erased(self, key: bytes) -> bool:
        """``key`` belongs to a session deleted in this call (its stored value is gone)."""
        if not self.erased or not key.startswith(SESSION_SUBPREFIXES):
            return False
        length = U16.unpack_from(key, len(CURSOR_PREFIX))[0]
        return key[len(CURSOR_PREFIX) : len(CURSOR_PREFIX) + 2 + length] in self.erased

    def _get(self, key: bytes, kind: type[V], decode: Callable[[bytes], V]) -> V | None:
        if key in self.values:
            cached = self.values[key]
            assert cached is None or isinstance(cached, kind)
            return cached
        value: bytes | None = None if self._erased(key) else self.db.get(key)
        decoded = None if value is None else decode(value)
        self.values[key] = decoded
        return decoded

    def cursor(self, key: bytes) -> Cursor | None:
        return self._get(key, Cursor, Cursor.decode)

    def message(self, key: bytes, kind: type[M]) -> M | None:
        return self._get(key, kind, kind.FromString)

    def raw_value(self, key: bytes) -> bytes | None:
        return self._get(key, bytes, bytes)

    def put(self, key: bytes, value: object) -> None:
        if key.startswith(POLICY_PREFIX):
            self.hint.maybe = True
        self.values[key] = value
        self.dirty.add(key)

    def delete(self, key: bytes) -> None:
        self.values[key] = None
        self.dirty.add(key)

    def now(self, leader_time: int) -> int:
        """The entry's leader time, never below any time used before (monotonic)."""
        if self.clock is None:
            value = self.db.get(CLOCK_KEY)
            self.clock = 0 if value is None else U64.unpack(value)[0]
        if leader_time > self.clock:
            self.clock = leader_time
            self.put(CLOCK_KEY, U64.pack(leader_time))
        return self.clock

    def forget_session(self, session: bytes) -> None:
        """The session was range-deleted in this batch: drop what the overlay holds of it,
        and read its stored keys as absent from now on."""
        prefixes = tuple(prefix + sid_of(session) for prefix in SESSION_SUBPREFIXES)
        for key in [key for key in self.values if key.startswith(prefixes)]:
            del self.values[key]
            self.dirty.discard(key)
        self.erased.add(sid_of(session))

    def keys(self, prefix: bytes, start: bytes, limit: int) -> list[bytes]:
        """Up to ``limit`` keys under ``prefix`` from ``start``, in order, as of this point of
        the apply call (stored keys merged with this call's writes and deletions)."""
        upper = successor(prefix)
        written = sorted(
            key for key, value in self.values.items()
            if value is not None and start <= key < upper
        )
        options = rocksdict.ReadOptions()
        options.set_iterate_upper_bound(upper)
        iterator = self.db.iter(options)
        iterator.seek(start)
        found: list[bytes] = []
        position = 0
        while len(found) < limit:
            stored: bytes | None = iterator.key() if iterator.valid() else None
            if stored is not None and (stored in self.values or self._erased(stored)):
                iterator.next()  # this call's value decides (``written`` has it if alive)
                continue
            mine = written[position] if position < len(written) else None
            if stored is None and mine is None:
                break
            if mine is None or (stored is not None and stored < mine):
                assert stored is not None
                found.append(stored)
                iterator.next()
            else:
                found.append(mine)
                position += 1
        return found

    def flush(self, raw: rocksdict.WriteBatch) -> None:
        for key in sorted(self.dirty):
            value = self.values[key]
            if value is None:
                raw.delete(key)
            elif isinstance(value, bytes):
                raw.put(key, value)
            elif isinstance(value, Cursor):
                raw.put(key, value.encode())
            else:
                assert isinstance(value, Message)
                raw.put(key, value.SerializeToString())


def overlay(batch: SessionView, db: rocksdict.Rdict, hint: PolicyHint) -> ConsumerBatch:
    if batch.consumer is None:
        batch.consumer = ConsumerBatch(db, hint)
    return batch.consumer


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
