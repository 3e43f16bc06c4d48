"""The session state machine: committed Raft entries in, sessions of ordered messages out.

Owns: every key of the node's RocksDB under ``a/``, ``S/``, ``n/``, ``p/`` and ``s/``, and
through ``quorumlog.node.state.acl`` those under ``A/`` (access rules, producer owners) (the Raft
storage owns ``m/`` and ``l/``; see ``quorumlog.node.storage.raft_store``; consumer groups, leases
and dead letters live under ``C/``, applied by ``quorumlog.node.state.consumer_state``), applying
committed entries to them (membership change entries update the member records), the local reads the
client service answers from, and streaming the whole state out and in for snapshots. Must never:
read a clock, draw randomness or consult anything node-local while applying (the same committed
entries give the same bytes on every replica; time comes from ``CommandBatch.leader_time_ms``),
keep per-session or per-message data in Python memory beyond one ``apply`` call except a bounded
cache of recent sessions' metadata (memory does not grow with what is stored), or write keys
outside its five prefixes. ``apply`` and ``import_state`` must not run concurrently with each
other; reads may run beside ``apply`` (a read that races a trim or delete answers
``OUT_OF_RANGE`` / ``NOT_FOUND``, never a gap).

Key layout (raw bytes; integers unsigned big-endian; ``<sid>`` is ``>H`` UTF-8 length then
the session id's UTF-8 bytes, so one session's keys form one contiguous range that no other
session's keys can fall into):

=============================  ================================================================
key                            value
=============================  ================================================================
``a/applied``                  ``>Q`` the index of the last applied Raft entry (absent: 0)
``a/importing``                empty; present only while ``import_state`` is replacing the
                               state (a crash in the middle leaves it: the state is partial)
``S/<session UTF-8>``          session metadata ``>QQQQQQ``: first retained offset, next
                               offset, cumulative payload bytes before the first retained
                               message, cumulative payload bytes of every message ever
                               appended, created_ms, last_append_ms. Unprefixed names so a
                               listing by prefix is one ordered range scan.
``s/<sid><offset >Q>``         one message: ``>Q`` cumulative payload bytes of the session's
                               messages before this one, then the payload. The cumulative
                               count makes a trim's new byte total one point read.
``n/<node id >Q>``             a member's record: ``commands.MemberAddress`` (name, peer and
                               client address, learner flag). Written when a membership change
                               entry applies (its context is the address), removed with the
                               member; the founding members' records are seeded from
                               ``--peers`` (``seed_members``), so every member has one.
``p/<sid><producer UTF-8>``    idempotent producer state: up to ``PRODUCER_BATCHES_KEPT``
                               ``>QIQ`` (first sequence, message count, first offset) of its
                               latest appends, oldest first
``C/...``                      consumer groups, cursors, peek-locks, leases, dead letters and
                               session state: ``quorumlog.node.state.consumer_state`` documents them
=============================  ================================================================

Count of a session = next - first; retained bytes = the two cumulative totals' difference.
Every write of one ``apply`` call and the new applied index go into ONE write batch (not
fsynced: the Raft log is the durable source, and because the applied index travels with the
state, a crash leaves the state of some applied prefix, and the missing suffix is re-applied).

Semantics: appends take gapless offsets from 0 (a session deleted and appended to again
starts over at 0). Trim drops a prefix (``before_offset`` at or below the first retained
offset is a no-op; beyond the end is ``OUT_OF_RANGE``; equal to the end empties the session
but keeps its offsets). Delete removes the session's metadata, messages and producer state.

Idempotent producers: an append with a producer id whose first sequence is at or above the
producer's high-water mark (the end of its latest append) is new; gaps are allowed. Below it:

- inside one remembered batch (the common retry: the same batch again) -> ``duplicate`` with
  the original offsets (a sub-range gets the sub-range's offsets);
- straddling the high-water mark, or overlapping remembered batches without lying inside one
  -> ``INVALID_ARGUMENT`` (a partial overlap: part of it was written, part was not);
- entirely in a gap between remembered batches -> ``INVALID_ARGUMENT`` (out of order: those
  sequences were skipped);
- entirely older than every remembered batch -> ``duplicate`` with ``count == 0`` and
  ``first_offset == 0``: written long ago, offsets no longer known (a retry must never write
  twice, and the producer has moved on since).
"""

from __future__ import annotations

import contextlib
import heapq
import shutil
import struct
import tempfile
import weakref
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, NoReturn

import rocksdict

from quorumlog.node.common.limits import (
    DEFAULT_LIMITS,
    ErrorCode,
    InvalidInput,
    Limits,
    check_append,
    check_session_id,
    list_limit,
    read_bounds,
)
from quorumlog.node.replication.applier import CommandError, EntryResult
from quorumlog.node.state.acl import ACL_PREFIX, APPEND, AclResult, AclStore
from quorumlog.node.state.consumer_state import (
    CONSUMER_PREFIX,
    ConsumerBatch,
    ConsumerResult,
    ConsumerState,
)
from quorumlog.node.storage.raft_store import RocksStorage
from quorumlog.proto import commands_pb2, quorumlog_pb2
from quorumlog.raft.types import ConfChange, ConfChangeType, Entry, EntryType, NodeId

