"""The Grafana dashboard (``deploy/grafana/quorumlog.json``) only uses metrics the node
exports: every ``quorumlog_*`` series in every panel query is a gauge, a counter (exposed
with ``_total``) or the histogram (``_bucket``/``_sum``/``_count``) defined in
``node/process/metrics.py``, and every panel has a query and a unique id."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "quorumlog.json"
METRICS_SOURCE = ROOT / "node" / "process" / "metrics.py"
SERIES = re.compile(r"\bquorumlog_[a-z0-9_]+")


def exported_series() -> set[str]:
    source = METRICS_SOURCE.read_text()
    gauges = set(re.findall(r'gauge\(\s*"(quorumlog_[a-z0-9_]+)"', source))
    gauges |= set(re.findall(r'GaugeMetricFamily\(\s*"(quorumlog_[a-z0-9_]+)"', source))
    counters = set(re.findall(r'counter\(\s*"(quorumlog_[a-z0-9_]+)"', source))
    histograms = set(re.findall(r'Histogram\(\s*"(quorumlog_[a-z0-9_]+)"', source))
    assert gauges and counters and histograms, "metrics.py changed shape; update this test"
    return (
        gauges
        | {f"{name}_total" for name in counters}
        | {f"{name}{suffix}" for name in histograms for suffix in ("_bucket", "_sum", "_count")}
    )


def queries(dashboard: dict[str, Any]) -> list[str]:
    found = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    found += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found


def test_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] == "quorumlog" and dashboard["uid"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_metric_the_dashboard_uses_is_exported_by_the_node() -> None:
    exported = exported_series()
    used = {name for query in queries(json.loads(DASHBOARD.read_text()))
            for name in SERIES.findall(query)}
    assert used, "the dashboard queries no quorumlog metric"
    assert used <= exported, f"not exported by node/process/metrics.py: {sorted(used - exported)}"
    # The panels cover leadership, replication lag, membership, latency and the write path.
    for needed in ("quorumlog_raft_is_leader", "quorumlog_raft_follower_lag_entries",
                   "quorumlog_raft_voters", "quorumlog_request_seconds_bucket",
                   "quorumlog_raft_fsyncs_total"):
        assert needed in used, needed
