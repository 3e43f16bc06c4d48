"""``quorumlog bench``: a short ``--local 3`` run reports the JSON contract (rates, ordered
latency percentiles, entries per fsync from the nodes' metrics) and leaves no node process
behind; bad input gives one clear line and exit 2; an unreachable ``--cluster`` fails clearly
within its deadline. Plus the pure pieces: the latency reservoir and the metrics arithmetic."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import pytest
from cluster_harness import free_ports

from quorumlog.client import node_metrics
from quorumlog.client.cli import bench_metrics
from quorumlog.client.cli.bench import Reservoir
from quorumlog.client.cli.bench_metrics import node_figures

pytestmark = pytest.mark.cluster

CLI_TIMEOUT = 90.0  # generous for a loaded 2-core machine; the run itself takes ~2 s
REPORT_KEYS = {
    "messages_per_second", "mb_per_second", "appends_per_second", "latency_ms", "errors",
    "duration_s", "concurrency", "batch", "size", "sessions", "entries_per_fsync",
    "entries_per_append_entries", "node_pids",
}


def cli(*args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "QUORUMLOG_CLUSTER"}
    return subprocess.run(
        [sys.executable, "-m", "quorumlog.client.cli", *args],
        check=False, capture_output=True, text=True, timeout=timeout, env=environment,
    )


def test_local_run_reports_and_stops_its_nodes() -> None:
    result = cli("bench", "--local", "3", "--duration", "2", "--concurrency", "4",
                 "--batch", "2", "--sessions", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report.keys() >= REPORT_KEYS
    assert (report["concurrency"], report["batch"], report["size"], report["sessions"]) == (
        4, 2, 100, 2)
    assert report["messages_per_second"] > 0
    assert report["mb_per_second"] > 0
    assert report["errors"] == {}
    assert report["duration_s"] >= 2.0
    latency = report["latency_ms"]
    ordered = [latency[key] for key in ("p50", "p90", "p99", "p999", "max")]
    assert all(isinstance(value, (int, float)) for value in ordered), latency
    assert ordered[0] > 0 and ordered == sorted(ordered), latency
    assert isinstance(report["entries_per_fsync"], (int, float))
    assert report["entries_per_fsync"] > 0
    assert report["entries_per_append_entries"] is None or report[
        "entries_per_append_entries"] > 0
    pids = report["node_pids"]
    assert len(pids) == 3
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--concurrency", "0"], "--concurrency"),
        (["--size", "-1"], "--size"),
        (["--cluster", "127.0.0.1:1", "--local", "3"], "either --cluster or --local"),
        (["--duration", "soon"], "--duration"),
        (["--rate", "0"], "--rate"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], needle: str) -> None:
    result = cli("bench", *args, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert result.stdout == ""


def test_unreachable_cluster_fails_clearly_within_deadline() -> None:
    ports = free_ports(2)
    cluster = ",".join(f"127.0.0.1:{port}" for port in ports)
    started = time.monotonic()
    result = cli("bench", "--cluster", cluster, "--duration", "1", "--deadline", "2", timeout=30)
    assert time.monotonic() - started < 20
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no node reachable" in lines[0], result.stderr


def test_reservoir_is_bounded_and_percentiles_ordered() -> None:
    reservoir = Reservoir(100, random.Random(1))
    for i in range(10_000):
        reservoir.add(i / 1000.0)
    assert len(reservoir.samples) == 100 and reservoir.count == 10_000
    figures = reservoir.percentiles()
    values = [figures[key] for key in ("p50", "p90", "p99", "p999", "max")]
    assert all(value is not None for value in values)
    assert values == sorted(values)  # type: ignore[type-var]
    assert figures["max"] == 9999.0
    assert Reservoir(10, random.Random(1)).percentiles()["p50"] is None


def test_node_figures_use_the_leader_deltas() -> None:
    def node(leader: bool, persisted: float, fsyncs: float,
             app: tuple[float, float, float] = (0, 0, 0)) -> dict[str, float]:
        sent, empty, carried = app
        return {
            "quorumlog_raft_is_leader": 1.0 if leader else 0.0,
            "quorumlog_raft_entries_persisted": persisted,
            "quorumlog_raft_fsyncs": fsyncs,
            "quorumlog_raft_append_messages_sent": sent,
            "quorumlog_raft_append_empty_messages_sent": empty,
            "quorumlog_raft_append_entries_sent": carried,
        }

    before = [node(True, 10, 10, (4, 2, 2)), node(False, 10, 10), None]
    after = [node(True, 110, 30, (44, 12, 152)), node(False, 110, 60), node(False, 1, 1)]
    figures = node_figures(before, after)
    assert figures["entries_per_fsync"] == 5.0  # 100 entries / 20 fsyncs on the leader
    assert figures["entries_per_append_entries"] == 5.0  # 150 / (40 - 10 empty) APPs
    assert figures["follower_entries_per_fsync"] == 2.0
    assert figures["commands_per_entry"] is None  # no proposal counters in this sample
    assert node_figures([None], [None])["entries_per_fsync"] is None


def test_node_metrics_sum_by_name_and_refuse_odd_addresses() -> None:
    text = (
        "# HELP quorumlog_raft_fsyncs_total fsyncs\n# TYPE quorumlog_raft_fsyncs_total counter\n"
        'quorumlog_raft_fsyncs_total{shard="0"} 3.0\nquorumlog_raft_fsyncs_total{shard="1"} 4.0\n'
        'quorumlog_raft_is_leader{shard="0"} 1.0\nbroken_line nan-ish\n'
    )
    assert node_metrics.totals(text) == {"quorumlog_raft_fsyncs": 7.0,
                                         "quorumlog_raft_is_leader": 1.0}
    for address in ("no-port", "h:p", "h:1/evil", ":80"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            node_metrics.fetch(address)
    assert bench_metrics.scrape("127.0.0.1:1", timeout=0.5) is None  # nothing listens there