APPLIED_PREFIX = b"a/"
MEMBER_PREFIX = b"n/"
SESSION_PREFIX = b"S/"
PRODUCER_PREFIX = b"p/"
MESSAGE_PREFIX = b"s/"
APPLIED_KEY = b"a/applied"
IMPORTING_KEY = b"a/importing"
# Every prefix this module owns, in key order.
STATE_PREFIXES = (
    ACL_PREFIX, CONSUMER_PREFIX, SESSION_PREFIX, APPLIED_PREFIX, MEMBER_PREFIX,
    PRODUCER_PREFIX, MESSAGE_PREFIX,
)
# What a snapshot carries as key/value pairs (the applied index travels in its header).
_EXPORTED_PREFIXES = (
    ACL_PREFIX, CONSUMER_PREFIX, SESSION_PREFIX, MEMBER_PREFIX, PRODUCER_PREFIX, MESSAGE_PREFIX
)

# Part of the replicated format: changing it changes what a retry is answered.
PRODUCER_BATCHES_KEPT = 16

# Session metadata of recently applied sessions kept between apply calls (values as written;
# cleared whole when full, so memory stays bounded whatever the number of sessions).
META_CACHE_SIZE = 4096
# Producer rings (encoded, at most PRODUCER_BATCHES_KEPT * 20 bytes each) kept between apply
# calls, so a steady producer's dedup state is not read from RocksDB on every append; cleared
# whole when full (about 3 MB at most), when a call deleted a session, and on an import.
RING_CACHE_SIZE = 8192

SNAPSHOT_CHUNK_BYTES = 1 << 20
_IMPORT_BATCH_BYTES = 4 << 20
_SNAPSHOT_MAGIC = b"QLSM"
_SNAPSHOT_VERSION = 1
_CHUNK_HEADER = b"H"
_CHUNK_DATA = b"D"
_CHUNK_END = b"E"

_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")
_META = struct.Struct(">QQQQQQ")
_PRODUCER_BATCH = struct.Struct(">QIQ")
_HEADER = struct.Struct(">4sBQ")
_PAIR = struct.Struct(">II")

_NORMAL = EntryType.NORMAL
_CONF_CHANGE = EntryType.CONF_CHANGE


def member_key(node_id: NodeId) -> bytes:
    return MEMBER_PREFIX + _U64.pack(node_id)


# -- errors --------------------------------------------------------------------------------------
class StateMachineError(Exception):
    """A read that cannot be answered; ``code`` and ``message`` are the client's answer."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SessionNotFound(StateMachineError):
    def __init__(self, session: str) -> None:
        super().__init__(ErrorCode.NOT_FOUND, f"session {session!r} not found")


class OffsetTrimmed(StateMachineError):
    def __init__(self, session: str, offset: int, first_offset: int) -> None:
        super().__init__(
            ErrorCode.OUT_OF_RANGE,
            f"offset {offset} of session {session!r} was trimmed; "
            f"the first retained offset is {first_offset}",
        )
        self.first_offset = first_offset


class StateCorrupted(Exception):
    """What is on disk breaks the layout's invariants."""


class IncompleteImport(Exception):
    """A snapshot import was interrupted; the state is partial until one completes."""


class SnapshotFormatError(ValueError):
    """A snapshot stream is malformed, of another version, or truncated."""


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
    """Offsets ``first_offset .. first_offset + count - 1``; see the module docstring for a
    duplicate older than every remembered batch (``count == 0``)."""

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


