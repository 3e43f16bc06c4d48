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
                               messages before this one, then the payload. The cumulative
                               count makes a trim's new byte total one point read.
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
            records=[quorumlog_pb2.Record(offset=o, data=d) for o, d in self.records],
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
