"""Process-wide memory settings of a node process.

Owns: moving the objects that exist once the node's modules are imported out of the garbage
collector's sight (``gc.freeze``): they live as long as the process, and every full
collection walked them again, about 18 ms of CPU each time on this machine, which is a p99 on
its own. And capping glibc malloc's arenas before the node starts its threads. gRPC's and RocksDB's
threads each get an arena of their own by default (up to 8 per core), and freed memory stays
in them: under a steady append load that was 30-50 MB of a node's resident memory
(``benchmarks/large_state.py``: peak RSS 214-225 MB -> 174-203 MB while loading 2M
messages). Must never: override an operator's ``MALLOC_ARENA_MAX``, or fail on a libc without
``mallopt`` (then it does nothing).

Not done here on purpose: trimming the heap (``malloc_trim``) from a thread once a second.
It lowered a loading node's RSS by 15-25 MB, but the first test run with it saw a node die of
a segfault inside gRPC's Cython module (a NULL read on the event loop's thread), the first in
this machine's uptime. Handing freed pages back turns a latent use-after-free read into a NULL
read, so it was taken out rather than risked; not proven to be the cause.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter number
NODE_MALLOC_ARENAS = 2


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = NODE_MALLOC_ARENAS) -> bool:
    """Cap malloc arenas at ``arenas``; True when the cap was applied."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    mallopt = getattr(_libc(), "mallopt", None)
    return mallopt is not None and bool(mallopt(M_ARENA_MAX, arenas))


def freeze_imported_objects() -> int:
    """``gc.freeze()`` now (after imports, before serving); returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
