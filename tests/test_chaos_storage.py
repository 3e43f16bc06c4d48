"""The chaos run's storage faults (issue 21), through ``quorumlog chaos run`` as an operator
runs it: every node's data directory on its own fault filesystem.

1. A power-loss run (power cuts of the leader, a follower or every node at once, each with a
   torn tail) loses nothing acknowledged, duplicates nothing, reorders nothing.
2. The canary: the same harness with nodes that never fsync (``--unsafe-no-fsync``), every
   power cut hitting every node, must report lost acknowledged values: so run 1 can fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_chaos_run import _explain, run_cli

pytestmark = [pytest.mark.chaos, pytest.mark.cluster, pytest.mark.slow]


def test_a_power_loss_run_loses_nothing_acknowledged(tmp_path: Path) -> None:
    out = tmp_path / "power"
    result = run_cli(["chaos", "run", "--faults", "power_loss", "--duration", "45",
                      "--seed", "4", "--out", str(out)], timeout=400)
    assert result.returncode == 0, _explain(result)
    data = json.loads((out / "result.json").read_text())
    assert data["verdict"] == "pass", _explain(result)
    for anomaly in ("lost", "lost_on_node", "duplicates", "inconsistent_offsets", "gaps",
                    "producer_reordering", "unexpected", "divergent_sessions"):
        assert data[anomaly] == 0, (anomaly, _explain(result))
    assert data["acked"] > 0
    cuts = [fault for fault in data["run"]["faults"] if fault["fault"] == "power_loss"]
    assert cuts, _explain(result)
    assert all("power cut undid" in " ".join(fault["notes"]) for fault in cuts)
    assert "--unsafe-no-fsync" not in data["run"]["node_args"]
    assert "power_loss" in (out / "report.html").read_text()  # on the report's timeline


def test_the_power_loss_canary_without_fsync_loses_acknowledged_values(tmp_path: Path) -> None:
    out = tmp_path / "canary"
    result = run_cli(["chaos", "run", "--canary", "--faults", "power_loss", "--consumers", "0",
                      "--duration", "30", "--seed", "3", "--out", str(out)], timeout=400)
    assert result.returncode == 1, _explain(result)
    data = json.loads((out / "result.json").read_text())
    assert data["verdict"] == "fail"
    assert data["lost"] > 0, _explain(result)
    assert "--unsafe-no-fsync" in data["run"]["node_args"]
    cuts = [fault for fault in data["run"]["faults"] if fault["fault"] == "power_loss"]
    assert cuts, _explain(result)  # every cut hit every node: see the notes
    assert all(" ".join(fault["notes"]).count("power cut undid") == 3 for fault in cuts)
    assert "the harness detects data loss" in result.stdout
