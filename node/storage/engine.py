"""One RocksDB per node, shared by every Raft group the node hosts.

Owns: opening the node's database with every column family it has, one column family per
Raft group — group 0 (the meta group, which also carries the data when the cluster has one
shard) in RocksDB's ``default`` family, so a data directory from before sharding opens as
that group unchanged; group ``g`` > 0 in the family ``g<g>`` — creating a group's family,
the write options every group shares (one write-ahead log: a write to any group and one
fsync make all groups' earlier writes durable), and batches shared by several groups (the
group commit across groups: every group ready together writes into one batch, written and
fsynced once; ``write_readies`` in ``log_store``). Must never: interpret keys (each
group's ``RocksStorage`` and state machine own their family's keys), or hand one group's
family to another.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, cast

import rocksdict

DEFAULT_FAMILY = "default"
DB_DIR = "db"  # a node keeps its RocksDB in <data dir>/db


def family_name(group: int) -> str:
    """The column family that holds ``group``'s keys."""
    return DEFAULT_FAMILY if group == 0 else f"g{group}"


def group_of_family(name: str) -> int | None:
    """The group a column family holds (None: not a group's family)."""
    if name == DEFAULT_FAMILY:
        return 0
    if name.startswith("g") and name[1:].isdigit():
        return int(name[1:])
    return None


def family_options(base: rocksdict.Options | None = None) -> rocksdict.Options:
    """A group's column family: small memtables (a node hosts many groups; the shared WAL is
    bounded by ``max_total_wal_size``, which flushes the oldest families first)."""
    options = base if base is not None else rocksdict.Options(raw_mode=True)
    options.set_write_buffer_size(4 << 20)
    options.set_max_write_buffer_number(3)
    return options


def is_rocksdb_error(error: BaseException, *statuses: str) -> bool:
    """Whether ``error`` is RocksDB refusing an operation of ours (rocksdict raises a plain
    ``Exception`` whose text starts with RocksDB's status, e.g. "IO error", "Corruption"),
    with one of ``statuses`` when given; not a peer's or the network's failure."""
    if type(error) is not Exception:
        return False
    text = str(error)
    return any(text.startswith(status) for status in statuses or ("IO error", "Corruption"))


