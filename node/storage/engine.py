"""One RocksDB per node, shared by every Raft group the node hosts.

Owns: opening the node's database with every column family it has, one column family per
Raft group — group 0 (the meta group, which also carries the data when the cluster has one
shard) in RocksDB's ``default`` family, so a data directory from before sharding opens as
that group unchanged; group ``g`` > 0 in the family ``g<g>`` — creating a group's family,
the write options every group shares (one write-ahead log: a write to any group and one
fsync make all groups' earlier writes durable), and the group commit across groups
(:class:`SyncBarrier`: groups whose Ready loops need an fsync at about the same time share
one). Must never: interpret keys (each group's ``RocksStorage`` and state machine own their
family's keys), or hand one group's family to another.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from pathlib import Path
from typing import Any, cast

import rocksdict

DEFAULT_FAMILY = "default"


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


class StorageEngine:
    """The node's database: the default family (group 0) and one family per other group."""

    def __init__(
        self, path: str | Path, options: rocksdict.Options, *, unsafe_volatile: bool = False,
    ) -> None:
        self.path = Path(path)
        self.options = options
        self.unsafe_volatile = unsafe_volatile
        self.sync_write = rocksdict.WriteOptions()
        self.sync_write.sync = not unsafe_volatile
        self.async_write = rocksdict.WriteOptions()
        self.async_write.sync = False
        if unsafe_volatile:
            # UNSAFE, chaos canary only: see RocksStorage. rocksdict's stub declares a
            # method; at run time disable_wal is a property.
            self.sync_write.disable_wal = True  # type: ignore[method-assign,assignment]
            self.async_write.disable_wal = True  # type: ignore[method-assign,assignment]
        self.db = rocksdict.Rdict(str(self.path), options)
        self._families: dict[int, rocksdict.Rdict] = {0: self.db}
        self._opened: dict[int, rocksdict.Rdict] = {}  # the real family objects, to close
        self._handles: dict[int, rocksdict.ColumnFamily] = {}
        self._closed = False
        self.barrier = SyncBarrier(self)

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
        handle = self._handles.get(group)
        if handle is None:
            self.family(group)
            handle = self.db.get_column_family_handle(family_name(group))
            self._handles[group] = handle
        return cast(rocksdict.WriteBatch, _FamilyBatch(handle))

    def sync(self) -> None:
        """Make every write so far durable (one fsync of the shared WAL)."""
        if not self.unsafe_volatile:
            self.db.flush_wal(True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.barrier.close()
        self._handles.clear()
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

    def __init__(self, handle: rocksdict.ColumnFamily) -> None:
        self._handle = handle
        self.inner = rocksdict.WriteBatch(raw_mode=True)
        self.inner.set_default_column_family(handle)

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


class SyncBarrier:
    """Group commit across Raft groups: a group that wrote without syncing awaits
    :meth:`sync`; everyone who asks before an fsync starts shares it.

    The fsync (``flush_wal(sync=True)``, which releases the GIL, unlike a synced write) runs
    on one worker thread, so the event loop keeps serving the other groups meanwhile and
    whoever asks during an fsync shares the next one (pipelined group commit: measured with
    6 groups per node, a fsync on the loop thread blocked it ~30% of the time at 2 groups per
    fsync). The first fsync of a burst starts once no group that announced a write
    (:meth:`expect`) is still on its way to it and no group asked for ``QUIET_HOPS`` loop
    iterations, at most ``MAX_HOPS`` after the first asked. A node with one group does not
    use this (its synced write stays on the loop thread: docs/architecture.md)."""

    QUIET_HOPS = 1
    MAX_HOPS = 8

    def __init__(self, engine: StorageEngine) -> None:
        self._engine = engine
        self._waiters: list[asyncio.Future[None]] = []
        self._expected = 0  # groups between expect() and sync()
        self._hops = 0  # loop iterations since the first waiter of a burst
        self._quiet = 0  # loop iterations since the last waiter
        self._running = False  # a burst is being flushed (the flusher task runs)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._failure: BaseException | None = None
        self.fsyncs = 0
        self.fsync_waiters = 0
        self.fsync_seconds = 0.0

    def expect(self) -> None:
        """A group will write and ask for a sync soon (it is letting its sends go first)."""
        self._expected += 1

    async def sync(self, *, expected: bool = False) -> None:
        """Return once every write made so far is durable; ``expected``: this group
        announced itself with :meth:`expect`. A failed fsync fails every waiter, now and
        later (never retried: docs/architecture.md, Durability)."""
        if expected:
            self._expected -= 1
        if self._failure is not None:
            raise self._failure
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append(future)
        self._quiet = 0
        if not self._running:
            self._running = True
            self._hops = 0
            loop.call_soon(self._hop)
        await future

    def _hop(self) -> None:
        self._hops += 1
        self._quiet += 1
        settled = self._expected <= 0 and self._quiet >= self.QUIET_HOPS
        if not settled and self._hops < self.MAX_HOPS:
            asyncio.get_running_loop().call_soon(self._hop)
            return
        asyncio.get_running_loop().create_task(self._flush_all(), name="group-fsync")

    async def _flush_all(self) -> None:
        """fsync on the worker thread until nobody waits (each round takes every waiter
        that asked before it started)."""
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="fsync"
            )
        try:
            while self._waiters:
                waiters, self._waiters = self._waiters, []
                started = time.perf_counter()
                try:
                    await loop.run_in_executor(self._executor, self._engine.sync)
                except BaseException as error:  # fatal for every waiting group
                    self._failure = error
                    for future in [*waiters, *self._waiters]:
                        if not future.done():
                            future.set_exception(error)
                    self._waiters.clear()
                    return
                self.fsyncs += 1
                self.fsync_waiters += len(waiters)
                self.fsync_seconds += time.perf_counter() - started
                for future in waiters:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._running = False

    def close(self) -> None:
        """Wait for an fsync in progress (before the database closes)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
