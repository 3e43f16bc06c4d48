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

