"""Latency at half of maximum throughput: find the maximum, then offer half of it, open loop.

Usage: ``python -m benchmarks.half_load [--duration 8] [--json]``.

Owns: a 3-node quorumlog cluster (fsync on, temporary data) and, per workload (64 concurrent
single-message appenders; 16 batched producers of 100 messages), a closed-loop run at full
speed (``quorumlog bench``'s load generator) and then an open-loop run offering half of the
measured rate (``Settings.rate``: calls on a fixed schedule, latency from the scheduled start).
Reports both runs' rates and latency percentiles. Must never: leave a node running or its data
behind, or run unbounded.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.compare_etcd import SIZE, Scenario, settings_for
from benchmarks.processes import load_average, local_cluster, report_of
from quorumlog.client.cli.bench import run_load

WORKLOADS = (
    Scenario("concurrent_64", "64 concurrent appenders", 64, 1),
    Scenario("batched", "batched producers (16 x 100)", 16, 100),
)


async def measure(addresses: list[str], metrics: list[str], duration: float,
                  warmup: float) -> list[dict[str, Any]]:
    rows = []
    for workload in WORKLOADS:
        settings = settings_for(workload, duration, warmup)
        full = await run_load(addresses, settings, metrics)
        half_rate = full["messages_per_second"] / 2
        half = await run_load(addresses, dataclasses.replace(settings, rate=half_rate), metrics)
        row = {"name": workload.name, "title": workload.title, "max": full, "half": half,
               "load": load_average()}
        print(f"half-load: {workload.title}: max {full['messages_per_second']:,.0f} msg/s; at "
              f"{half_rate:,.0f} offered: {half['messages_per_second']:,.0f} msg/s, p50 "
              f"{half['latency_ms']['p50']} ms, p99 {half['latency_ms']['p99']} ms "
              f"(load {row['load']})", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def run(duration: float, warmup: float, data_root: Path | None) -> dict[str, Any]:
    load_start = load_average()
    with local_cluster("quorumlog-half-load-", data_root) as cluster:
        rows = asyncio.run(measure(cluster.client_addrs, cluster.metrics_addrs, duration,
                                   warmup))
    return {"size": SIZE, "workloads": rows, "load_start": load_start,
            "load_end": load_average(), "pids": cluster.started_pids}


def human(report: dict[str, Any]) -> str:
    return "\n".join(
        f"{row['title']}: max {row['max']['messages_per_second']:,.0f} msg/s; offered half: "
        f"p50 {row['half']['latency_ms']['p50']} ms, p99 {row['half']['latency_ms']['p99']} ms"
        for row in report["workloads"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.half_load",
                                     description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 600:
        parser.error("--duration must be in (0, 600] and --warmup in [0, 600]")
    return report_of("half-load", lambda: run(args.duration, args.warmup, args.data_root),
                     as_json=args.json, human=human)


if __name__ == "__main__":
    raise SystemExit(main())