CommandResult = (
    AppendResult | TrimResult | DeleteResult | AclResult | ConsumerResult | CommandError
)


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
def _successor(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        raise ValueError("no key follows an all-0xff prefix")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _sid(session: bytes) -> bytes:
    return _U16.pack(len(session)) + session


def message_prefix(session: bytes) -> bytes:
    return MESSAGE_PREFIX + _sid(session)


def message_key(session: bytes, offset: int) -> bytes:
    return MESSAGE_PREFIX + _sid(session) + _U64.pack(offset)


def producer_key(session: bytes, producer: bytes) -> bytes:
    return PRODUCER_PREFIX + _sid(session) + producer


def session_key(session: bytes) -> bytes:
    return SESSION_PREFIX + session


@dataclass(slots=True)
class _Meta:
    """One session's metadata while an apply call works on it."""

    first: int
    next: int
    start_bytes: int  # cumulative payload bytes before the first retained message
    end_bytes: int  # cumulative payload bytes of every message ever appended
    created_ms: int
    last_append_ms: int

    def copy(self) -> _Meta:
        return _Meta(
            self.first,
            self.next,
            self.start_bytes,
            self.end_bytes,
            self.created_ms,
            self.last_append_ms,
        )

    @staticmethod
    def decode(session: bytes, value: bytes) -> _Meta:
        if len(value) != _META.size:
            raise StateCorrupted(f"session {session!r}: metadata of {len(value)} bytes")
        return _Meta(*_META.unpack(value))

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


_Ring = list[tuple[int, int, int]]  # (first sequence, count, first offset), oldest first
# Rings stay encoded (the ``p/`` value) on the apply path: an append reads only the newest
# batch and pushes one, so the whole ring is decoded only to judge a retry.
_RING_KEPT_BYTES = (PRODUCER_BATCHES_KEPT - 1) * _PRODUCER_BATCH.size


def _checked_ring(value: bytes) -> bytes:
    if not value or len(value) % _PRODUCER_BATCH.size:
        raise StateCorrupted(f"producer state of {len(value)} bytes")
    return value


def _decode_ring(value: bytes) -> _Ring:
    return list(_PRODUCER_BATCH.iter_unpack(_checked_ring(value)))


def _push_ring(value: bytes | None, sequence: int, count: int, first: int) -> bytes:
    """The ring after one more batch: the newest PRODUCER_BATCHES_KEPT batches."""
    pushed = _PRODUCER_BATCH.pack(sequence, count, first)
    return value[-_RING_KEPT_BYTES:] + pushed if value else pushed


def _load_meta(db: rocksdict.Rdict, session: bytes) -> _Meta | None:
    value = db.get(SESSION_PREFIX + session)
    return None if value is None else _Meta.decode(session, value)


# -- one apply call ------------------------------------------------------------------------------
class _ApplyBatch:
    """The write batch of one ``apply`` call, plus what it changed so far (read-your-writes
    inside the call). Lives only for the call: its size is bounded by the entries applied."""

    __slots__ = (
        "appended", "bindings", "cache", "consumer", "consumers", "db", "deleted", "dirty_metas",
        "metas", "raw", "ring_cache", "rings",
    )

    def __init__(
        self,
        db: rocksdict.Rdict,
        cache: dict[bytes, _Meta | None],
        ring_cache: dict[tuple[bytes, bytes], bytes | None],
        consumers: ConsumerState,
    ) -> None:
        self.db = db
        self.consumers = consumers
        self.consumer: ConsumerBatch | None = None  # the consumer keys' overlay, when used
        self.cache = cache  # written state only: never mutated here (copied on first use)
        self.ring_cache = ring_cache  # written rings only (bytes are immutable: no copies)
        self.raw = rocksdict.WriteBatch(raw_mode=True)
        self.metas: dict[bytes, _Meta | None] = {}
        self.dirty_metas: set[bytes] = set()
        self.rings: dict[tuple[bytes, bytes], bytes | None] = {}  # encoded, as in ``p/``
        self.deleted: set[bytes] = set()  # sessions deleted in this call (producer keys gone)
        # Appends of this call per session, for a trim inside the same call:
        # (first offset, cumulative bytes before it, payloads).
        self.appended: dict[bytes, list[tuple[int, int, list[bytes]]]] = {}
        self.bindings: dict[bytes, bytes] = {}  # producer -> principal bound in this call

    def meta(self, session: bytes) -> _Meta | None:
        try:
            return self.metas[session]
        except KeyError:
            pass
        try:
            cached = self.cache[session]
        except KeyError:
            meta = _load_meta(self.db, session)
        else:
            meta = None if cached is None else cached.copy()
        self.metas[session] = meta
        return meta

    # -- what consumer_state reads (its ``SessionView``) ---------------------------------
    def meta_range(self, session: bytes) -> tuple[int, int] | None:
        meta = self.meta(session)
        return None if meta is None else (meta.first, meta.next)

    def total_bytes(self, session: bytes) -> int:
        meta = self.meta(session)
        return 0 if meta is None else meta.end_bytes

    def last_append(self, session: bytes) -> int:
        meta = self.meta(session)
        return 0 if meta is None else meta.last_append_ms

    def live_sessions(self, start: bytes, upper: bytes) -> Iterator[bytes]:
        """Names of the sessions whose ``S/<name>`` keys fall in [start, upper), in order, as
        of this point of the call (stored ones merged with those this call created or
        deleted), so a listing never depends on how entries were grouped into calls."""
        created = sorted(
            name for name, meta in self.metas.items()
            if meta is not None and start <= SESSION_PREFIX + name < upper
        )
        options = rocksdict.ReadOptions()
        options.set_iterate_upper_bound(upper)
        iterator = self.db.iter(options)
        iterator.seek(start)

        def stored() -> Iterator[bytes]:
            while iterator.valid():
                key: bytes = iterator.key()
                yield key[len(SESSION_PREFIX) :]
                iterator.next()

        previous = None
        for name in heapq.merge(stored(), created):
            if name != previous and self.meta(name) is not None:
                yield name
            previous = name

    def payload(self, session: bytes, offset: int) -> bytes | None:
        for first, _, payloads in self.appended.get(session, ()):
            if first <= offset < first + len(payloads):
                return payloads[offset - first]
        value: bytes | None = self.db.get(message_key(session, offset))
        return None if value is None else value[8:]

    def update_cache(self) -> None:
        """After the batch is written: remember what this call left (bounded)."""
        cache = self.cache
        if len(cache) + len(self.metas) > META_CACHE_SIZE:
            cache.clear()
        cache.update(self.metas)
        ring_cache = self.ring_cache
        if self.deleted or len(ring_cache) + len(self.rings) > RING_CACHE_SIZE:
            ring_cache.clear()  # a deleted session's rings may be cached from earlier calls
        ring_cache.update(self.rings)

    def ring(self, session: bytes, producer: bytes) -> bytes | None:
        """The producer's ring as stored (encoded), None when it has none."""
        cache_key = (session, producer)
        try:
            return self.rings[cache_key]
        except KeyError:
            pass
        ring: bytes | None = None
        if session not in self.deleted:
            try:
                ring = self.ring_cache[cache_key]
            except KeyError:
                value = self.db.get(producer_key(session, producer))
                ring = None if value is None else _checked_ring(value)
        self.rings[cache_key] = ring
        return ring

    def cumulative_before(self, session: bytes, offset: int) -> int:
        for first, cumulative, payloads in self.appended.get(session, ()):
            if first <= offset < first + len(payloads):
                return cumulative + sum(map(len, payloads[: offset - first]))
        value = self.db.get(message_key(session, offset))
        if value is None or len(value) < 8:
            raise StateCorrupted(f"session {session!r}: message {offset} missing")
        cumulative_bytes: int = _U64.unpack_from(value)[0]
        return cumulative_bytes

    def delete_session(self, session: bytes) -> None:
        self.consumers.on_delete(self, session)
        raw = self.raw
        raw.delete(SESSION_PREFIX + session)
        messages = message_prefix(session)
        raw.delete_range(messages, _successor(messages))
        producers = PRODUCER_PREFIX + _sid(session)
        raw.delete_range(producers, _successor(producers))
        self.metas[session] = None
        self.dirty_metas.discard(session)
        self.deleted.add(session)
        self.appended.pop(session, None)
        for cache_key in [key for key in self.rings if key[0] == session]:
            self.rings[cache_key] = None

    def finish(self, applied_index: int) -> rocksdict.WriteBatch:
        """Queue the changed metadata and producer states (after every range delete of the
        call, so they win over them) and the applied index."""
        put = self.raw.put
        if self.consumer is not None:
            self.consumer.flush(self.raw)
        for session in sorted(self.dirty_metas):
            meta = self.metas[session]
            if meta is not None:
                put(SESSION_PREFIX + session, meta.encode())
        put(APPLIED_KEY, _U64.pack(applied_index))
        return self.raw


# -- the state machine ---------------------------------------------------------------------------
class SessionStateMachine:
    """Sessions over the node's RocksDB (shared with ``RocksStorage``)."""

    def __init__(self, storage: RocksStorage, limits: Limits = DEFAULT_LIMITS) -> None:
        if limits.max_session_id_bytes > 0xFFFF:
            raise ValueError("session ids longer than 65535 bytes do not fit the key layout")
        self._db = storage.db
        self.limits = limits
        # The storage's options: the same durability mode (WAL) for the whole DB.
        self._write_options = storage.write_options(sync=False)
        self._sync_write_options = storage.write_options(sync=True)
        self._meta_cache: dict[bytes, _Meta | None] = {}
        self._ring_cache: dict[tuple[bytes, bytes], bytes | None] = {}
        self.acl = AclStore(self._db)
        self.consumers = ConsumerState(self._db, limits)
        self._applied = self._load_applied()
        self._import_incomplete = self._db.get(IMPORTING_KEY) is not None

    # -- applying ------------------------------------------------------------------------
    def applied_index(self) -> int:
        return self._applied

    @property
    def import_incomplete(self) -> bool:
        """An import was interrupted: the state is partial; import a snapshot again."""
        return self._import_incomplete

    def apply(self, entries: Iterable[Entry]) -> list[EntryResult]:
        """Apply committed entries in order, as one atomic write; one result per entry given.
        Entries at or below the applied index are skipped (``EntryResult.skipped``)."""
        if self._import_incomplete:
            raise IncompleteImport("the state is partial (interrupted import); import again")
        applied = self._applied
        batch = _ApplyBatch(self._db, self._meta_cache, self._ring_cache, self.consumers)
        results: list[EntryResult] = []
        for entry in entries:
            index = entry.index
            if index <= applied:
                results.append(EntryResult(index, entry.term, (), skipped=True))
                continue
            applied = index
            data = entry.data
            if entry.type is _CONF_CHANGE:
                self._apply_conf_change(batch.raw, data)
            if entry.type is not _NORMAL or not data:
                results.append(EntryResult(index, entry.term, ()))
                continue
            try:
                command_batch = commands_pb2.CommandBatch.FromString(data)
            except Exception:  # any decode failure; decoding is pure, so every node agrees
                error = CommandError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"entry {index}: {len(data)} bytes are not a command batch",
                )
                results.append(EntryResult(index, entry.term, (), error))
                continue
            now = command_batch.leader_time_ms
            results.append(
                EntryResult(
                    index,
                    entry.term,
                    tuple(
                        self._apply_command(batch, command, now)
                        for command in command_batch.commands
                    ),
                )
            )
        if applied != self._applied:
            self._db.write(batch.finish(applied), self._write_options)
            batch.update_cache()
            self._applied = applied
        return results

    def _apply_conf_change(self, raw: rocksdict.WriteBatch, data: bytes) -> None:
        """Keep the member records in step with a committed membership change."""
        try:
            change = ConfChange.decode(data)
            address = commands_pb2.MemberAddress.FromString(change.context)
        except Exception:  # a malformed context changes no record; every node agrees
            return
        key = member_key(change.node_id)
        if change.type == ConfChangeType.REMOVE_NODE:
            raw.delete(key)
            return
        if not address.peer_address:
            # A promotion (or demotion) without a context keeps the recorded addresses.
            value = self._db.get(key)
            if value is not None:
                address = commands_pb2.MemberAddress.FromString(value)
        address.learner = change.type == ConfChangeType.ADD_LEARNER
        raw.put(key, address.SerializeToString())

    def members(self) -> dict[NodeId, commands_pb2.MemberAddress]:
        """Every member's record, as of the applied index (a handful of keys)."""
        options = rocksdict.ReadOptions()
        options.set_iterate_upper_bound(_successor(MEMBER_PREFIX))
        iterator = self._db.iter(options)
        iterator.seek(MEMBER_PREFIX)
        records: dict[NodeId, commands_pb2.MemberAddress] = {}
        while iterator.valid():
            key: bytes = iterator.key()
            node_id: NodeId = _U64.unpack_from(key, len(MEMBER_PREFIX))[0]
            records[node_id] = commands_pb2.MemberAddress.FromString(iterator.value())
            iterator.next()
        return records

    def seed_members(self, records: dict[NodeId, commands_pb2.MemberAddress]) -> None:
        """Replace every member record (founding members from ``--peers``; a restore).

        Only for a state every replica derives the same way from the same flags: a founded
        cluster before its first entry, or a restored backup; never while applying."""
        raw = rocksdict.WriteBatch(raw_mode=True)
        raw.delete_range(MEMBER_PREFIX, _successor(MEMBER_PREFIX))
        for node_id, record in sorted(records.items()):
            raw.put(member_key(node_id), record.SerializeToString())
        self._db.write(raw, self._sync_write_options)

    def _apply_command(
        self, batch: _ApplyBatch, command: commands_pb2.Command, now: int
    ) -> CommandResult:
        kind = command.WhichOneof("kind")
        if kind == "append":
            return self._append(batch, command.append, now)
        if kind == "trim":
            return self._trim(batch, command.trim)
        if kind == "delete_session":
            return self._delete(batch, command.delete_session)
        if kind == "consumer":
            try:
                return self.consumers.apply(batch, self, command.consumer, now)
            except InvalidInput as refused:  # refused before changing anything
                return CommandError(refused.code, refused.message)
        if kind == "acl":
            try:
                return self.acl.apply(batch.raw, command.acl)
            except InvalidInput as invalid:
                return CommandError(invalid.code, invalid.message)
        return CommandError(ErrorCode.INVALID_ARGUMENT, "unknown or empty command")

    def _append(
        self, batch: _ApplyBatch, command: commands_pb2.AppendCommand, now: int
    ) -> CommandResult:
        session = command.session
        messages = list(command.messages)
        sequence = command.sequence
        try:
            session_bytes, producer_bytes, total = check_append(
                session, messages, command.producer_id, sequence, self.limits
            )
        except InvalidInput as invalid:
            return CommandError(invalid.code, invalid.message)
        refusal = self._authorize_append(batch, session, producer_bytes, command.principal)
        if refusal is not None:
            return refusal
        count = len(messages)
        ring: bytes | None = None
        if producer_bytes:
            ring = batch.ring(session_bytes, producer_bytes)
            if ring:
                verdict = _check_sequence(session, command.producer_id, ring, sequence, count)
                if verdict is not None:
                    return verdict
        meta = batch.meta(session_bytes)
        if meta is not None:
            try:
                self.consumers.on_append(batch, session_bytes, meta.next, now)
            except InvalidInput as refused:  # a closed session
                return CommandError(refused.code, refused.message)
        if meta is None:
            meta = _Meta(0, 0, 0, 0, now, now)
            batch.metas[session_bytes] = meta
        first = meta.next
        cumulative = meta.end_bytes
        put = batch.raw.put
        pack = _U64.pack
        prefix = message_prefix(session_bytes)
        offset = first
        for message in messages:
            put(prefix + pack(offset), pack(cumulative) + message)
            offset += 1
            cumulative += len(message)
        batch.appended.setdefault(session_bytes, []).append((first, meta.end_bytes, messages))
        meta.next = offset
        meta.end_bytes += total
        meta.last_append_ms = max(meta.last_append_ms, now)
        batch.dirty_metas.add(session_bytes)
        if producer_bytes:
            ring = _push_ring(ring, sequence, count, first)
            batch.rings[(session_bytes, producer_bytes)] = ring
            put(producer_key(session_bytes, producer_bytes), ring)
        return AppendResult(session, first, count, False)

    def _authorize_append(
        self, batch: _ApplyBatch, session: str, producer: bytes, principal: str
    ) -> CommandError | None:
        """The ACL's ``append`` rule and the producer id's owner, at apply time so a rule
        changed after the leader's check still decides (``quorumlog.node.state.acl``)."""
        if not self.acl.allows(principal, APPEND, session):
            return CommandError(
                ErrorCode.PERMISSION_DENIED,
                f"principal {principal!r} may not append to session {session!r}",
            )
        if producer:
            refused = self.acl.bind_producer(batch.raw, batch.bindings, producer, principal)
            if refused is not None:
                return CommandError(refused.code, refused.message)
        return None

    def _trim(self, batch: _ApplyBatch, command: commands_pb2.TrimCommand) -> CommandResult:
        session = command.session
        try:
            session_bytes = check_session_id(session, self.limits)
        except InvalidInput as invalid:
            return CommandError(invalid.code, invalid.message)
        meta = batch.meta(session_bytes)
        if meta is None:
            return CommandError(ErrorCode.NOT_FOUND, f"session {session!r} not found")
        before = command.before_offset
        if before > meta.next:
            return CommandError(
                ErrorCode.OUT_OF_RANGE,
                f"cannot trim session {session!r} before offset {before}: "
                f"its end offset is {meta.next}",
            )
        if before > meta.first:
            start_bytes = (
                meta.end_bytes
                if before == meta.next
                else batch.cumulative_before(session_bytes, before)
            )
            batch.raw.delete_range(
                message_key(session_bytes, meta.first), message_key(session_bytes, before)
            )
            meta.first = before
            meta.start_bytes = start_bytes
            batch.dirty_metas.add(session_bytes)
        return TrimResult(session, meta.first, meta.info(session))

    def _delete(
        self, batch: _ApplyBatch, command: commands_pb2.DeleteSessionCommand
    ) -> CommandResult:
        session = command.session
        try:
            session_bytes = check_session_id(session, self.limits)
        except InvalidInput as invalid:
            return CommandError(invalid.code, invalid.message)
        if batch.meta(session_bytes) is None:
            return CommandError(ErrorCode.NOT_FOUND, f"session {session!r} not found")
        batch.delete_session(session_bytes)
        return DeleteResult(session)

    # -- session writes consumer_state asks for (its ``SessionOps``) -----------------------
    def append_messages(
        self, batch: _ApplyBatch, session: str, messages: list[bytes], now: int, principal: str
    ) -> tuple[int, int]:
        """Append inside this apply call as ``principal``; (first offset, count) or
        ``InvalidInput``."""
        command = commands_pb2.AppendCommand(
            session=session, messages=messages, principal=principal
        )
        result = self._append(batch, command, now)
        if isinstance(result, CommandError):
            raise InvalidInput(result.code, result.message)
        assert isinstance(result, AppendResult)
        return result.first_offset, result.count

    def trim_before(self, batch: _ApplyBatch, session: str, before: int) -> None:
        self._trim(batch, commands_pb2.TrimCommand(session=session, before_offset=before))

    def delete(self, batch: _ApplyBatch, session: str) -> None:
        batch.delete_session(session.encode("utf-8"))

    # -- reads (local applied state) -----------------------------------------------------
    def describe(self, session: str) -> SessionInfo:
        session_bytes = check_session_id(session, self.limits)
        meta = _load_meta(self._db, session_bytes)
        if meta is None:
            raise SessionNotFound(session)
        return meta.info(session)

    def read(
        self, session: str, from_offset: int, max_count: int = 0, max_bytes: int = 0
    ) -> ReadResult:
        """Records from ``from_offset``: at most ``max_count`` and about ``max_bytes`` of
        payload, but at least one when any is available (0 means the limits' default)."""
        max_count, max_bytes = read_bounds(max_count, max_bytes, self.limits)
        session_bytes = check_session_id(session, self.limits)
        meta = _load_meta(self._db, session_bytes)
        if meta is None:
            raise SessionNotFound(session)
        if from_offset < meta.first:
            raise OffsetTrimmed(session, from_offset, meta.first)
        if from_offset >= meta.next:
            return ReadResult(session, [], from_offset, meta.first, meta.next)
        end = min(meta.next, from_offset + max_count)
        prefix = message_prefix(session_bytes)
        options = rocksdict.ReadOptions()
        options.set_iterate_upper_bound(prefix + _U64.pack(end))
        iterator = self._db.iter(options)
        iterator.seek(prefix + _U64.pack(from_offset))
        records: list[Record] = []
        offset = from_offset
        total = 0
        key_length = len(prefix) + 8
        while iterator.valid():
            key: bytes = iterator.key()
            if len(key) != key_length or _U64.unpack_from(key, len(prefix))[0] != offset:
                break  # trimmed or deleted under us (a concurrent apply): answered below
            value: bytes = iterator.value()
            size = len(value) - 8
            if records and total + size > max_bytes:
                break
            total += size
            records.append(Record(offset, value[8:]))
            offset += 1
            iterator.next()
        else:
            if offset != end:
                self._raise_moved(session, session_bytes, offset)
        if not records:
            self._raise_moved(session, session_bytes, offset)
        return ReadResult(session, records, offset, meta.first, meta.next)

    def _raise_moved(self, session: str, session_bytes: bytes, offset: int) -> NoReturn:
        meta = _load_meta(self._db, session_bytes)
        if meta is None:
            raise SessionNotFound(session)
        if offset < meta.first:
            raise OffsetTrimmed(session, offset, meta.first)
        raise StateCorrupted(f"session {session!r}: message {offset} missing")

    def list_sessions(self, prefix: str = "", limit: int = 0, start_after: str = "") -> SessionPage:
        """Sessions whose name starts with ``prefix``, sorted by name (UTF-8 byte order),
        after ``start_after``; at most ``limit`` (0: the default)."""
        limit = list_limit(limit, self.limits)
        lower = SESSION_PREFIX + prefix.encode("utf-8")
        upper = _successor(lower)
        start = lower
        if start_after:
            start = max(start, SESSION_PREFIX + start_after.encode("utf-8") + b"\x00")
        options = rocksdict.ReadOptions()
        options.set_iterate_upper_bound(upper)
        iterator = self._db.iter(options)
        iterator.seek(start)
        sessions: list[SessionInfo] = []
        while iterator.valid():
            if len(sessions) == limit:
                return SessionPage(sessions, True)
            key: bytes = iterator.key()
            name_bytes = key[len(SESSION_PREFIX) :]
            name = name_bytes.decode("utf-8")
            sessions.append(_Meta.decode(name_bytes, iterator.value()).info(name))
            iterator.next()
        return SessionPage(sessions, False)

    # -- snapshots -----------------------------------------------------------------------
    def export_state(self, chunk_bytes: int = SNAPSHOT_CHUNK_BYTES) -> StateExport:
        """A point-in-time copy of the whole state, as of this call, streamed as chunks."""
        return StateExport(self._db, chunk_bytes)

    def import_state(self, chunks: Iterable[bytes]) -> None:
        """Replace the whole state with a snapshot stream (``applied_index()`` is then its).

        Writes go in bounded batches; until the last one, ``a/importing`` marks the state
        partial (``apply`` refuses it, ``import_incomplete`` says so)."""
        stream = iter(chunks)
        header = next(stream, None)
        if header is None:
            raise SnapshotFormatError("empty snapshot stream")
        applied = _parse_header(header)
        raw = rocksdict.WriteBatch(raw_mode=True)
        for prefix in STATE_PREFIXES:
            raw.delete_range(prefix, _successor(prefix))
        raw.put(IMPORTING_KEY, b"")
        self._meta_cache.clear()
        self._ring_cache.clear()
        self._db.write(raw, self._write_options)
        self.acl.invalidate()
        self._import_incomplete = True
        self._applied = 0
        raw = rocksdict.WriteBatch(raw_mode=True)
        pairs = 0
        ended = False
        for chunk in stream:
            kind = chunk[:1]
            if ended:
                raise SnapshotFormatError("data after the snapshot's end marker")
            if kind == _CHUNK_DATA:
                pairs += _put_pairs(raw, chunk)
                if raw.size_in_bytes() >= _IMPORT_BATCH_BYTES:
                    self._db.write(raw, self._write_options)
                    raw = rocksdict.WriteBatch(raw_mode=True)
            elif kind == _CHUNK_END:
                if len(chunk) != 9 or _U64.unpack_from(chunk, 1)[0] != pairs:
                    raise SnapshotFormatError(f"end marker does not match {pairs} pairs read")
                ended = True
            else:
                raise SnapshotFormatError(f"unknown chunk kind {kind!r}")
        if not ended:
            raise SnapshotFormatError("snapshot stream ended before its end marker")
        raw.put(APPLIED_KEY, _U64.pack(applied))
        raw.delete(IMPORTING_KEY)
        self._db.write(raw, self._sync_write_options)
        self._applied = applied
        self._import_incomplete = False
        self.acl.invalidate()
        self.consumers.invalidate()

    # -- internals -----------------------------------------------------------------------
    def _load_applied(self) -> int:
        value = self._db.get(APPLIED_KEY)
        if value is None:
            return 0
        if len(value) != 8:
            raise StateCorrupted(f"applied index of {len(value)} bytes")
        applied: int = _U64.unpack(value)[0]
        return applied


