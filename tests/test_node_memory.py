"""``quorumlog.node.memory``: the node process freezes what its imports created (so full
collections skip it) and caps malloc arenas unless the operator chose ``MALLOC_ARENA_MAX``.
Run in a child process, as a node does it once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import gc, json
import quorumlog.node.server
from quorumlog.node.memory import freeze_imported_objects, limit_malloc_arenas
capped = limit_malloc_arenas()
tracked_before = len(gc.get_objects())
frozen = freeze_imported_objects()
print(json.dumps({"capped": capped, "frozen": frozen, "tracked_before": tracked_before,
                  "tracked_after": len(gc.get_objects())}))
"""


def probe(**env: str) -> dict[str, object]:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
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


TRIM_PROBE = """
import json, sys, time
from quorumlog.node import housekeeping
from quorumlog.node.memory import trim_heap

def rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

# Freeing one 200 kB block lifts glibc's mmap threshold above it, so the blocks below come
# from the heap, each followed by a small block that stays: freeing the big ones leaves holes
# that only a trim hands back.
del bytearray(200_000)[:]
big, kept = [], []
for _ in range(400):
    big.append(bytearray(200_000))
    kept.append(bytearray(600))
del big[:]
before = rss_mb()
if sys.argv[1] == "trim":
    housekeeping.start(0.05, [trim_heap])
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline and rss_mb() > before - 40:
    time.sleep(0.05)  # polling the condition; the deadline bounds it
print(json.dumps({"before": before, "after": rss_mb(), "kept": len(kept)}))
"""


def trim_probe(mode: str, wait: float) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-c", TRIM_PROBE, mode, str(wait)],
                            capture_output=True, text=True, timeout=120, check=True)
    report: dict[str, float] = json.loads(result.stdout)
    return report


def test_freed_heap_memory_goes_back_to_the_system_within_the_trim_period() -> None:
    trimmed = trim_probe("trim", wait=30.0)  # ends as soon as the memory is back
    assert trimmed["after"] < trimmed["before"] - 40, trimmed
    # The control: without the trimming thread the same holes stay resident for 20 of its
    # periods (so the probe measures the trim, not glibc returning memory by itself).
    untrimmed = trim_probe("none", wait=1.0)
    assert untrimmed["after"] > untrimmed["before"] - 10, untrimmed
