"""The ``quorumlog`` command line against real node processes: ``cluster up`` (addresses, metrics
served on the announced port and named by ``status --json``, readiness line, clean SIGTERM stop
with no process left, restart on the same data directory), ``status --json``, ``append``/``read
--json`` shapes, and one clear line for an unreachable cluster within the deadline."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cluster_harness import free_ports, wait_until
from cluster_up_process import cluster_up, free_base_port, pid_gone, up_command

pytestmark = pytest.mark.cluster

CLI_TIMEOUT = 60.0  # per CLI run; generous for a loaded 2-core machine
READY_TIMEOUT = 60.0
STATUS_KEYS = {
    "id", "address", "role", "term", "leader", "commit_index", "applied_index", "last_index", "pid",
}


def cli(*args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "QUORUMLOG_CLUSTER"}
    return subprocess.run(
        [sys.executable, "-m", "quorumlog.client.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=environment, check=False,
    )


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_cluster_up_status_append_read_stop_and_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    base = free_base_port()
    addresses = ",".join(f"127.0.0.1:{base + i}" for i in range(3))
    with cluster_up(up_command(data_dir, base)) as up:
        leader, _ = up.wait_ready(READY_TIMEOUT)
        assert leader in {"n1", "n2", "n3"}
        node_lines = up.lines_before_ready()
        assert len(node_lines) == 3
        pids = []
        metrics = [f"127.0.0.1:{base + 200 + i}" for i in range(3)]  # base + 200 + i - 1
        for i, line in enumerate(node_lines):
            name, client, peer = f"n{i + 1}", f"127.0.0.1:{base + i}", f"127.0.0.1:{base + 100 + i}"
            assert line.startswith(
                f"{name}: client {client} peer {peer} metrics {metrics[i]} pid "), line
            pids.append(int(line.split(" pid ")[1].split()[0]))
        assert [node.metrics for node in up.node_lines()] == metrics

        def settled() -> list[dict[str, Any]] | None:
            # "cluster ready" means a leader was elected; a follower that has not heard from
            # it yet (or a re-election on a loaded machine) shows no leader for a moment.
            rows: list[dict[str, Any]] = ok_json(cli("status", "--json", "--cluster", addresses))
            known = all(row["leader"] in {"n1", "n2", "n3"} for row in rows)
            return rows if known and sum(row["role"] == "leader" for row in rows) == 1 else None

        rows = wait_until(settled, 30, "every node to report the one leader")
        assert [row["id"] for row in rows] == ["n1", "n2", "n3"]
        for row, pid, address in zip(rows, pids, metrics, strict=True):
            assert set(row) >= STATUS_KEYS
            assert row["pid"] == pid and row["leader"] in {"n1", "n2", "n3"}
            assert row["metrics_address"] == address  # ClusterStatus names the announced port
            scraped = wait_until(lambda address=address: _scrape(address), 30,
                                 f"metrics on {address}")
            # That node's own figures (labelled with its name), commit index included.
            commit = re.search(
                rf'^quorumlog_raft_commit_index\{{[^}}]*node="{row["id"]}"[^}}]*\}} (\S+)$',
                scraped, re.MULTILINE)
            assert commit is not None, scraped[:2000]
            assert float(commit.group(1)) >= 1
            assert isinstance(row["term"], int) and row["term"] >= 1
            for key in ("commit_index", "applied_index", "last_index"):
                assert isinstance(row[key], int)
        assert sum(row["role"] == "leader" for row in rows) == 1

        appended = ok_json(cli("append", "orders/1", "created", "paid", "--json",
                               "--cluster", addresses))
        assert appended["offsets"] == [0, 1] and appended["session"] == "orders/1"
        assert isinstance(appended["commit_index"], int) and appended["commit_index"] > 0
        assert ok_json(cli("append", "orders/1", "shipped", "--json", "--cluster", addresses))[
            "offsets"] == [2]
        page = ok_json(cli("read", "orders/1", "--json", "--cluster", addresses))
        assert page["session"] == "orders/1" and page["next_offset"] == 3
        assert [(m["offset"], m["data"]) for m in page["messages"]] == [
            (0, "created"), (1, "paid"), (2, "shipped")
        ]
        # every message carries the leader's append time, none of them an envelope
        assert all(m["append_time_ms"] > 1_600_000_000_000 and "envelope" not in m
                   for m in page["messages"])
        assert (page["first_offset"], page["end_offset"]) == (0, 3)

        code, rest = up.stop(signal.SIGTERM, timeout=60)
        assert code == 0 and "cluster stopped" in "\n".join(rest)
        for pid in pids:  # every node was stopped, none left behind
            wait_until(lambda pid=pid: pid_gone(pid), 30, f"node pid {pid} to exit")
        for name in ("n1", "n2", "n3"):
            log_text = (data_dir / name / "node.log").read_text(errors="replace")
            assert f"node {name} stopped" in log_text, log_text[-2000:]

    # The same data directory again: every message is back.
    with cluster_up(up_command(data_dir, base)) as up:
        up.wait_ready(READY_TIMEOUT)
        page = ok_json(cli("read", "orders/1", "--json", "--cluster", addresses))
        assert [m["data"] for m in page["messages"]] == ["created", "paid", "shipped"]
        code, _ = up.stop(signal.SIGTERM, timeout=60)
        assert code == 0


def _scrape(address: str) -> str | None:
    """The Prometheus text ``address`` serves on ``/metrics``; None while it does not."""
    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
            return str(answer.read().decode())
    except OSError:
        return None


def test_unreachable_cluster_is_one_clear_line_within_the_deadline() -> None:
    dead = ",".join(f"127.0.0.1:{port}" for port in free_ports(2))
    for args in (
        ("status", "--json"),
        ("append", "s", "m", "--json"),
        ("read", "s", "--json"),
    ):
        started = time.monotonic()
        result = cli(*args, "--cluster", dead, "--deadline", "2")
        elapsed = time.monotonic() - started
        assert result.returncode != 0, args
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert dead in lines[0] and "2s" in lines[0], lines[0]
        assert elapsed < 2 + 10, f"{args}: {elapsed:.1f}s"  # deadline + interpreter start-up
