"""Process-wide memory settings of a node process.

Owns: moving the objects that exist once the node's modules are imported out of the garbage
collector's sight (``gc.freeze``): they live as long as the process, and every full
collection walked them again, about 18 ms of CPU each time on this machine, which is a p99 on
its own. Capping glibc malloc's arenas before the node starts its threads. gRPC's and RocksDB's
threads each get an arena of their own by default (up to 8 per core), and freed memory stays
in them: under a steady append load that was 30-50 MB of a node's resident memory
(``benchmarks/large_state.py``: peak RSS 214-225 MB -> 174-203 MB while loading 2M
messages). And fixing malloc's mmap threshold at 2 MB: glibc starts at 128 kB but raises the
threshold to the size of any mmapped block freed (up to 32 MB), so after the first memtable
block (2 MB), 4 MB Raft entry or RocksDB buffer was freed, all of them came from the heap,
where freed blocks between live small objects stay resident. Loading 10M messages at full
speed (``benchmarks/large_state.py``, 16 x 2,000-message appends in flight): node RSS peak
238-293 MB, after the load 150-229 MB; with the threshold fixed at 2 MB 188-190 MB and
116-149 MB (1 MB: 181-189 and 129-140; 4 MB: 223-293 and 161-168). The price is page faults
on every big buffer: 2,000-message appends 150k -> 127k msg/s (1 MB: 117k), 100-message
appends unchanged. Must never: override an operator's ``MALLOC_ARENA_MAX`` or
``MALLOC_MMAP_THRESHOLD_``, or fail on a libc without ``mallopt`` (then it does nothing).

Not done here on purpose: trimming the heap (``malloc_trim``) from a thread once a second.
It lowered a loading node's RSS by 15-25 MB, but the first test run with it saw a node die of
a segfault inside gRPC's Cython module (a NULL read on the event loop's thread), the first in
this machine's uptime. Handing freed pages back turns a latent use-after-free read into a NULL
read, so it was taken out rather than risked; not proven to be the cause. The fixed mmap
threshold is different: unmapping a freed big block is glibc's ordinary path (every process
starts that way, below 128 kB), not a sweep over pages the heap still manages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter numbers
M_MMAP_THRESHOLD = -3
NODE_MALLOC_ARENAS = 2
NODE_MMAP_THRESHOLD = 2 << 20


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _mallopt(parameter: int, value: int, operator_variable: str) -> bool:
    """glibc ``mallopt(parameter, value)`` unless the operator set ``operator_variable`` (glibc
    reads it at start-up); True when applied."""
    if os.environ.get(operator_variable):
        return False
    mallopt = getattr(_libc(), "mallopt", None)
    return mallopt is not None and bool(mallopt(parameter, value))


def limit_malloc_arenas(arenas: int = NODE_MALLOC_ARENAS) -> bool:
    """Cap malloc arenas at ``arenas``; True when the cap was applied."""
    return _mallopt(M_ARENA_MAX, arenas, "MALLOC_ARENA_MAX")


def fix_mmap_threshold(threshold: int = NODE_MMAP_THRESHOLD) -> bool:
    """Serve every allocation of ``threshold`` bytes or more with its own mmap (returned to the
    system on free) and turn off glibc's moving threshold; True when set."""
    return _mallopt(M_MMAP_THRESHOLD, threshold, "MALLOC_MMAP_THRESHOLD_")


def freeze_imported_objects() -> int:
    """``gc.freeze()`` now (after imports, before serving); returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