def fsync_directory(path: Path) -> None:
    """Make ``path``'s entries (a file or directory created, renamed or removed in it)
    durable: fsync the directory itself."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class StorageEngine:
    """The node's database: the default family (group 0) and one family per other group."""

    def __init__(
        self, path: str | Path, options: rocksdict.Options, *, unsafe_volatile: bool = False,
        unsafe_no_fsync: bool = False,
    ) -> None:
        self.path = Path(path)
        self.options = options
        self.unsafe_volatile = unsafe_volatile
        # UNSAFE, power-loss canary only (``--unsafe-no-fsync``): the write-ahead log is
        # written but never fsynced, so a kill -9 loses nothing and a power cut does.
        self.unsafe_no_fsync = unsafe_no_fsync
        self.sync_write = rocksdict.WriteOptions()
        self.sync_write.sync = not (unsafe_volatile or unsafe_no_fsync)
        self.async_write = rocksdict.WriteOptions()
        self.async_write.sync = False
        if unsafe_volatile:
            # UNSAFE, chaos canary only: see RocksStorage. rocksdict's stub declares a
            # method; at run time disable_wal is a property.
            self.sync_write.disable_wal = True  # type: ignore[method-assign,assignment]
            self.async_write.disable_wal = True  # type: ignore[method-assign,assignment]
        self.db = rocksdict.Rdict(str(self.path), options)
        # RocksDB fsyncs what it writes inside the database directory, not the directory
        # entry that names it: without this, a power cut right after founding can lose the
        # whole database (tests/test_power_loss.py found it). Once per open: cheap.
        fsync_directory(self.path.parent)
        self._families: dict[int, rocksdict.Rdict] = {0: self.db}
        self._opened: dict[int, rocksdict.Rdict] = {}  # the real family objects, to close
        self._handles: dict[int, rocksdict.ColumnFamily] = {}
        self._closed = False

    def groups(self) -> list[int]:
        """Every group that has a column family here (0 always)."""
        names = rocksdict.Rdict.list_cf(str(self.path))
        found = {group for name in names if (group := group_of_family(name)) is not None}
        return sorted(found | {0})

    def family(self, group: int) -> rocksdict.Rdict:
        """``group``'s keys, created empty if the group has none yet."""
        family = self._families.get(group)
        if family is None:
            name = family_name(group)
            if name in rocksdict.Rdict.list_cf(str(self.path)):
                opened = self.db.get_column_family(name)
            else:
                opened = self.db.create_column_family(name, family_options())
            self._opened[group] = opened
            family = cast(rocksdict.Rdict, _Family(opened))
            self._families[group] = family
        return family

    def new_batch(self, group: int) -> rocksdict.WriteBatch:
        """An empty write batch whose writes go to ``group``'s family."""
        if group == 0:
            return rocksdict.WriteBatch(raw_mode=True)
        return cast(rocksdict.WriteBatch, _FamilyBatch(self.handle(group)))

    def handle(self, group: int) -> rocksdict.ColumnFamily:
        """The column family handle of ``group`` (the ``default`` family for group 0)."""
        handle = self._handles.get(group)
        if handle is None:
            self.family(group)
            handle = self.db.get_column_family_handle(family_name(group))
            self._handles[group] = handle
        return handle

    def shared_batch(self) -> rocksdict.WriteBatch:
        """An empty write batch for several groups' writes (see :meth:`group_view`)."""
        return rocksdict.WriteBatch(raw_mode=True)

    def group_view(self, group: int, shared: rocksdict.WriteBatch) -> rocksdict.WriteBatch:
        """``shared`` as seen by ``group``: every write through it names ``group``'s family."""
        return cast(rocksdict.WriteBatch, _FamilyBatch(self.handle(group), shared))

    def write_shared(self, shared: rocksdict.WriteBatch, *, sync: bool) -> None:
        """Write a batch built by several groups atomically; with ``sync`` it (and every
        earlier write of every group) is durable on return: one fsync for all of them."""
        self.db.write(shared, self.sync_write if sync else self.async_write)

    def sync(self) -> None:
        """Make every write so far durable (one fsync of the shared WAL)."""
        if not self.unsafe_volatile:
            self.db.flush_wal(not self.unsafe_no_fsync)

    def close(self) -> None:
        """Flush every family's memtable to table files (a restart then replays no WAL, and
        what a clean stop leaves is in checksummed tables the scrub reads), then close.
        A flush that fails (a full disk) leaves the data in the WAL: nothing is lost."""
        if self._closed:
            return
        self._closed = True
        self._handles.clear()
        for family in (self.db, *self._opened.values()):
            with contextlib.suppress(Exception):  # the WAL still holds it
                family.flush()
        for family in self._opened.values():
            family.close()
        self._opened.clear()
        self._families.clear()
        self.db.close()


class _FamilyBatch:
    """A write batch of one column family. rocksdict (0.3.29) applies ``delete_range`` of a
    batch to the ``default`` family whatever ``set_default_column_family`` says (put and
    delete follow it), which deleted group 0's log when a data group was founded: every
    operation here names the family. Duck-types ``rocksdict.WriteBatch`` for its users."""

    __slots__ = ("_handle", "inner")

    def __init__(
        self, handle: rocksdict.ColumnFamily, inner: rocksdict.WriteBatch | None = None,
    ) -> None:
        self._handle = handle
        if inner is None:  # a batch of its own (else a view of a batch shared by groups)
            inner = rocksdict.WriteBatch(raw_mode=True)
            inner.set_default_column_family(handle)
        self.inner = inner

    def put(self, key: bytes, value: bytes) -> None:
        self.inner.put(key, value, self._handle)

    def delete(self, key: bytes) -> None:
        self.inner.delete(key, self._handle)

    def delete_range(self, begin: bytes, end: bytes) -> None:
        self.inner.delete_range(begin, end, self._handle)

    def is_empty(self) -> bool:
        return self.inner.is_empty()

    def size_in_bytes(self) -> int:
        return self.inner.size_in_bytes()

    def __len__(self) -> int:
        return len(self.inner)


class _Family:
    """One column family's ``Rdict`` whose ``write`` takes a :class:`_FamilyBatch`."""

    __slots__ = ("rdict",)

    def __init__(self, rdict: rocksdict.Rdict) -> None:
        self.rdict = rdict  # the family itself (a checkpoint needs the real object)

    def write(self, batch: Any, write_opt: rocksdict.WriteOptions | None = None) -> None:
        inner = batch.inner if isinstance(batch, _FamilyBatch) else batch
        if write_opt is None:
            self.rdict.write(inner)
        else:
            self.rdict.write(inner, write_opt)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rdict, name)


def real_rdict(db: rocksdict.Rdict) -> rocksdict.Rdict:
    """The rocksdict object behind a group's family (for ``rocksdict.Checkpoint``)."""
    return cast(rocksdict.Rdict, getattr(db, "rdict", db))
