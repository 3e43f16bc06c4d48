"""Process-wide memory settings of a node process.

Owns: moving the objects that exist once the node's modules are imported out of the garbage
collector's sight (``gc.freeze``): they live as long as the process, and every full
collection walked them again, about 18 ms of CPU each time on this machine, which is a p99 on
its own. And capping glibc malloc's arenas before the node starts its threads. gRPC's and RocksDB's
threads each get an arena of their own by default (up to 8 per core), and freed memory stays
in them: under a steady append load that was 30-50 MB of a node's resident memory
(``benchmarks/large_state.py``: peak RSS 214-225 MB -> 174-203 MB while loading 2M
messages). And handing freed heap pages back to the system (``malloc_trim``; once a second from
the housekeeping thread: ctypes releases the GIL, so the event loop never waits for it).
Batched appends pass 200 kB buffers through the heap; the holes they leave between live
objects otherwise stay resident (``large_state`` at 4M messages, two runs each: peak RSS
164-189 -> 146-178 MB, at rest 139-176 -> 121-166 MB, the same load rate). Must never:
override an operator's ``MALLOC_ARENA_MAX``, or fail on a libc without ``mallopt`` or
``malloc_trim`` (then it does nothing).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from typing import Any

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


def trim_heap() -> bool:
    """Return free heap pages to the system now (glibc ``malloc_trim``); False when this libc
    has none. The node calls it once a second (``housekeeping.py``)."""
    global _malloc_trim
    if _malloc_trim is None:
        _malloc_trim = getattr(_libc(), "malloc_trim", False)
    if not _malloc_trim:
        return False
    _malloc_trim(0)
    return True


_malloc_trim: Any = None  # libc's malloc_trim once looked up; False when there is none


def freeze_imported_objects() -> int:
    """``gc.freeze()`` now (after imports, before serving); returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