def _check_sequence(
    session: str, producer: str, encoded: bytes, sequence: int, count: int
) -> CommandResult | None:
    """None for a new append; otherwise the duplicate's result or the error (module doc).
    ``encoded`` is the stored ring; only a retry's check decodes all of it."""
    last_sequence, last_count, _ = _PRODUCER_BATCH.unpack_from(
        encoded, len(encoded) - _PRODUCER_BATCH.size
    )
    high = last_sequence + last_count
    if sequence >= high:
        return None
    ring = _decode_ring(encoded)
    end = sequence + count
    span = f"sequences {sequence}..{end - 1} of producer {producer!r} in session {session!r}"
    if end > high:
        return CommandError(
            ErrorCode.INVALID_ARGUMENT,
            f"{span} partially overlap what it already wrote (up to sequence {high - 1})",
        )
    for batch_sequence, batch_count, batch_offset in reversed(ring):
        batch_end = batch_sequence + batch_count
        if batch_sequence <= sequence and end <= batch_end:
            return AppendResult(session, batch_offset + sequence - batch_sequence, count, True)
        if sequence < batch_end and batch_sequence < end:
            return CommandError(
                ErrorCode.INVALID_ARGUMENT,
                f"{span} partially overlap its append of sequences "
                f"{batch_sequence}..{batch_end - 1}",
            )
    if end <= ring[0][0]:
        return AppendResult(session, 0, 0, True)
    return CommandError(
        ErrorCode.INVALID_ARGUMENT,
        f"{span} are out of order: the producer skipped them and has written up to {high - 1}",
    )


