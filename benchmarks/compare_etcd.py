"""Side by side: quorumlog against a 3-member etcd, on this machine, in one run.

Usage: ``python -m benchmarks.compare_etcd [--duration SECONDS] [--warmup SECONDS]
[--rounds N] [--scenarios NAMES] [--data-root DIR] [--json]`` (``make compare``).

Owns: installing etcd when missing (``benchmarks.etcd``), starting a 3-member etcd and a
3-node quorumlog (fsync on for both, every data directory under one temporary directory on
the same disk), driving each in turn with the same load generator (``quorumlog.client.cli.bench
.drive``: C asyncio workers on one Python gRPC client, one call in flight each, 100-byte
values), and the table of ratios quorumlog / etcd per scenario: one sequential client, 16 and
64 concurrent single-message appenders, and batched producers (quorumlog: 16 workers appending
100 messages per call; etcd: 16 workers, one Txn of 100 puts per call). Only the system being
measured is loaded; the other idles. Must never: leave a process it started running or its
data behind (stopped on success, error, Ctrl-C and SIGTERM), or run without a time bound.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from benchmarks.etcd import EtcdClient, EtcdCluster, EtcdUnavailable, ensure_installed, version
from benchmarks.processes import CpuMeter, Processes, load_average, report_of
from quorumlog.client import errors
from quorumlog.client.cli import CliError
from quorumlog.client.cli.bench import Settings, drive, local_cluster
from quorumlog.client.cli.bench_metrics import node_figures, scrape_all
from quorumlog.client.sdk import AsyncClient
from quorumlog.node.process.launcher import Launcher

SIZE = 100
CALL_DEADLINE = 5.0
READY_TIMEOUT = 60.0
MAX_SECONDS = 600.0


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    concurrency: int
    batch: int


SCENARIOS = (
    Scenario("sequential", "1 sequential client", 1, 1),
    Scenario("concurrent_16", "16 concurrent appenders", 16, 1),
    Scenario("concurrent_64", "64 concurrent appenders", 64, 1),
    Scenario("batched", "batched producers (16 x 100)", 16, 100),
)


def log(line: str) -> None:
    print(f"compare: {line}", file=sys.stderr, flush=True)


# -- the report ------------------------------------------------------------------------------


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return round(numerator / denominator, 3)


def ratios(quorumlog: dict[str, Any], etcd: dict[str, Any]) -> dict[str, float | None]:
    """quorumlog / etcd: above 1 is better for throughput, below 1 is better for latency."""
    return {
        "messages_per_second": _ratio(quorumlog["messages_per_second"],
                                      etcd["messages_per_second"]),
        "p50": _ratio(quorumlog["latency_ms"]["p50"], etcd["latency_ms"]["p50"]),
        "p99": _ratio(quorumlog["latency_ms"]["p99"], etcd["latency_ms"]["p99"]),
    }


def _number(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def format_table(report: dict[str, Any]) -> list[str]:
    """The human table: one row per scenario, ratios quorumlog / etcd."""
    header = (f"{'scenario':<30} {'quorumlog msg/s':>15} {'etcd puts/s':>12} {'ratio':>7}"
              f"  {'p50 ms ql / etcd':>17} {'ratio':>7}  {'p99 ms ql / etcd':>17} {'ratio':>7}")
    lines = [
        f"quorumlog vs etcd {report['etcd_version']}: 3 nodes each, fsync on, {report['size']}-"
        f"byte values, {report['duration_s']:g} s per run after {report['warmup_s']:g} s warmup"
        + (f", median of {report['rounds']} rounds" if report.get("rounds", 1) > 1 else ""),
        header,
        "-" * len(header),
    ]
    for row in report["scenarios"]:
        ql, etcd, ratio = row["quorumlog"], row["etcd"], row["ratios"]
        p50 = f"{_number(ql['latency_ms']['p50'], 2)} / {_number(etcd['latency_ms']['p50'], 2)}"
        p99 = f"{_number(ql['latency_ms']['p99'], 2)} / {_number(etcd['latency_ms']['p99'], 2)}"
        errors_seen = sum(ql["errors"].values()) + sum(etcd["errors"].values())
        lines.append(
            f"{row['title']:<30} {_number(ql['messages_per_second']):>15} "
            f"{_number(etcd['messages_per_second']):>12} "
            f"{_times(ratio['messages_per_second']):>7}  {p50:>17} {_times(ratio['p50']):>7}"
            f"  {p99:>17} {_times(ratio['p99']):>7}"
            + (f"  errors {errors_seen}" if errors_seen else "")
        )
    lines.append("CPU per message, us (3 servers together / this client process):")
    for row in report["scenarios"]:
        ql, etcd = row["quorumlog"], row["etcd"]
        lines.append(
            f"  {row['title']:<30} quorumlog {_number(ql.get('server_cpu_us_per_message'))} / "
            f"{_number(ql.get('client_cpu_us_per_message'))}   etcd "
            f"{_number(etcd.get('server_cpu_us_per_message'))} / "
            f"{_number(etcd.get('client_cpu_us_per_message'))}")
    lines.append(f"load average (1/5/15 min) at start {report['load_start']}, "
                 f"at end {report['load_end']}; 2 shared cores, so figures are noisy")
    return lines


# -- the runs --------------------------------------------------------------------------------


def settings_for(scenario: Scenario, duration: float, warmup: float) -> Settings:
    return Settings(
        concurrency=scenario.concurrency, batch=scenario.batch, size=SIZE,
        sessions=scenario.concurrency, duration=duration, warmup=warmup,
        deadline=CALL_DEADLINE, ready_timeout=READY_TIMEOUT, seed=1, progress=False,
    )


async def measure_etcd(client: EtcdClient, scenario: Scenario, settings: Settings,
                       values: list[bytes], *, meter: CpuMeter) -> dict[str, Any]:
    call: Callable[[str], Awaitable[object]]
    if scenario.batch == 1:
        async def call(key: str) -> object:
            return await client.put(key.encode(), values[0], CALL_DEADLINE)
    else:
        async def call(key: str) -> object:
            return await client.put_many(key.encode(), values, CALL_DEADLINE)
    keys = [f"{scenario.name}-{i}" for i in range(scenario.concurrency)]
    async def start() -> None:
        meter.start()

    measured = await drive(call, keys, settings, failures=(grpc.aio.AioRpcError,),
                           at_measure_start=start)
    return {**measured.summary(SIZE), **meter.report(measured.totals.messages)}


async def measure_quorumlog(client: AsyncClient, metrics_addrs: list[str], scenario: Scenario,
                            settings: Settings, values: list[bytes], *,
                            meter: CpuMeter) -> dict[str, Any]:
    before: list[dict[str, float] | None] = []

    async def scrape_before() -> None:
        before[:] = await asyncio.to_thread(scrape_all, metrics_addrs)
        meter.start()

    async def call(session: str) -> object:
        return await client.append(session, *values)

    sessions = [f"{scenario.name}-{i}" for i in range(scenario.concurrency)]
    measured = await drive(call, sessions, settings, failures=(errors.QuorumLogError,),
                           at_measure_start=scrape_before)
    cpu = meter.report(measured.totals.messages)
    after = await asyncio.to_thread(scrape_all, metrics_addrs)
    return {**measured.summary(SIZE), **node_figures(before, after), **cpu}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate (the lower middle one of an even count)."""
    ordered = sorted(runs, key=lambda run: float(run["messages_per_second"]))
    return ordered[(len(ordered) - 1) // 2]


async def compare(etcd: EtcdCluster, cluster: Launcher,
                  scenarios: Sequence[Scenario], *, duration: float, warmup: float,
                  rounds: int = 1) -> list[dict[str, Any]]:
    """Every scenario on both systems, ``rounds`` times (the order of the two alternates so
    neither always runs first); a row reports each system's median run."""
    etcd_leader = await etcd.wait_leader(READY_TIMEOUT)
    log(f"etcd leader at {etcd_leader}")
    rng = random.Random(1)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        s.name: {"quorumlog": [], "etcd": [], "load": []} for s in scenarios}
    async with grpc.aio.insecure_channel(etcd_leader) as channel, AsyncClient(
        cluster.client_addrs, deadline=CALL_DEADLINE, seed=1
    ) as client:
        etcd_client = EtcdClient(channel)
        for number in range(rounds):
            for scenario in scenarios:
                settings = settings_for(scenario, duration, warmup)
                values = [rng.randbytes(SIZE) for _ in range(scenario.batch)]
                runs[scenario.name]["load"].append({"before": load_average()})
                for system in ("etcd", "quorumlog")[:: 1 if number % 2 == 0 else -1]:
                    log(f"{scenario.name}: {system} (round {number + 1} of {rounds})")
                    if system == "etcd":
                        row = await measure_etcd(etcd_client, scenario, settings, values,
                                                 meter=CpuMeter(etcd.pids))
                    else:
                        row = await measure_quorumlog(
                            client, cluster.metrics_addrs, scenario, settings, values,
                            meter=CpuMeter(list(cluster.pids().values())))
                    runs[scenario.name][system].append(row)
                runs[scenario.name]["load"][-1]["after"] = load_average()
    rows = []
    for scenario in scenarios:
        ql_row = median_run(runs[scenario.name]["quorumlog"])
        etcd_row = median_run(runs[scenario.name]["etcd"])
        loads = runs[scenario.name]["load"]
        rows.append({
            "name": scenario.name, "title": scenario.title,
            "concurrency": scenario.concurrency, "batch": scenario.batch,
            "quorumlog": ql_row, "etcd": etcd_row, "ratios": ratios(ql_row, etcd_row),
            "load_before": loads[0]["before"], "load_after": loads[-1]["after"],
            "rounds": [{"quorumlog": q["messages_per_second"], "etcd": e["messages_per_second"],
                        **load} for q, e, load in zip(runs[scenario.name]["quorumlog"],
                                                      runs[scenario.name]["etcd"], loads,
                                                      strict=True)],
        })
    return rows


