"""RocksDB's options for the node's database, tuned for an append-mostly log.

Owns: the database options every node opens its RocksDB with (``log_options``) and the probe
that decides whether flushes and compactions may use O_DIRECT. Must never: open a database.
"""

from __future__ import annotations

import os
from pathlib import Path

import rocksdict


def supports_direct_io(directory: Path) -> bool:
    """Whether files in ``directory`` can be opened with O_DIRECT (tmpfs, for one, may not)."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / ".direct-io-probe"
    try:
        descriptor = os.open(probe, os.O_CREAT | os.O_WRONLY | flag, 0o600)
    except OSError:
        return False
    os.close(descriptor)
    probe.unlink(missing_ok=True)
    return True


def log_options(directory: Path | None = None) -> rocksdict.Options:
    """RocksDB tuned for an append-mostly log read mostly at its tail.

    The WAL stays on (every write is logged; ``sync`` decides whether the write waits for
    fsync). Point-in-time WAL recovery: after a crash the database reopens at the last
    consistent write, and every synced write is before that point.

    Flushes and compactions write with O_DIRECT when ``directory`` supports it: their SST
    data then never sits dirty in the page cache, where ext4 (data=ordered) made a WAL fsync
    wait for it. Half-load batched appends (``quorumlog bench --local 3 --concurrency 16
    --batch 100 --rate 45000``), with the background threads at a lower priority
    (``priority.py``): p99 79-118 ms buffered, 36-81 ms direct.
    """
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_wal_recovery_mode(rocksdict.DBRecoveryMode.point_in_time())
    options.set_max_background_jobs(2)
    # At most 3 x 16 MB of memtables: they are most of a loaded node's memory (10M stored
    # messages, appending: peak RSS 200-258 MB with 32 MB buffers; benchmarks/large_state.py).
    options.set_write_buffer_size(16 << 20)
    options.set_max_write_buffer_number(3)
    options.set_max_total_wal_size(128 << 20)
    options.set_level_compaction_dynamic_level_bytes(True)
    options.set_compression_type(rocksdict.DBCompressionType.lz4())
    options.set_bytes_per_sync(1 << 20)  # smooth background SST writes
    if directory is not None and supports_direct_io(directory):
        options.set_use_direct_io_for_flush_and_compaction(True)
    options.set_keep_log_file_num(4)  # RocksDB's own info LOG files
    table = rocksdict.BlockBasedOptions()
    table.set_block_cache(rocksdict.Cache(32 << 20))
    table.set_bloom_filter(10, False)  # point reads: term(i), session lookups
    # Index and filter blocks live in the block cache, so their memory is bounded by it
    # instead of growing with the data (about 2 MB per million stored messages otherwise);
    # level-0's stay pinned, as the newest data is the most read.
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    options.set_block_based_table_factory(table)
    return options