# -- snapshot streams ----------------------------------------------------------------------------
def _parse_header(chunk: bytes) -> int:
    if chunk[:1] != _CHUNK_HEADER or len(chunk) != 1 + _HEADER.size:
        raise SnapshotFormatError("the first chunk is not a snapshot header")
    magic, version, applied = _HEADER.unpack_from(chunk, 1)
    if magic != _SNAPSHOT_MAGIC:
        raise SnapshotFormatError(f"not a quorumlog state snapshot (magic {magic!r})")
    if version != _SNAPSHOT_VERSION:
        raise SnapshotFormatError(f"snapshot format {version} is not supported")
    applied_index: int = applied
    return applied_index


def _put_pairs(raw: rocksdict.WriteBatch, chunk: bytes) -> int:
    position = 1
    size = len(chunk)
    pairs = 0
    put = raw.put
    while position < size:
        if position + _PAIR.size > size:
            raise SnapshotFormatError("truncated pair header")
        key_length, value_length = _PAIR.unpack_from(chunk, position)
        position += _PAIR.size
        key_end = position + key_length
        value_end = key_end + value_length
        if value_end > size:
            raise SnapshotFormatError("truncated pair")
        key = chunk[position:key_end]
        if not key.startswith(_EXPORTED_PREFIXES):
            raise SnapshotFormatError(f"key {key[:32]!r} is not a state machine key")
        put(key, chunk[key_end:value_end])
        position = value_end
        pairs += 1
    return pairs


