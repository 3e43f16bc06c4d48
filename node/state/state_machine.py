"""The session state machine: committed Raft entries in, sessions of ordered messages out.

Owns: the apply loop (decode each committed entry, dispatch each command by kind to the
module of its concern, all of one ``apply`` call into ONE write batch), the applied index and
the import-in-progress marker (``a/applied``: ``>Q`` index of the last applied Raft entry,
absent: 0; ``a/importing``: empty, present only while ``import_state`` is replacing the state,
so a crash in the middle leaves it and the state is known partial), replacing the whole state
from a snapshot stream, and the public face other layers use. Must never: read a clock, draw
randomness or consult anything node-local while applying (the same committed entries give the
same bytes on every replica; time comes from ``CommandBatch.leader_time_ms``), keep
per-session or per-message data in Python memory beyond one ``apply`` call except the bounded
caches of ``apply_batch`` (memory does not grow with what is stored), or write keys outside
``keys.STATE_PREFIXES``. ``apply`` and ``import_state`` must not run concurrently with each
other; reads may run beside ``apply`` (a read that races a trim or delete answers
``OUT_OF_RANGE`` / ``NOT_FOUND``, never a gap).

The concerns, each its own module of ``quorumlog.node.state`` (``keys`` maps every prefix to
its owner): ``sessions`` (append, trim, delete, reads; records in ``session_records``),
``dedup`` (idempotent producers), ``members`` (member records, from membership change
entries), ``acl`` (access rules, producer owners), ``consumer_state`` (consumer groups,
leases, session state, dead letters, session policies: everything under ``C/``),
``snapshot_codec`` (the snapshot stream), ``apply_batch`` (one call's write batch and caches).

The write batch is not fsynced: the Raft log is the durable source, and because the applied
index travels with the state, a crash leaves the state of some applied prefix, and the
missing suffix is re-applied.
"""

from __future__ import annotations

from collections.abc import Iterable

import rocksdict

from quorumlog.node.common.limits import (
    DEFAULT_LIMITS,
    ErrorCode,
    InvalidInput,
    Limits,
    read_bounds,
)
from quorumlog.node.replication.applier import CommandError, EntryResult
from quorumlog.node.state import incarnations as incarnation_records
from quorumlog.node.state import members as member_records
from quorumlog.node.state import placement as shard_placement
from quorumlog.node.state.acl import AclResult, AclStore
from quorumlog.node.state.apply_batch import META_CACHE_SIZE, RING_CACHE_SIZE, ApplyBatch
from quorumlog.node.state.consumer_state import ConsumerResult, ConsumerState
from quorumlog.node.state.dedup import PRODUCER_BATCHES_KEPT, producer_key
from quorumlog.node.state.errors import (
    IncompleteImport,
    OffsetTrimmed,
    SessionNotFound,
    SnapshotFormatError,
    StateCorrupted,
    StateMachineError,
)
from quorumlog.node.state.keys import (
    APPLIED_KEY,
    APPLIED_PREFIX,
    IMPORTING_KEY,
    INCARNATION_PREFIX,
    MEMBER_PREFIX,
    MESSAGE_PREFIX,
    PRODUCER_PREFIX,
    SESSION_PREFIX,
    STATE_PREFIXES,
    U64,
    successor,
)
from quorumlog.node.state.members import member_key
from quorumlog.node.state.placement import Placed, Shard
from quorumlog.node.state.session_records import (
    AppendResult,
    DeleteResult,
    ReadResult,
    Record,
    SessionInfo,
    SessionMeta,
    SessionPage,
    TrimResult,
    message_key,
    message_prefix,
    session_key,
)
from quorumlog.node.state.sessions import SessionLog
from quorumlog.node.state.snapshot_codec import (
    SNAPSHOT_CHUNK_BYTES,
    StateExport,
    import_pairs,
    parse_header,
)
from quorumlog.node.storage.engine import family_name
from quorumlog.node.storage.raft_store import RocksStorage
from quorumlog.proto import commands_pb2
from quorumlog.raft.types import Entry, EntryType, NodeId

CommandResult = (
    AppendResult | TrimResult | DeleteResult | AclResult | ConsumerResult | Placed
    | tuple[NodeId, int] | CommandError
)

_NORMAL = EntryType.NORMAL
_CONF_CHANGE = EntryType.CONF_CHANGE


