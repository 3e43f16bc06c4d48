"""``python -m benchmarks.scale_out``: its layouts flag, the CPU figures and ceiling computed
from per-node CPU seconds, the ratios to the first layout, the table; and a real run at toy
size on 3 nodes x 1 shard and 3 nodes x 2 shards whose JSON has every key with positive
numbers and which leaves no node process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import scale_out  # noqa: E402
from benchmarks.scale_out import Layout  # noqa: E402
from quorumlog.client.cli import CliError  # noqa: E402

LAYOUT_KEYS = {
    "layout", "nodes", "shards", "messages", "messages_per_second", "latency_ms", "errors",
    "duration_s", "node_cpu_s", "node_cpu_fraction", "busiest_node", "busiest_cpu_s_per_1000",
    "total_cpu_s_per_1000", "ceiling_messages_per_second", "versus_first", "load_before",
    "load_after",
}


def test_layouts_are_nodes_x_shards() -> None:
    assert scale_out.parse_layouts("3x1, 3x6,6x6") == [Layout(3, 1), Layout(3, 6), Layout(6, 6)]
    assert [layout.name for layout in scale_out.LAYOUTS] == ["3x1", "3x6", "6x6"]
    for bad in ("3", "3x", "x2", "0x1", "10x1", "3x0", "3x257", "", "a x b"):
        with pytest.raises(ValueError):
            scale_out.parse_layouts(bad)


def test_cpu_per_message_and_the_ceiling_come_from_the_busiest_node() -> None:
    row = scale_out.figures(2000, 4.0, {"n1": 10.0, "n2": 5.0, "n3": 1.0},
                            {"n1": 12.0, "n2": 6.0, "n3": 2.0})
    assert row["node_cpu_s"] == {"n1": 2.0, "n2": 1.0, "n3": 1.0}
    assert row["node_cpu_fraction"] == {"n1": 0.5, "n2": 0.25, "n3": 0.25}
    assert row["busiest_node"] == "n1"
    assert row["busiest_cpu_s_per_1000"] == 1.0  # 2 CPU s for 2,000 messages
    assert row["total_cpu_s_per_1000"] == 2.0
    assert row["ceiling_messages_per_second"] == 1000.0  # one core / 1 ms per message
    with pytest.raises(CliError, match="0 messages"):
        scale_out.figures(0, 4.0, {"n1": 1.0}, {"n1": 2.0})
    with pytest.raises(CliError, match="CPU read for"):  # a node died: no figure
        scale_out.figures(10, 4.0, {"n1": 1.0, "n2": 1.0}, {"n1": 2.0, "n2": None})


def test_every_layout_is_compared_with_the_first_and_shown_in_the_table() -> None:
    def row(name: str, rate: float, busiest: float) -> dict[str, object]:
        return {"layout": name, "messages_per_second": rate, "busiest_cpu_s_per_1000": busiest,
                "busiest_node": "n1", "total_cpu_s_per_1000": 3 * busiest,
                "ceiling_messages_per_second": 1000 / busiest, "errors": {}}

    rows = [row("3x1", 4000.0, 0.5), row("3x6", 4400.0, 0.35), row("6x6", 4400.0, 0.2)]
    scale_out.versus_first(rows)
    assert rows[0]["versus_first"] == {"messages_per_second": 1.0, "busiest_cpu_s_per_1000": 1.0,
                                       "total_cpu_s_per_1000": 1.0,
                                       "ceiling_messages_per_second": 1.0}
    assert rows[2]["versus_first"] == {"messages_per_second": 1.1, "busiest_cpu_s_per_1000": 0.4,
                                       "total_cpu_s_per_1000": 0.4,
                                       "ceiling_messages_per_second": 2.5}
    text = scale_out.human({"concurrency": 64, "sessions": 64, "size": 100, "duration_s": 8.0,
                            "warmup_s": 1.0, "cores": 2, "layouts": rows,
                            "load_start": [1.0, 1.0, 1.0], "load_end": [2.0, 1.0, 1.0]})
    lines = text.splitlines()
    assert lines[3].split()[:2] == ["3x1", "4,000"] and "1.00x" in lines[3]
    assert lines[5].split()[:2] == ["6x6", "4,400"] and "0.40x" in lines[5] and "2.50x" in lines[5]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.cluster  # about 15 s: two small clusters one after the other
def test_a_toy_run_reports_every_layout_with_positive_figures(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale_out", "--layouts", "3x1,3x2", "--duration",
         "1.5", "--warmup", "0.5", "--data-root", str(tmp_path), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["concurrency"] == 64 and report["sessions"] == 64
    assert [row["layout"] for row in report["layouts"]] == ["3x1", "3x2"]
    for row in report["layouts"]:
        assert set(row) >= LAYOUT_KEYS
        assert row["messages"] > 0 and row["messages_per_second"] > 0
        assert set(row["node_cpu_s"]) == {"n1", "n2", "n3"}
        assert all(value > 0 for value in row["node_cpu_s"].values())
        assert row["busiest_cpu_s_per_1000"] > 0 and row["total_cpu_s_per_1000"] > 0
        assert row["ceiling_messages_per_second"] > 0
        assert row["total_cpu_s_per_1000"] >= row["busiest_cpu_s_per_1000"]
        assert all(value is not None and value > 0 for value in row["versus_first"].values())
    assert list(tmp_path.iterdir()) == []  # every layout's data deleted
    pids = [int(word) for line in result.stderr.splitlines() if "(pids [" in line
            for word in line.split("(pids [", 1)[1].split("]", 1)[0].split(",")]
    assert len(pids) == 6 and not any(_alive(pid) for pid in pids)
