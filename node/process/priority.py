"""CPU priority of RocksDB's background threads in a node process.

Owns: keeping RocksDB's flush and compaction threads (RocksDB names them ``rocksdb:high`` and
``rocksdb:low``) at nice :data:`BACKGROUND_NICE`, so they run on the cores the event loop
leaves idle. The nodes of a cluster ingest the same data, so their memtables fill, flush and
compact at about the same moment; at normal priority each burst took the cores from every
node's event loop at once, and the appends that arrived meanwhile queued for more than a
second. Half-load batched appends (``quorumlog bench --local 3 --concurrency 16 --batch 100
--rate 45000``, direct I/O on): p99 150-275 ms at nice 0, 36-58 ms at nice 10; the closed-loop
maximum was 80,100 vs 88,000 msg/s. RocksDB starts pool threads when it first needs them, so
the caller repeats this (the node does once a second, ``housekeeping.py``).

Must never: raise any thread's priority, touch a thread that is not RocksDB's, or fail where
``/proc`` or ``setpriority`` is missing (it then changes nothing).
"""

from __future__ import annotations

import os
from pathlib import Path

BACKGROUND_NICE = 10
_THREAD_PREFIX = "rocksdb:"


def rocksdb_threads(tasks: Path = Path("/proc/self/task")) -> list[int]:
    """Thread ids of this process's RocksDB background threads."""
    found = []
    try:
        entries = list(tasks.iterdir())
    except OSError:
        return []
    for entry in entries:
        try:
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue  # the thread ended meanwhile
        if name.startswith(_THREAD_PREFIX) and entry.name.isdigit():
            found.append(int(entry.name))
    return found


def lower_rocksdb_threads(nice: int = BACKGROUND_NICE) -> int:
    """Set every RocksDB background thread below ``nice`` to ``nice``; how many changed."""
    changed = 0
    for thread_id in rocksdb_threads():
        try:
            if os.getpriority(os.PRIO_PROCESS, thread_id) < nice:
                os.setpriority(os.PRIO_PROCESS, thread_id, nice)  # Linux: just this thread
                changed += 1
        except OSError:
            continue  # ended meanwhile, or not permitted
    return changed