class SessionStateMachine:
    """Sessions over the node's RocksDB (shared with ``RocksStorage``)."""

    def __init__(self, storage: RocksStorage, limits: Limits = DEFAULT_LIMITS) -> None:
        if limits.max_session_id_bytes > 0xFFFF:
            raise ValueError("session ids longer than 65535 bytes do not fit the key layout")
        self._db = storage.db
        self._new_batch = storage.new_batch  # batches of this group's keys
        self._family = family_name(storage.group)
        self.limits = limits
        # The storage's options: the same durability mode (WAL) for the whole DB.
        self._write_options = storage.write_options(sync=False)
        self._sync_write_options = storage.write_options(sync=True)
        self._meta_cache: dict[bytes, SessionMeta | None] = {}
        self._ring_cache: dict[tuple[bytes, bytes], bytes | None] = {}
        self.acl = AclStore(self._db)
        self.consumers = ConsumerState(self._db, limits)
        self._sessions = SessionLog(self._db, limits, self.acl, self.consumers)
        self._applied = self._load_applied()
        self._import_incomplete = self._db.get(IMPORTING_KEY) is not None
        self._placement: list[Shard] | None = None  # cache of the P/ records
        self._shard_count: int | None = None  # cache of P/count
        self._incarnations: dict[NodeId, int] | None = None  # cache of the I/ records

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
        batch = ApplyBatch(
            self._db, self._meta_cache, self._ring_cache, self.consumers, self._new_batch()
        )
        results: list[EntryResult] = []
        for entry in entries:
            index = entry.index
            if index <= applied:
                results.append(EntryResult(index, entry.term, (), skipped=True))
                continue
            applied = index
            data = entry.data
            if entry.type is _CONF_CHANGE:
                member_records.apply_conf_change(self._db, batch.raw, data)
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

    def _apply_command(
        self, batch: ApplyBatch, command: commands_pb2.Command, now: int
    ) -> CommandResult:
        kind = command.WhichOneof("kind")
        if kind == "append":
            return self._sessions.append(batch, command.append, now)
        if kind == "trim":
            return self._sessions.trim(batch, command.trim)
        if kind == "delete_session":
            return self._sessions.delete_session(batch, command.delete_session)
        if kind == "consumer":
            try:
                return self.consumers.apply(batch, self._sessions, command.consumer, now)
            except InvalidInput as refused:  # refused before changing anything
                return CommandError(refused.code, refused.message)
        if kind == "acl":
            try:
                return self.acl.apply(batch.raw, command.acl)
            except InvalidInput as invalid:
                return CommandError(invalid.code, invalid.message)
        if kind == "admit_incarnation":
            admitted = incarnation_records.apply(batch.raw, command.admit_incarnation)
            self._incarnations = None  # read again on next use (after this batch's write)
            return admitted
        if kind in ("placement", "shard_replicas"):
            if kind == "placement":
                placed = shard_placement.apply(self._db, batch.raw, command.placement)
            else:
                placed = shard_placement.apply_replicas(
                    self._db, batch.raw, command.shard_replicas)
            if not isinstance(placed, CommandError):
                self._placement = None  # read again on next use (after this batch's write)
            return placed
        return CommandError(ErrorCode.INVALID_ARGUMENT, "unknown or empty command")

    # -- incarnations ------------------------------------------------------------------------
    def forget_incarnations(self) -> None:
        """Drop every admitted incarnation (a restored backup: the new cluster's disks are
        all new; its leaders admit them on first sight). Like ``seed_members``: only for a
        state every member derives the same way, never while applying."""
        raw = self._new_batch()
        raw.delete_range(INCARNATION_PREFIX, successor(INCARNATION_PREFIX))
        self._db.write(raw, self._sync_write_options)
        self._incarnations = None

    def incarnations(self) -> dict[NodeId, int]:
        """Each replica's admitted incarnation, as of the applied index (``incarnations``)."""
        if self._incarnations is None:
            self._incarnations = incarnation_records.stored(self._db)
        return self._incarnations

    # -- members ---------------------------------------------------------------------------
    def members(self) -> dict[NodeId, commands_pb2.MemberAddress]:
        """Every member's record, as of the applied index (a handful of keys)."""
        return member_records.stored_members(self._db)

    def seed_members(self, records: dict[NodeId, commands_pb2.MemberAddress]) -> None:
        """Replace every member record (founding members from ``--peers``; a restore).

        Only for a state every replica derives the same way from the same flags: a founded
        cluster before its first entry, or a restored backup; never while applying."""
        member_records.seed(
            self._db, records, self._sync_write_options, self._new_batch()
        )

    def session_count(self, limit: int = 100_000) -> int:
        """Sessions stored here, counted up to ``limit`` (a status figure, not a scan of
        millions)."""
        options = rocksdict.ReadOptions()
        options.set_iterate_upper_bound(successor(SESSION_PREFIX))
        iterator = self._db.iter(options)
        iterator.seek(SESSION_PREFIX)
        count = 0
        while iterator.valid() and count < limit:
            count += 1
            iterator.next()
        iterator.status()  # an iteration that stopped on damaged data raises here
        return count

    def shard_count(self) -> int:
        """The cluster's data shard count (1: the meta group carries the only shard).
        Cached: every append asks (it is fixed at founding; a state import or the
        founding seed reads it again)."""
        if self._shard_count is None:
            self._shard_count = shard_placement.shard_count(self._db)
        return self._shard_count

    def seed_shard_count(self, count: int) -> None:
        """Founding a cluster of ``count`` shards (like ``seed_members``: every founding
        member derives it from the same flags, before the first entry)."""
        shard_placement.seed_count(self._db, self._new_batch(), count, self._sync_write_options)
        self._shard_count = None

    def seed_placement(self, count: int, shards: list[Shard]) -> None:
        """Replace the shard count and placement (a restored backup; like
        ``seed_members``, every member derives the same from the same file and flags)."""
        shard_placement.seed(self._db, self._new_batch(), count, shards,
                             self._sync_write_options)
        self._placement = None
        self._incarnations = None
        self._shard_count = None

    def placement(self) -> list[Shard]:
        """The data shards' placement in this (meta group's) state; [] while not placed."""
        if self._placement is None:
            self._placement = shard_placement.stored(self._db)
        return self._placement

    # -- reads (local applied state) -----------------------------------------------------
    def describe(self, session: str) -> SessionInfo:
        return self._sessions.describe(session)

    def read(
        self, session: str, from_offset: int, max_count: int = 0, max_bytes: int = 0
    ) -> ReadResult:
        """Records from ``from_offset``: at most ``max_count`` and about ``max_bytes`` of
        payload, but at least one when any is available (0 means the limits' default)."""
        return self._sessions.read(session, from_offset, max_count, max_bytes)

    def list_sessions(self, prefix: str = "", limit: int = 0, start_after: str = "") -> SessionPage:
        """Sessions whose name starts with ``prefix``, sorted by name (UTF-8 byte order),
        after ``start_after``; at most ``limit`` (0: the default)."""
        return self._sessions.list_sessions(prefix, limit, start_after)

    # -- snapshots -----------------------------------------------------------------------
    def export_state(self, chunk_bytes: int = SNAPSHOT_CHUNK_BYTES) -> StateExport:
        """A point-in-time copy of the whole state, as of this call, streamed as chunks."""
        return StateExport(self._db, chunk_bytes, self._family)

    def import_state(self, chunks: Iterable[bytes]) -> None:
        """Replace the whole state with a snapshot stream (``applied_index()`` is then its).

        Writes go in bounded batches; until the last one, ``a/importing`` marks the state
        partial (``apply`` refuses it, ``import_incomplete`` says so)."""
        stream = iter(chunks)
        header = next(stream, None)
        if header is None:
            raise SnapshotFormatError("empty snapshot stream")
        applied = parse_header(header)
        raw = self._new_batch()
        for prefix in STATE_PREFIXES:
            raw.delete_range(prefix, successor(prefix))
        raw.put(IMPORTING_KEY, b"")
        self._meta_cache.clear()
        self._ring_cache.clear()
        self._db.write(raw, self._write_options)
        self.acl.invalidate()
        self._import_incomplete = True
        self._applied = 0
        raw = import_pairs(self._db, stream, self._write_options, self._new_batch)
        raw.put(APPLIED_KEY, U64.pack(applied))
        raw.delete(IMPORTING_KEY)
        self._db.write(raw, self._sync_write_options)
        self._applied = applied
        self._import_incomplete = False
        self._placement = None
        self._incarnations = None
        self._shard_count = None
        self.acl.invalidate()
        self.consumers.invalidate()

    # -- internals -----------------------------------------------------------------------
    def _load_applied(self) -> int:
        value = self._db.get(APPLIED_KEY)
        if value is None:
            return 0
        if len(value) != 8:
            raise StateCorrupted(f"applied index of {len(value)} bytes")
        applied: int = U64.unpack(value)[0]
        return applied


# Names other layers and tests import from here (they moved to the modules of their concern).
__all__ = [
    "APPLIED_KEY",
    "APPLIED_PREFIX",
    "IMPORTING_KEY",
    "MEMBER_PREFIX",
    "MESSAGE_PREFIX",
    "META_CACHE_SIZE",
    "PRODUCER_BATCHES_KEPT",
    "PRODUCER_PREFIX",
    "RING_CACHE_SIZE",
    "SESSION_PREFIX",
    "SNAPSHOT_CHUNK_BYTES",
    "STATE_PREFIXES",
    "AppendResult",
    "CommandError",
    "CommandResult",
    "DeleteResult",
    "EntryResult",
    "IncompleteImport",
    "OffsetTrimmed",
    "ReadResult",
    "Record",
    "SessionInfo",
    "SessionNotFound",
    "SessionPage",
    "SessionStateMachine",
    "SnapshotFormatError",
    "StateCorrupted",
    "StateExport",
    "StateMachineError",
    "TrimResult",
    "member_key",
    "message_key",
    "message_prefix",
    "producer_key",
    "read_bounds",
    "session_key",
]
