"""The scrub: read back everything the node stored, so bit rot is found even where nothing
reads it.

Owns: one pass over every column family of the node's database (every group's log, hard
state, snapshot and state machine keys) with checksums verified and the block cache left
alone (RocksDB checks each block's checksum as it reads it from disk; the Raft storage
checks its own CRC-32 on every log entry and snapshot: ``raft_store``), pausing between
slices so the node keeps serving, and the verdict: ``StorageCorrupted`` naming the family,
or the number of keys read. The node runs a pass at start and then every
``--scrub-every-s`` seconds (``quorumlog.node.process.server``). Must never: write, or hold
the event loop for more than one slice.
"""

from __future__ import annotations

import asyncio

import rocksdict

from quorumlog.node.storage.engine import StorageEngine, family_name, is_rocksdb_error
from quorumlog.node.storage.raft_records import LOG_PREFIX, StorageCorrupted, decode_entry
from quorumlog.raft.errors import Unavailable

SLICE_KEYS = 2_000  # keys read between two yields to the event loop
SLICE_PAUSE = 0.002  # seconds between slices: a pass takes a share of one core, not all


def is_corruption(error: BaseException) -> bool:
    """Whether ``error`` says stored data is damaged: our checksums or layout checks,
    RocksDB's checksums, or the Raft core finding the log shorter than what the node's own
    durable state says it holds (``Unavailable`` escaping the loop: entries a disk said were
    durable are gone)."""
    return (isinstance(error, StorageCorrupted | Unavailable)
            or is_rocksdb_error(error, "Corruption"))


async def scrub(engine: StorageEngine) -> int:
    """Read every key of every group once; the keys read. Raises ``StorageCorrupted``."""
    total = 0
    for group in engine.groups():
        family = engine.family(group)
        options = rocksdict.ReadOptions()
        options.fill_cache(False)  # type: ignore[call-arg]  # the stub lacks its argument
        options.set_verify_checksums(True)
        iterator = family.iter(options)
        try:
            iterator.seek_to_first()
            count = 0
            while iterator.valid():
                key: bytes = iterator.key()
                value: bytes = iterator.value()
                if key.startswith(LOG_PREFIX) and len(key) == len(LOG_PREFIX) + 8:
                    decode_entry(int.from_bytes(key[len(LOG_PREFIX):], "big"), value)
                iterator.next()
                count += 1
                if count % SLICE_KEYS == 0:
                    await asyncio.sleep(SLICE_PAUSE)  # let the node serve between slices
            iterator.status()
        except Exception as error:
            if isinstance(error, StorageCorrupted):
                raise
            raise StorageCorrupted(
                f"scrub of {family_name(group)}: {error}") from error
        finally:
            del iterator
        total += count
    return total
