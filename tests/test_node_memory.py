"""``quorumlog.node.process.memory``: the node process freezes what its imports created (so full
collections skip it), caps malloc arenas and fixes the mmap threshold unless the operator chose
``MALLOC_ARENA_MAX`` / ``MALLOC_MMAP_THRESHOLD_``. Run in a child process, as a node does it
once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import gc, json
import quorumlog.node.process.server
import ctypes
from quorumlog.node.process.memory import (
    _libc, fix_mmap_threshold, freeze_imported_objects, limit_malloc_arenas)
capped = limit_malloc_arenas()
fixed = fix_mmap_threshold()

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = _libc()  # the same libc the node calls mallopt on
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
# glibc's own rule raises the threshold to a freed mmapped block's size (6 MB here), so the
# 3 MB block would come from the heap; with the threshold fixed it is mmapped.
libc.free(libc.malloc(6 << 20))
mapped_before = libc.mallinfo2().hblkhd
held = libc.malloc(3 << 20)
mapped = libc.mallinfo2().hblkhd - mapped_before
libc.free(held)
tracked_before = len(gc.get_objects())
frozen = freeze_imported_objects()
print(json.dumps({"capped": capped, "fixed": fixed, "mapped": mapped, "frozen": frozen,
                  "tracked_before": tracked_before, "tracked_after": len(gc.get_objects())}))
"""


def probe(**env: str) -> dict[str, object]:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_")}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=120, check=True, env={**environment, **env})
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_imports_are_frozen_and_arenas_capped() -> None:
    report = probe()
    assert report["capped"] is True
    assert isinstance(report["frozen"], int) and report["frozen"] > 10_000
    # What the collector still walks is a small remainder of what the imports created.
    assert report["tracked_after"] < report["tracked_before"] / 10  # type: ignore[operator]


def test_an_operator_malloc_arena_max_is_left_alone() -> None:
    assert probe(MALLOC_ARENA_MAX="4")["capped"] is False


def test_big_blocks_are_always_mmapped() -> None:
    report = probe()
    assert report["fixed"] is True
    assert report["mapped"] >= 3 << 20  # type: ignore[operator]


def test_an_operator_mmap_threshold_is_left_alone() -> None:
    report = probe(MALLOC_MMAP_THRESHOLD_="33554432")  # 32 MB: the 3 MB block is heap
    assert report["fixed"] is False
    assert report["mapped"] == 0
