"""Durable Raft storage in RocksDB (through rocksdict): the log, hard state and snapshots.

Owns: the ``m/`` (metadata) and ``l/`` (log) keys of the node's one RocksDB, the ``Storage``
protocol the Raft core reads (same semantics and named errors as ``MemoryStorage``), and the
write side used while handling a ``Ready``: every change of one ``Ready`` (hard state, entries
with their conflicting suffix removed, snapshot) goes into ONE RocksDB write batch, written
with ``sync=True`` (WAL fsync) when ``Ready.must_sync`` says so, before any vote or append
acknowledgement leaves the node. Must never: keep entries in Python memory (memory here does
not grow with the log; only a few positions and a bounded run-length cache of recent terms
live in Python), write keys outside its two prefixes on its own, or be used from two threads
at once (the node's loop serialises reads and writes; in-memory positions change only after
a write has returned).

The session state machine shares this database under its own prefixes: it reads through
``RocksStorage.db`` and adds its keys to the same atomic write with ``LogBatch.put`` /
``delete`` / ``delete_range`` (which refuse ``m/`` and ``l/`` keys).

Key layout and encodings: ``quorumlog.node.storage.raft_records``.

Absent metadata keys mean "nothing yet": empty hard state, empty snapshot, truncated at
(0, 0). The log keys are always exactly ``first_index() .. last_index()``, gapless; the open
checks both ends. A compaction removes a prefix with one range delete (RocksDB skips a range
tombstone as a whole, so finding the first entry stays cheap); a follower installing a
snapshot range-deletes the whole ``l/`` prefix.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import rocksdict

from quorumlog.node.storage.engine import StorageEngine
from quorumlog.node.storage.raft_records import (
    FORMAT_KEY,
    FORMAT_VERSION,
    HARD_STATE_KEY,
    INCARNATION_KEY,
    INDEX_TERM,
    LOG_END,
    LOG_PREFIX,
    OWNED_PREFIXES,
    SNAPSHOT_CRC_KEY,
    SNAPSHOT_DATA_KEY,
    SNAPSHOT_KEY,
    TRUNCATED_KEY,
    U64,
    StaleBatch,
    StorageCorrupted,
    StorageError,
    StorageNotEmpty,
    decode_entry,
    decode_hard_state,
    decode_snapshot_metadata,
    encode_entry,
    encode_hard_state,
    encode_snapshot_metadata,
    log_index,
    log_key,
    seal,
    snapshot_crc,
    unseal,
)
from quorumlog.node.storage.rocks_options import log_options, supports_direct_io
from quorumlog.raft.errors import Compacted, SnapshotTemporarilyUnavailable, Unavailable
from quorumlog.raft.rawnode import Ready
from quorumlog.raft.storage import bootstrap_snapshot
from quorumlog.raft.types import (
    EMPTY_HARD_STATE,
    ConfState,
    Entry,
    HardState,
    NodeId,
    Snapshot,
    SnapshotMetadata,
)

# The names other modules import from here (the records and options live in their own
# modules: ``raft_records``, ``rocks_options``).
__all__ = [
    "HARD_STATE_KEY", "LOG_PREFIX", "SNAPSHOT_CRC_KEY", "SNAPSHOT_DATA_KEY", "SNAPSHOT_KEY",
    "TERM_RUNS_KEPT", "TRUNCATED_KEY", "LogBatch", "RocksStorage", "StaleBatch",
    "StorageCorrupted", "StorageError", "StorageNotEmpty", "decode_entry",
    "decode_hard_state", "decode_snapshot_metadata", "encode_entry", "encode_hard_state",
    "encode_snapshot_metadata", "log_key", "log_options", "supports_direct_io",
]

# Recent term changes kept in memory: term(i) for the tail of the log (elections, AppendEntries
# consistency checks) answers without a read. Older indices are read from RocksDB.
TERM_RUNS_KEPT = 64

# Truncating a suffix at most this long uses point deletes; longer ones use a range delete.
_POINT_DELETE_LIMIT = 32


# -- positions -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class _LogState:
    """Everything about the log that lives in Python memory: O(1) in the log's length.

    ``term_runs`` is a run-length view of the tail's terms: ``(start, term)`` pairs sorted by
    ``start``, each meaning "entries from ``start`` up to the next run's start (or the last
    index) have ``term``". Indices before the first run are read from RocksDB.
    """

    hard_state: HardState
    snapshot_metadata: SnapshotMetadata
    truncated_index: int
    truncated_term: int
    last_index: int
    term_runs: tuple[tuple[int, int], ...]


def _cached_term(runs: Sequence[tuple[int, int]], index: int) -> int | None:
    if not runs or index < runs[0][0]:
        return None
    position = bisect.bisect_right(runs, index, key=_run_start) - 1
    return runs[position][1]


def _run_start(run: tuple[int, int]) -> int:
    return run[0]


# -- the write batch -------------------------------------------------------------------------------
class LogBatch:
    """One atomic write being built: log changes plus any other prefix's keys.

    Log operations validate against the state as it will be after the operations before
    them in this batch (so a snapshot then entries, as in one ``Ready``, works) and raise the
    same named errors as ``MemoryStorage``. Nothing is visible, on disk or in memory, until
    ``RocksStorage.write`` returns.
    """

    def __init__(
        self, storage: RocksStorage, raw: rocksdict.WriteBatch | None = None,
    ) -> None:
        self._storage = storage
        self._base = storage._state
        self._state = storage._state
        self._runs = list(storage._state.term_runs)
        self.raw = storage.new_batch() if raw is None else raw

    # -- log operations ----------------------------------------------------------------------
    def set_hard_state(self, hard_state: HardState) -> None:
        self.raw.put(HARD_STATE_KEY, encode_hard_state(hard_state))
        self._state = dataclasses.replace(self._state, hard_state=hard_state)

    def append(self, entries: Sequence[Entry]) -> None:
        """Append, replacing any conflicting suffix (keys beyond the new last are deleted)."""
        if not entries:
            return
        state = self._state
        first = state.truncated_index + 1
        if entries[-1].index < first:
            return
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        first_new = entries[0].index
        if first_new > state.last_index + 1:
            raise Unavailable(f"gap: appending {first_new} after {state.last_index}")
        for position, entry in enumerate(entries):
            if entry.index != first_new + position:
                raise ValueError(f"entries not contiguous at {entry.index}")
            self.raw.put(log_key(entry.index), encode_entry(entry))
        new_last = entries[-1].index
        if new_last < state.last_index:
            if state.last_index - new_last <= _POINT_DELETE_LIMIT:
                for index in range(new_last + 1, state.last_index + 1):
                    self.raw.delete(log_key(index))
            else:
                self.raw.delete_range(log_key(new_last + 1), log_key(state.last_index + 1))
        runs = self._runs
        del runs[bisect.bisect_left(runs, first_new, key=_run_start) :]
        for entry in entries:
            if not runs or runs[-1][1] != entry.term:
                runs.append((entry.index, entry.term))
        self._state = dataclasses.replace(state, last_index=new_last)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log with ``snapshot`` (a follower catching up)."""
        metadata = snapshot.metadata
        if metadata.index <= self._state.snapshot_metadata.index:
            raise SnapshotTemporarilyUnavailable("snapshot is out of date")
        self.raw.delete_range(LOG_PREFIX, LOG_END)
        self._put_snapshot(metadata, snapshot.data)
        self.raw.put(TRUNCATED_KEY, seal(INDEX_TERM.pack(metadata.index, metadata.term)))
        self._runs = []
        self._state = dataclasses.replace(
            self._state,
            snapshot_metadata=metadata,
            truncated_index=metadata.index,
            truncated_term=metadata.term,
            last_index=metadata.index,
        )

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record application state at applied ``index`` as the current snapshot."""
        state = self._state
        if index <= state.snapshot_metadata.index:
            raise SnapshotTemporarilyUnavailable(f"snapshot at {index} is out of date")
        if index > state.last_index:
            raise Unavailable(f"snapshot index {index} beyond last {state.last_index}")
        metadata = SnapshotMetadata(index, self.term(index), conf_state)
        self._put_snapshot(metadata, data)
        self._state = dataclasses.replace(state, snapshot_metadata=metadata)
        return Snapshot(metadata, data)

    def compact(self, compact_index: int) -> None:
        """Discard entries up to and including ``compact_index`` (one range delete)."""
        state = self._state
        if compact_index <= state.truncated_index:
            raise Compacted(f"already compacted to {state.truncated_index}")
        if compact_index > state.last_index:
            raise Unavailable(f"compact {compact_index} beyond last {state.last_index}")
        term = self.term(compact_index)
        self.raw.delete_range(log_key(state.truncated_index + 1), log_key(compact_index + 1))
        self.raw.put(TRUNCATED_KEY, seal(INDEX_TERM.pack(compact_index, term)))
        runs = self._runs
        keep_from = bisect.bisect_right(runs, compact_index + 1, key=_run_start) - 1
        if keep_from >= 0 and compact_index < state.last_index:
            # The run covering the new first entry now starts there.
            runs[: keep_from + 1] = [(compact_index + 1, runs[keep_from][1])]
        else:
            del runs[: max(keep_from + 1, 0)]
        self._state = dataclasses.replace(
            state, truncated_index=compact_index, truncated_term=term
        )

    def term(self, index: int) -> int:
        """Term at ``index`` as it will be once this batch is written."""
        return self._storage._term_in(self._state, self._runs, index)

    # -- other prefixes ----------------------------------------------------------------------
    def put(self, key: bytes, value: bytes) -> None:
        self.raw.put(_foreign(key), value)

    def delete(self, key: bytes) -> None:
        self.raw.delete(_foreign(key))

    def delete_range(self, begin: bytes, end: bytes) -> None:
        """Delete keys in ``[begin, end)``; the range must not touch ``m/`` or ``l/``."""
        if begin >= end:
            return
        for prefix in OWNED_PREFIXES:
            # [begin, end) overlaps [prefix, prefix_end) unless one lies entirely before the other.
            prefix_end = prefix[:-1] + bytes([prefix[-1] + 1])
            if begin < prefix_end and end > prefix:
                raise ValueError(f"range {begin!r}..{end!r} overlaps the storage's {prefix!r}")
        self.raw.delete_range(begin, end)

    def _put_snapshot(self, metadata: SnapshotMetadata, data: bytes) -> None:
        encoded = encode_snapshot_metadata(metadata)
        self.raw.put(SNAPSHOT_KEY, encoded)
        self.raw.put(SNAPSHOT_DATA_KEY, data)
        self.raw.put(SNAPSHOT_CRC_KEY, snapshot_crc(encoded, data))

    def _finish(self) -> _LogState:
        runs = self._runs[-TERM_RUNS_KEPT:]
        return dataclasses.replace(self._state, term_runs=tuple(runs))


def _foreign(key: bytes) -> bytes:
    if key.startswith(OWNED_PREFIXES):
        raise ValueError(f"key {key!r} belongs to the Raft storage (m/ and l/ are reserved)")
    return key


def _fill(batch: LogBatch, ready: Ready) -> LogBatch:
    """Step 1 of the ``Ready`` contract into ``batch``: snapshot, entries, hard state."""
    if ready.snapshot is not None:
        batch.apply_snapshot(ready.snapshot)
    if ready.entries:
        batch.append(ready.entries)
    if ready.hard_state is not None:
        batch.set_hard_state(ready.hard_state)
    return batch


# -- the storage ---------------------------------------------------------------------------------
class RocksStorage:
    """The ``Storage`` the core reads, backed by one RocksDB directory.

    Reads follow ``MemoryStorage`` exactly. Writes: build a ``LogBatch`` (``batch()``), or
    use ``write_ready`` for step 1 of the ``Ready`` contract, or the one-operation helpers
    named like ``MemoryStorage``'s (``set_hard_state``, ``append``, ``apply_snapshot``,
    ``create_snapshot``, ``compact``), each a single batch.
    """

    def __init__(
        self, path: str | Path, options: rocksdict.Options | None = None, *,
        unsafe_volatile: bool = False, engine: StorageEngine | None = None, group: int = 0,
    ) -> None:
        # UNSAFE, chaos canary only (``--unsafe-ack-before-fsync``): every write of this DB
        # (the state machine's too, via ``write_options``) skips the WAL, so it lives only in
        # the memtable and a kill -9 loses everything since the last memtable flush. A clean
        # close still flushes. It exists so the chaos harness can prove it detects loss.
        # With ``engine``, this is group ``group``'s storage inside the node's shared
        # database (``quorumlog.node.storage.engine``); ``path`` then only names it.
        self.path = Path(path)
        self._owns_engine = engine is None
        if engine is None:
            engine = StorageEngine(
                self.path, options or log_options(self.path), unsafe_volatile=unsafe_volatile
            )
        self.engine = engine
        self.group = group
        self.unsafe_volatile = engine.unsafe_volatile
        self._sync_write = engine.sync_write
        self._async_write = engine.async_write
        self._closed = False
        try:
            self._db = engine.family(group)
            self._state = self._recover()
        except BaseException:
            if self._owns_engine:
                engine.close()
            raise

    def new_batch(self) -> rocksdict.WriteBatch:
        """An empty raw write batch whose writes go to this group's keys."""
        return self.engine.new_batch(self.group)

    @property
    def db(self) -> rocksdict.Rdict:
        """The underlying database (raw bytes keys and values) for other prefixes' reads."""
        return self._db

    # -- read side (the Storage protocol) ------------------------------------------------
    def initial_state(self) -> tuple[HardState, ConfState]:
        state = self._state
        return state.hard_state, state.snapshot_metadata.conf_state

    def first_index(self) -> int:
        return self._state.truncated_index + 1

    def last_index(self) -> int:
        return self._state.last_index

    def term(self, index: int) -> int:
        state = self._state
        return self._term_in(state, state.term_runs, index)

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        state = self._state
        if lo <= state.truncated_index:
            raise Compacted(f"index {lo} compacted (first retained {state.truncated_index + 1})")
        if hi > state.last_index + 1:
            raise Unavailable(f"entries up to {hi - 1} requested, last is {state.last_index}")
        result: list[Entry] = []
        if lo >= hi:
            return result
        read_options = rocksdict.ReadOptions()
        read_options.set_iterate_upper_bound(log_key(hi))
        iterator = self._db.iter(read_options)
        iterator.seek(log_key(lo))
        expected = lo
        total = 0
        while iterator.valid():
            index = log_index(iterator.key())
            if index != expected:
                raise StorageCorrupted(f"log gap: found {index}, expected {expected}")
            entry = decode_entry(index, iterator.value())
            if max_bytes is not None:
                total += len(entry.data) + 16  # Entry.size(), as limit_size
                if total > max_bytes and result:
                    return result
            result.append(entry)
            expected += 1
            iterator.next()
        iterator.status()  # an iteration that stopped on damaged data raises here
        if expected != hi:
            raise StorageCorrupted(f"log ends at {expected - 1}, expected entries up to {hi - 1}")
        return result

    def snapshot_index(self) -> int:
        """The current snapshot's index, from memory (``snapshot()`` reads its data)."""
        return self._state.snapshot_metadata.index

    def snapshot(self) -> Snapshot:
        metadata = self._state.snapshot_metadata
        if metadata.index == 0:
            return Snapshot(metadata)
        data = self._db.get(SNAPSHOT_DATA_KEY)
        data = data if isinstance(data, bytes) else b""
        self._check_snapshot(encode_snapshot_metadata(metadata), data)
        return Snapshot(metadata, data)

    def _check_snapshot(self, encoded_metadata: bytes, data: bytes) -> None:
        stored = self._db.get(SNAPSHOT_CRC_KEY)
        if stored is None:
            return  # written before checksums
        if stored != snapshot_crc(encoded_metadata, data):
            raise StorageCorrupted(
                f"{self.path} group {self.group}: snapshot checksum mismatch (bit rot)")

    def incarnation(self) -> int:
        """This data directory's incarnation (see the key table): made with the database
        (or on the first open that finds none), never changed afterwards."""
        value = self._db.get(INCARNATION_KEY)
        if isinstance(value, bytes) and len(value) == 8:
            found: int = U64.unpack(value)[0]
            if found:
                return found
        made = int.from_bytes(os.urandom(8), "big") or 1
        self._db.put(INCARNATION_KEY, U64.pack(made), self._sync_write)
        return made

    # -- write side ----------------------------------------------------------------------
    def write_options(self, *, sync: bool) -> rocksdict.WriteOptions:
        """The write options for other prefixes' writes to this DB (same durability mode)."""
        return self._sync_write if sync else self._async_write

    def batch(self) -> LogBatch:
        return LogBatch(self)

    def write(self, batch: LogBatch, *, sync: bool) -> None:
        """Write ``batch`` atomically; with ``sync`` return only once it is fsynced."""
        if batch._storage is not self or batch._base is not self._state:
            raise StaleBatch("batch was built on an older state (or already written)")
        if batch.raw.is_empty():
            if sync:
                self.engine.sync()
        else:
            self._db.write(batch.raw, self._sync_write if sync else self._async_write)
        self._state = batch._finish()

    def write_ready(
        self, ready: Ready, batch: LogBatch | None = None, *, sync: bool | None = None
    ) -> None:
        """Step 1 of the ``Ready`` contract: snapshot, entries and hard state in one write,
        synced when ``ready.must_sync`` (``sync`` overrides that, for the chaos canary only).
        ``batch`` may already carry other prefixes' keys."""
        batch = _fill(self.batch() if batch is None else batch, ready)
        self.write(batch, sync=ready.must_sync if sync is None else sync)

    def stage_ready(self, ready: Ready, shared: rocksdict.WriteBatch) -> LogBatch:
        """``write_ready``'s changes added to ``shared``, a batch of the node's engine that
        several groups fill (``StorageEngine.shared_batch``). Nothing is visible until the
        engine wrote ``shared`` and :meth:`commit_staged` took the returned batch."""
        return _fill(LogBatch(self, self.engine.group_view(self.group, shared)), ready)

    def commit_staged(self, batch: LogBatch) -> None:
        """Publish a staged batch once its shared batch is written."""
        if batch._storage is not self or batch._base is not self._state:
            raise StaleBatch("batch was built on an older state (or already written)")
        self._state = batch._finish()

    def set_hard_state(self, hard_state: HardState, *, sync: bool = True) -> None:
        batch = self.batch()
        batch.set_hard_state(hard_state)
        self.write(batch, sync=sync)

    def append(self, entries: Sequence[Entry], *, sync: bool = True) -> None:
        batch = self.batch()
        batch.append(entries)
        self.write(batch, sync=sync)

    def apply_snapshot(self, snapshot: Snapshot, *, sync: bool = True) -> None:
        batch = self.batch()
        batch.apply_snapshot(snapshot)
        self.write(batch, sync=sync)

    def create_snapshot(
        self, index: int, conf_state: ConfState, data: bytes, *, sync: bool = True
    ) -> Snapshot:
        batch = self.batch()
        snapshot = batch.create_snapshot(index, conf_state, data)
        self.write(batch, sync=sync)
        return snapshot

    def compact(self, compact_index: int, *, sync: bool = False) -> None:
        """Compaction need not be synced: losing it in a crash only keeps more log."""
        batch = self.batch()
        batch.compact(compact_index)
        self.write(batch, sync=sync)

    def bootstrap(self, voters: tuple[NodeId, ...], learners: tuple[NodeId, ...] = ()) -> None:
        """Found a cluster: the same snapshot and hard state as ``bootstrap_memory_storage``."""
        if not self.is_empty():
            raise StorageNotEmpty(f"{self.path} already holds state; refusing to bootstrap")
        batch = self.batch()
        batch.apply_snapshot(bootstrap_snapshot(voters, learners))
        batch.set_hard_state(HardState(term=1, vote=0, commit=1))
        self.write(batch, sync=True)

    def is_empty(self) -> bool:
        """No key at all besides the format marker (not even another prefix's)."""
        iterator = self._db.iter()
        iterator.seek_to_first()
        while iterator.valid():
            if iterator.key() != FORMAT_KEY:
                return False
            iterator.next()
        iterator.status()  # damaged data is not "empty": it raises here
        return True

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._owns_engine:
                self.engine.close()

    def __enter__(self) -> RocksStorage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------
    def _term_in(self, state: _LogState, runs: Sequence[tuple[int, int]], index: int) -> int:
        if index < state.truncated_index:
            raise Compacted(
                f"index {index} compacted (first retained {state.truncated_index + 1})"
            )
        if index == state.truncated_index:
            return state.truncated_term
        if index > state.last_index:
            raise Unavailable(f"index {index} beyond last {state.last_index}")
        cached = _cached_term(runs, index)
        if cached is not None:
            return cached
        value = self._db.get(log_key(index))
        if not isinstance(value, bytes):
            raise StorageCorrupted(f"entry {index} missing inside the log")
        return decode_entry(index, value).term

    def _recover(self) -> _LogState:
        state = self._read_state()
        if state.hard_state.commit > state.last_index:
            # Entries the disk said were durable are gone (a disk that lied about fsync, or
            # lost a synced write): voting or leading from this log could lose commits.
            raise StorageCorrupted(
                f"{self.path} group {self.group}: the hard state commits "
                f"{state.hard_state.commit} but the log ends at {state.last_index}")
        return state

    def _read_state(self) -> _LogState:
        db = self._db
        version = db.get(FORMAT_KEY)
        if version is None:
            if not self.is_empty():
                raise StorageCorrupted(f"{self.path} holds keys but no {FORMAT_KEY!r}")
            db.put(FORMAT_KEY, bytes([FORMAT_VERSION]), self._sync_write)
        elif version != bytes([FORMAT_VERSION]):
            raise StorageCorrupted(f"unknown storage format {version!r} in {self.path}")
        hard_value = db.get(HARD_STATE_KEY)
        hard_state = decode_hard_state(hard_value) if hard_value else EMPTY_HARD_STATE
        snapshot_value = db.get(SNAPSHOT_KEY)
        metadata = SnapshotMetadata()
        if snapshot_value:
            data = db.get(SNAPSHOT_DATA_KEY)
            self._check_snapshot(snapshot_value, data if isinstance(data, bytes) else b"")
            metadata = decode_snapshot_metadata(snapshot_value)
        truncated_value = db.get(TRUNCATED_KEY)
        truncated_index, truncated_term = (
            INDEX_TERM.unpack(unseal("compaction point", truncated_value, INDEX_TERM.size))
            if truncated_value else (0, 0)
        )
        read_options = rocksdict.ReadOptions()
        read_options.set_iterate_lower_bound(LOG_PREFIX)
        read_options.set_iterate_upper_bound(LOG_END)
        iterator = db.iter(read_options)
        # rocksdict (0.3.29) ignores iterate_lower_bound, so seek_to_first() would land on
        # another prefix's keys sorting before ``l/`` (the state machine's ``S/``, ``a/``).
        iterator.seek(LOG_PREFIX)
        if not iterator.valid():
            iterator.status()  # damaged data is not "no log": it raises here
            return _LogState(
                hard_state, metadata, truncated_index, truncated_term, truncated_index, ()
            )
        first = log_index(iterator.key())
        if first != truncated_index + 1:
            raise StorageCorrupted(f"log starts at {first}, compaction point is {truncated_index}")
        # Every retained entry is read once and its checksum checked: bit rot in the log is
        # found here, at open, before the node votes or serves from it. The log is bounded
        # by the snapshot policy (``--snapshot-bytes``), so this stays short.
        last, last_term = first - 1, 0
        while iterator.valid():
            index = log_index(iterator.key())
            if index != last + 1:
                raise StorageCorrupted(f"log gap: found {index}, expected {last + 1}")
            last, last_term = index, decode_entry(index, iterator.value()).term
            iterator.next()
        iterator.status()  # an iteration that stopped on damaged data raises here
        return _LogState(
            hard_state, metadata, truncated_index, truncated_term, last, ((last, last_term),)
        )
