"""What one apply call offers the consumer modules: the session view, the ``C/`` overlay, and
the lookups every consumer command starts with.

Owns: :class:`ConsumerBatch`, the read-your-writes overlay of one apply call over the ``C/``
keys (every consumer read and write of the call goes through it; it is flushed, sorted, into
the call's one write batch), the ``C/clock`` key (the monotonic leader time: ``now``),
:class:`PolicyHint`, and the protocols the session side implements for the consumer side
(``SessionView``: the apply batch's reads; ``SessionOps``: session writes). Must never: read a
clock, hold anything beyond one apply call (the hint is one bool), or let what a command sees
depend on how entries were grouped into apply calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import rocksdict
from google.protobuf.message import Message

from quorumlog.node.common.limits import ErrorCode, InvalidInput, Limits, check_session_id
from quorumlog.node.state.consumer_records import (
    CLOCK_KEY,
    CURSOR_PREFIX,
    GROUP_PREFIX,
    POLICY_PREFIX,
    SESSION_SUBPREFIXES,
    Cursor,
    check_group,
    scan,
)
from quorumlog.node.state.keys import U16, U64, sid, successor
from quorumlog.node.state.session_records import StoredMessage
from quorumlog.proto import consumer_commands_pb2

V = TypeVar("V")
M = TypeVar("M", bound=Message)


class SessionView(Protocol):
    """What the session state machine's apply batch offers the consumer modules."""

    raw: rocksdict.WriteBatch
    consumer: ConsumerBatch | None

    def meta_range(self, session: bytes) -> tuple[int, int] | None: ...

    def cumulative_before(self, session: bytes, offset: int) -> int: ...

    def message(self, session: bytes, offset: int) -> StoredMessage | None: ...

    def total_bytes(self, session: bytes) -> int: ...

    def last_append(self, session: bytes) -> int: ...

    def live_sessions(self, start: bytes, upper: bytes) -> Iterator[bytes]: ...


class SessionOps(Protocol):
    """Session-level writes the state machine performs for the consumer modules (same apply
    batch)."""

    # ``batch`` is the caller's own apply batch (a SessionView), passed back unchanged.
    def append_messages(
        self, batch: Any, session: str, messages: list[bytes], now: int, principal: str,
        *, envelopes: list[bytes] | None = None,
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
        prefixes = tuple(prefix + sid(session) for prefix in SESSION_SUBPREFIXES)
        for key in [key for key in self.values if key.startswith(prefixes)]:
            del self.values[key]
            self.dirty.discard(key)
        self.erased.add(sid(session))

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
        iterator.status()  # an iteration that stopped on damaged data raises here
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


# -- the lookups every command starts with --------------------------------------------------------
def existing_session(batch: SessionView, session: str, limits: Limits) -> tuple[bytes, int, int]:
    """(session bytes, first retained offset, end offset) of an existing session."""
    session_bytes = check_session_id(session, limits)
    bounds = batch.meta_range(session_bytes)
    if bounds is None:
        raise InvalidInput(ErrorCode.NOT_FOUND, f"session {session!r} not found")
    return session_bytes, bounds[0], bounds[1]


def existing_group(layer: ConsumerBatch, group: str) -> consumer_commands_pb2.GroupRecord:
    group_bytes = check_group(group)
    record = layer.message(GROUP_PREFIX + group_bytes, consumer_commands_pb2.GroupRecord)
    if record is None:
        raise InvalidInput(
            ErrorCode.NOT_FOUND, f"group {group!r} not found (create it first)"
        )
    return record
