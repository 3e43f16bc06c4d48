"""The state snapshot stream: exporting the whole state as chunks, and reading them back.

Owns: the stream format (a header ``H`` + ``>4sBQ`` magic ``QLSM``, format version 1, applied
index; data chunks ``D`` + repeated ``>II`` key and value lengths, key, value, at most
``chunk_bytes`` unless one pair alone is bigger; an end marker ``E`` + ``>Q`` pair count that
lets the importer detect a truncated stream), the point-in-time copy an export streams from,
and the validation of an imported stream. Must never: give two different streams for the
same state (pairs go prefix by prefix in ``keys.EXPORTED_PREFIXES`` order, keys in order
within each), export from a view that later writes can reach, or import a key outside
``EXPORTED_PREFIXES``. The coordinator (``quorumlog.node.state.state_machine``) clears the
state, marks it partial and sets the applied index around ``import_pairs``.
"""

from __future__ import annotations

import contextlib
import shutil
import struct
import tempfile
import weakref
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import TracebackType

import rocksdict

from quorumlog.node.state.errors import SnapshotFormatError
from quorumlog.node.state.keys import APPLIED_KEY, EXPORTED_PREFIXES, U64, successor
from quorumlog.node.storage.engine import real_rdict

SNAPSHOT_CHUNK_BYTES = 1 << 20
_IMPORT_BATCH_BYTES = 4 << 20
_SNAPSHOT_MAGIC = b"QLSM"
_SNAPSHOT_VERSION = 1
_CHUNK_HEADER = b"H"
_CHUNK_DATA = b"D"
_CHUNK_END = b"E"

_HEADER = struct.Struct(">4sBQ")
_PAIR = struct.Struct(">II")


# -- import --------------------------------------------------------------------------------------
def parse_header(chunk: bytes) -> int:
    """The applied index of a stream's first chunk (``SnapshotFormatError`` if it is not a
    header of this format)."""
    if chunk[:1] != _CHUNK_HEADER or len(chunk) != 1 + _HEADER.size:
        raise SnapshotFormatError("the first chunk is not a snapshot header")
    magic, version, applied = _HEADER.unpack_from(chunk, 1)
    if magic != _SNAPSHOT_MAGIC:
        raise SnapshotFormatError(f"not a quorumlog state snapshot (magic {magic!r})")
    if version != _SNAPSHOT_VERSION:
        raise SnapshotFormatError(f"snapshot format {version} is not supported")
    applied_index: int = applied
    return applied_index


def import_pairs(
    db: rocksdict.Rdict,
    stream: Iterator[bytes],
    write_options: rocksdict.WriteOptions,
    new_batch: Callable[[], rocksdict.WriteBatch],
) -> rocksdict.WriteBatch:
    """Write the pairs of the chunks after the header in bounded batches; the last batch is
    returned unwritten (the caller finishes it: applied index, end of the partial mark)."""
    raw = new_batch()
    pairs = 0
    ended = False
    for chunk in stream:
        kind = chunk[:1]
        if ended:
            raise SnapshotFormatError("data after the snapshot's end marker")
        if kind == _CHUNK_DATA:
            pairs += _put_pairs(raw, chunk)
            if raw.size_in_bytes() >= _IMPORT_BATCH_BYTES:
                db.write(raw, write_options)
                raw = new_batch()
        elif kind == _CHUNK_END:
            if len(chunk) != 9 or U64.unpack_from(chunk, 1)[0] != pairs:
                raise SnapshotFormatError(f"end marker does not match {pairs} pairs read")
            ended = True
        else:
            raise SnapshotFormatError(f"unknown chunk kind {kind!r}")
    if not ended:
        raise SnapshotFormatError("snapshot stream ended before its end marker")
    return raw


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
        if not key.startswith(EXPORTED_PREFIXES):
            raise SnapshotFormatError(f"key {key[:32]!r} is not a state machine key")
        put(key, chunk[key_end:value_end])
        position = value_end
        pairs += 1
    return pairs


# -- export --------------------------------------------------------------------------------------
def _remove_export(views: list[rocksdict.Rdict], directory: str) -> None:
    for view in views:  # the group's column family first, then the database
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

    def __init__(
        self, db: rocksdict.Rdict, chunk_bytes: int = SNAPSHOT_CHUNK_BYTES,
        family: str = "default",
    ) -> None:
        database = Path(db.path())
        directory = tempfile.mkdtemp(prefix=f".{database.name}.export-", dir=database.parent)
        try:
            checkpoint = Path(directory) / "checkpoint"
            rocksdict.Checkpoint(real_rdict(db)).create_checkpoint(str(checkpoint))
            view = rocksdict.Rdict(
                str(checkpoint),
                rocksdict.Options(raw_mode=True),
                access_type=rocksdict.AccessType.read_only(),
            )
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        views = [view]
        if family != "default":  # a Raft group's column family (node/storage/engine.py)
            try:
                view = view.get_column_family(family)
            except BaseException:
                _remove_export(views, directory)
                raise
            views.insert(0, view)
        self._finalizer = weakref.finalize(self, _remove_export, views, directory)
        value = view.get(APPLIED_KEY)
        self.applied_index: int = 0 if value is None else U64.unpack(value)[0]
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
    for prefix in EXPORTED_PREFIXES:
        options = rocksdict.ReadOptions()
        options.set_iterate_upper_bound(successor(prefix))
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
        iterator.status()  # an iteration that stopped on damaged data raises here
    if len(chunk) > 1:
        yield bytes(chunk)
    yield _CHUNK_END + U64.pack(pairs)