def _remove_export(view: rocksdict.Rdict, directory: str) -> None:
    with contextlib.suppress(Exception):
        view.close()
    shutil.rmtree(directory, ignore_errors=True)


class StateExport:
    """An iterator of snapshot chunks over a point-in-time copy of the state.

    The copy is a RocksDB checkpoint (hard links, next to the database) opened read-only,
    because rocksdict's ``Snapshot.iter`` does not pin its snapshot (0.3.29: iterators see
    later writes). It is removed when the stream is exhausted, on ``close()``, on leaving a
    ``with`` block, or when the object is collected. Chunks: a header (``H``, magic, format
    version, applied index), data chunks (``D`` then ``>II`` key and value lengths, key,
    value, repeated; at most ``chunk_bytes`` unless one pair alone is bigger), and an end
    marker (``E``, ``>Q`` pair count) that lets the importer detect a truncated stream.
    """

    def __init__(self, db: rocksdict.Rdict, chunk_bytes: int = SNAPSHOT_CHUNK_BYTES) -> None:
        database = Path(db.path())
        directory = tempfile.mkdtemp(prefix=f".{database.name}.export-", dir=database.parent)
        try:
            checkpoint = Path(directory) / "checkpoint"
            rocksdict.Checkpoint(db).create_checkpoint(str(checkpoint))
            view = rocksdict.Rdict(
                str(checkpoint),
                rocksdict.Options(raw_mode=True),
                access_type=rocksdict.AccessType.read_only(),
            )
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        self._finalizer = weakref.finalize(self, _remove_export, view, directory)
        value = view.get(APPLIED_KEY)
        self.applied_index: int = 0 if value is None else _U64.unpack(value)[0]
        self._chunks = _generate_chunks(view, self.applied_index, chunk_bytes)

    def __iter__(self) -> StateExport:
        return self

    def __next__(self) -> bytes:
        if not self._finalizer.alive:
            raise StopIteration
        try:
            return next(self._chunks)
        except StopIteration:
            self.close()
            raise

    def close(self) -> None:
        self._chunks.close()
        self._finalizer()

    def __enter__(self) -> StateExport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _generate_chunks(
    view: rocksdict.Rdict, applied: int, chunk_bytes: int
) -> Generator[bytes, None, None]:
    yield _CHUNK_HEADER + _HEADER.pack(_SNAPSHOT_MAGIC, _SNAPSHOT_VERSION, applied)
    chunk = bytearray(_CHUNK_DATA)
    pairs = 0
    pack = _PAIR.pack
    for prefix in _EXPORTED_PREFIXES:
        options = rocksdict.ReadOptions()
        options.set_iterate_upper_bound(_successor(prefix))
        iterator = view.iter(options)
        iterator.seek(prefix)
        while iterator.valid():
            key: bytes = iterator.key()
            value: bytes = iterator.value()
            pair_size = _PAIR.size + len(key) + len(value)
            if len(chunk) > 1 and len(chunk) + pair_size > chunk_bytes:
                yield bytes(chunk)
                chunk = bytearray(_CHUNK_DATA)
            chunk += pack(len(key), len(value))
            chunk += key
            chunk += value
            pairs += 1
            iterator.next()
    if len(chunk) > 1:
        yield bytes(chunk)
    yield _CHUNK_END + _U64.pack(pairs)