def run(duration: float, warmup: float, scenarios: Sequence[Scenario],
        data_root: Path | None, rounds: int = 1) -> dict[str, Any]:
    binary = ensure_installed(log)
    load_start = load_average()
    root = Path(tempfile.mkdtemp(prefix="quorumlog-vs-etcd-", dir=data_root))
    processes = Processes()
    pids: list[int] = []
    try:
        etcd = EtcdCluster.plan(binary, root / "etcd", processes)
        etcd.start()
        log(f"etcd pids {etcd.pids}, data in {root / 'etcd'}")
        with local_cluster(3, root / "quorumlog", [], ready_timeout=READY_TIMEOUT) as (
                cluster, leader):
            log(f"quorumlog pids {cluster.started_pids}, data in {root / 'quorumlog'}")
            log(f"quorumlog leader {leader}")
            rows = asyncio.run(compare(etcd, cluster, scenarios, duration=duration,
                                       warmup=warmup, rounds=rounds))
            pids = [*processes.pids, *cluster.started_pids]
            running = {*processes.running(), *cluster.pids().values()}
            dead = [pid for pid in pids if pid not in running]
            if dead:
                raise CliError(f"process(es) {dead} exited during the run", code=1)
    finally:
        processes.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "etcd_version": version(binary), "size": SIZE, "duration_s": duration,
        "warmup_s": warmup, "rounds": rounds, "scenarios": rows, "load_start": load_start,
        "load_end": load_average(), "pids": pids, "data_root": str(root),
    }


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare_etcd",
                                     description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--duration", type=float, default=5.0,
                        help="measured seconds per scenario and system (default 5)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every scenario this many times, alternating which "
                        "system goes first; report each one's median run (default 1)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of load before each measurement (default 1)")
    parser.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS),
                        help="comma-separated subset of: "
                        + ", ".join(s.name for s in SCENARIOS))
    parser.add_argument("--data-root", type=Path, default=None,
                        help="parent of the run's temporary data directory (default: $TMPDIR)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be between 1 and 20")
    if not 0 < args.duration <= MAX_SECONDS or not 0 <= args.warmup <= MAX_SECONDS:
        parser.error(f"--duration must be in (0, {MAX_SECONDS:g}] and --warmup in "
                     f"[0, {MAX_SECONDS:g}]")
    known = {s.name: s for s in SCENARIOS}
    names = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        parser.error(f"--scenarios: unknown {unknown}; choose from {sorted(known)}")
    args.scenario_list = [known[name] for name in names]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    return report_of(
        "compare",
        lambda: run(args.duration, args.warmup, args.scenario_list, args.data_root, args.rounds),
        as_json=args.json, human=lambda report: "\n".join(format_table(report)),
        failures=(EtcdUnavailable, CliError))


if __name__ == "__main__":
    raise SystemExit(main())
