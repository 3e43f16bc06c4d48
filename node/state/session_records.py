"""Session log records: the ``S/`` and ``s/`` keys' encodings and the results built from them.

Owns: the encodings of a session's metadata and messages, the session results the client
service answers with (``SessionInfo``, ``AppendResult``, ``TrimResult``, ``DeleteResult``,
``Record``, ``ReadResult``, ``SessionPage``). Must never: write to the database (the apply
path, ``quorumlog.node.state.sessions``, does) or keep anything between calls.

Keys (see ``quorumlog.node.state.keys`` for the map and the ``<sid>`` encoding):

=============================  ================================================================
key                            value
=============================  ================================================================
``S/<session UTF-8>``          session metadata ``>QQQQQQ``: first retained offset, next
                               offset, cumulative payload bytes before the first retained
                               message, cumulative payload bytes of every message ever
                               appended, created_ms, last_append_ms. Unprefixed names so a
                               listing by prefix is one ordered range scan.
``s/<sid><offset >Q>``         one message: ``>Q`` cumulative payload bytes of the session's
                               messages before this one, with two flag bits on top; when
                               ``TIMED`` (bit 63, every message since envelopes) ``>Q`` the
                               leader's time of the append follows; when ``ENVELOPED`` (bit
                               62) then ``>I`` length and a serialized ``quorumlog.v1.Envelope``;
                               then the payload. A value without flags (stored before
                               envelopes) is the count and the payload. The cumulative count
                               makes a trim's new byte total one point read.
=============================  ================================================================

Count of a session = next - first; retained bytes = the two cumulative totals' difference.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

import rocksdict

from quorumlog.node.state.errors import StateCorrupted
from quorumlog.node.state.keys import MESSAGE_PREFIX, SESSION_PREFIX, U64, sid
from quorumlog.proto import quorumlog_pb2

_META = struct.Struct(">QQQQQQ")


# -- results -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionInfo:
    session: str
    first_offset: int
    next_offset: int
    count: int
    bytes: int
    created_ms: int
    last_append_ms: int

    def to_proto(self) -> quorumlog_pb2.SessionInfo:
        return quorumlog_pb2.SessionInfo(
            session=self.session,
            first_offset=self.first_offset,
            next_offset=self.next_offset,
            count=self.count,
            bytes=self.bytes,
            created_ms=self.created_ms,
            last_append_ms=self.last_append_ms,
        )


@dataclass(slots=True)  # not frozen: built per command on the hot path
class AppendResult:
    """Offsets ``first_offset .. first_offset + count - 1``; see ``quorumlog.node.state.dedup``
    for a duplicate older than every remembered batch (``count == 0``)."""

    session: str
    first_offset: int
    count: int
    duplicate: bool
    # Set when some message was a duplicate by message_id (quorumlog.node.state.message_ids):
    # the offset of every message of the append, and the positions of the duplicates.
    offsets: list[int] | None = None
    duplicate_positions: list[int] | None = None


@dataclass(frozen=True, slots=True)
class TrimResult:
    session: str
    first_offset: int
    info: SessionInfo  # the session right after this trim


@dataclass(frozen=True, slots=True)
class DeleteResult:
    session: str


class Record(NamedTuple):
    offset: int
    data: bytes
    append_time_ms: int = 0  # 0: stored before append times were kept
    envelope: bytes = b""  # a serialized quorumlog.v1.Envelope; empty: none

    def to_proto(self) -> quorumlog_pb2.Record:
        record = quorumlog_pb2.Record(
            offset=self.offset, data=self.data, append_time_ms=self.append_time_ms
        )
        if self.envelope:
            record.envelope.MergeFromString(self.envelope)
        return record


@dataclass(frozen=True, slots=True)
class ReadResult:
    session: str
    records: list[Record]
    next_offset: int  # read from here next
    first_offset: int  # first retained offset
    end_offset: int  # next offset to be written, as of this read

    def to_proto(self) -> quorumlog_pb2.ReadResponse:
        return quorumlog_pb2.ReadResponse(
            session=self.session,
            records=[record.to_proto() for record in self.records],
            next_offset=self.next_offset,
            first_offset=self.first_offset,
            end_offset=self.end_offset,
        )


class SessionPage(NamedTuple):
    sessions: list[SessionInfo]
    truncated: bool  # more follow: continue with start_after = the last name


# -- encodings -----------------------------------------------------------------------------------
def message_prefix(session: bytes) -> bytes:
    return MESSAGE_PREFIX + sid(session)


def message_key(session: bytes, offset: int) -> bytes:
    return MESSAGE_PREFIX + sid(session) + U64.pack(offset)


#: Flag bits on top of a message value's cumulative count (see the key table above).
TIMED = 1 << 63
ENVELOPED = 1 << 62
_COUNT_MASK = ENVELOPED - 1
_U32 = struct.Struct(">I")


class StoredMessage(NamedTuple):
    """A decoded ``s/`` value."""

    cumulative: int  # payload bytes of the session's messages before this one
    append_time_ms: int  # 0 when stored before append times were kept
    envelope: bytes  # serialized quorumlog.v1.Envelope, empty when none
    payload: bytes


def encode_message(cumulative: int, time_bytes: bytes, envelope: bytes, payload: bytes) -> bytes:
    """An ``s/`` value (``time_bytes``: the append time, ``U64``-packed once per append)."""
    if envelope:
        return (U64.pack(cumulative | TIMED | ENVELOPED) + time_bytes
                + _U32.pack(len(envelope)) + envelope + payload)
    return U64.pack(cumulative | TIMED) + time_bytes + payload


def decode_message(session: bytes, offset: int, value: bytes) -> StoredMessage:
    if len(value) < 8:
        raise StateCorrupted(f"session {session!r}: message {offset} of {len(value)} bytes")
    head: int = U64.unpack_from(value)[0]
    if not head & TIMED:
        return StoredMessage(head, 0, b"", value[8:])
    if len(value) < 16:
        raise StateCorrupted(f"session {session!r}: message {offset} of {len(value)} bytes")
    time_ms: int = U64.unpack_from(value, 8)[0]
    if not head & ENVELOPED:
        return StoredMessage(head & _COUNT_MASK, time_ms, b"", value[16:])
    length: int = _U32.unpack_from(value, 16)[0] if len(value) >= 20 else -1
    if length < 0 or 20 + length > len(value):
        raise StateCorrupted(f"session {session!r}: message {offset} has a torn envelope")
    return StoredMessage(head & _COUNT_MASK, time_ms, value[20 : 20 + length],
                         value[20 + length :])


def cumulative_of(session: bytes, offset: int, value: bytes) -> int:
    """The cumulative payload count of an ``s/`` value (its flags masked off)."""
    if len(value) < 8:
        raise StateCorrupted(f"session {session!r}: message {offset} of {len(value)} bytes")
    return int(U64.unpack_from(value)[0]) & _COUNT_MASK


def session_key(session: bytes) -> bytes:
    return SESSION_PREFIX + session


@dataclass(slots=True)
class SessionMeta:
    """One session's metadata while an apply call works on it (the ``S/`` value)."""

    first: int
    next: int
    start_bytes: int  # cumulative payload bytes before the first retained message
    end_bytes: int  # cumulative payload bytes of every message ever appended
    created_ms: int
    last_append_ms: int

    def copy(self) -> SessionMeta:
        return SessionMeta(
            self.first,
            self.next,
            self.start_bytes,
            self.end_bytes,
            self.created_ms,
            self.last_append_ms,
        )

    @staticmethod
    def decode(session: bytes, value: bytes) -> SessionMeta:
        if len(value) != _META.size:
            raise StateCorrupted(f"session {session!r}: metadata of {len(value)} bytes")
        return SessionMeta(*_META.unpack(value))

    def encode(self) -> bytes:
        return _META.pack(
            self.first,
            self.next,
            self.start_bytes,
            self.end_bytes,
            self.created_ms,
            self.last_append_ms,
        )

    def info(self, session: str) -> SessionInfo:
        return SessionInfo(
            session,
            self.first,
            self.next,
            self.next - self.first,
            self.end_bytes - self.start_bytes,
            self.created_ms,
            self.last_append_ms,
        )


def load_meta(db: rocksdict.Rdict, session: bytes) -> SessionMeta | None:
    value = db.get(SESSION_PREFIX + session)
    return None if value is None else SessionMeta.decode(session, value)
