"""``quorumlog status`` against real nodes: the readable table (nodes, the leader's view of
each follower's match index, lag, state and last contact, the membership) and the added JSON
keys (``followers``, ``members``) next to the contract keys; and the metrics a node serves
over HTTP include every series the Grafana dashboard queries."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from cluster_harness import LocalCluster, free_ports, wait_until
from ops_helpers import cli
from test_grafana import DASHBOARD, SERIES, queries

from quorumlog.client import Client

pytestmark = pytest.mark.cluster

STATUS_KEYS = {
    "id", "address", "role", "term", "leader", "commit_index", "applied_index", "last_index", "pid",
}


def test_status_table_shows_replication_and_membership(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, 3)
    metrics_ports = free_ports(3)
    for node, port in zip(cluster.nodes.values(), metrics_ports, strict=True):
        node.extra_args += ["--metrics-addr", f"127.0.0.1:{port}"]
    try:
        cluster.start()
        leader = cluster.wait_leader(60)
        with Client(cluster.addresses, deadline=30) as client:
            for i in range(50):
                client.append("s", f"m{i}".encode())
        addresses = ",".join(cluster.addresses)

        def followers_heard() -> list[dict[str, object]] | None:
            rows = json.loads(cli("status", "--json", "--cluster", addresses).stdout)
            row = next(r for r in rows if r["role"] == "leader")
            followers = row["followers"]
            if len(followers) == 2 and all(f["last_contact_ms"] is not None for f in followers):
                return rows  # type: ignore[no-any-return]
            return None

        rows = wait_until(followers_heard, 60, "the leader to hear from both followers")
        for row in rows:
            assert set(row) >= STATUS_KEYS | {"members", "followers"}
            assert {m["id"] for m in row["members"]} == {"n1", "n2", "n3"}
        leader_row = next(r for r in rows if r["role"] == "leader")
        assert leader_row["id"] == leader
        for follower in leader_row["followers"]:
            assert follower["role"] == "voter" and follower["lag"] >= 0
            assert follower["match_index"] <= leader_row["last_index"]

        text = cli("status", "--cluster", addresses)
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines[0].split()[:3] == ["ID", "ADDRESS", "ROLE"]
        start = lines.index(next(line for line in lines if line.startswith("replication")))
        assert f"leader {leader}" in lines[start]
        assert lines[start + 1].split() == ["FOLLOWER", "ROLE", "MATCH", "LAG", "STATE",
                                            "LAST", "CONTACT"]
        follower_lines = lines[start + 2 : start + 4]
        assert {line.split()[0] for line in follower_lines} == {"n1", "n2", "n3"} - {leader}
        assert all("ms ago" in line or " s ago" in line for line in follower_lines)
        members_at = lines.index("membership:")
        assert [line.split()[:2] for line in lines[members_at + 2 : members_at + 5]] == [
            ["n1", "voter"], ["n2", "voter"], ["n3", "voter"]
        ]

        # Every series the dashboard uses is served by the leader's /metrics.
        port = metrics_ports[list(cluster.nodes).index(leader)]
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with direct.open(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            exposition = reply.read().decode()
        served = set(SERIES.findall(exposition))
        used = {name for q in queries(json.loads(DASHBOARD.read_text()))
                for name in SERIES.findall(q)}
        assert used <= served, sorted(used - served)
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
