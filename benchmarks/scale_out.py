"""Scale-out: the same 64-concurrent append load on local clusters of several layouts, with
every node's CPU per acknowledged message, so a 2-core machine can show what more shards and
more nodes buy.

Usage: ``python -m benchmarks.scale_out [--layouts 3x1,3x6,6x6] [--duration 8] [--warmup 1]
[--data-root DIR] [--json]``.

Owns: per layout NODESxSHARDS, in turn, a local cluster (``quorumlog bench``'s, through the
local-cluster launcher: fsync on, data in a new temporary directory deleted afterwards, every
node founding the cluster with ``--init-shards SHARDS``; one shard starts the nodes exactly as
before sharding), 64 concurrent single-message appenders of 100 bytes over 64 sessions on one
client (``quorumlog.client.cli.bench.drive``, the load loop of ``quorumlog bench``), and each
node process's user + system CPU seconds (``/proc/<pid>/stat``) read when the measured
window opens and when it closes. Reports per layout: throughput (msg/s), the busiest node's
CPU seconds per 1,000 acknowledged messages and the sum over all nodes, the implied ceiling
(one core per node process divided by the busiest node's CPU per message, msg/s), and each of
those relative to the first layout. Must never: leave a node running or its data behind
(stopped on success, error, Ctrl-C and SIGTERM), or run without a time bound.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.processes import cpu_seconds, load_average, report_of
from quorumlog.client import errors
from quorumlog.client.cli import CliError
from quorumlog.client.cli.bench import Settings, drive
from quorumlog.client.cli.bench import local_cluster as bench_cluster
from quorumlog.client.sdk import AsyncClient
from quorumlog.node.process.launcher import MAX_NODES, Launcher
from quorumlog.proto.sharding import MAX_SHARDS

CONCURRENCY = 64
SESSIONS = 64
SIZE = 100
CALL_DEADLINE = 5.0
READY_TIMEOUT = 90.0
MAX_SECONDS = 600.0


@dataclass(frozen=True)
class Layout:
    nodes: int
    shards: int

    @property
    def name(self) -> str:
        return f"{self.nodes}x{self.shards}"


LAYOUTS = (Layout(3, 1), Layout(3, 6), Layout(6, 6))


def log(line: str) -> None:
    print(f"scale-out: {line}", file=sys.stderr, flush=True)


def parse_layouts(text: str) -> list[Layout]:
    """``"3x1,3x6"`` -> layouts; ValueError with the reason otherwise."""
    layouts = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        nodes, sep, shards = item.partition("x")
        if not sep or not nodes.isdigit() or not shards.isdigit():
            raise ValueError(f"{item!r} is not NODESxSHARDS (e.g. 3x6)")
        layout = Layout(int(nodes), int(shards))
        if not 1 <= layout.nodes <= MAX_NODES or not 1 <= layout.shards <= MAX_SHARDS:
            raise ValueError(f"{item!r}: 1 to {MAX_NODES} nodes and 1 to {MAX_SHARDS} shards")
        layouts.append(layout)
    if not layouts:
        raise ValueError("no layout given")
    return layouts


# -- figures ---------------------------------------------------------------------------------


def cpu_of(pids: Mapping[str, int]) -> dict[str, float | None]:
    """Each node's CPU seconds so far (None when its process is gone)."""
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def figures(messages: int, seconds: float, before: Mapping[str, float | None],
            after: Mapping[str, float | None]) -> dict[str, Any]:
    """CPU per 1,000 acknowledged messages (busiest node, all nodes) and the ceiling it
    implies: one core per node process over the busiest node's CPU per message."""
    used = {name: round(end - start, 3) for name, start in before.items()
            if start is not None and (end := after.get(name)) is not None}
    if messages <= 0 or not used or len(used) < len(before):
        raise CliError(f"nothing to measure: {messages} messages acknowledged, CPU read for "
                       f"{sorted(used)} of {sorted(before)}", code=1)
    busiest = max(used, key=lambda name: used[name])
    busiest_cpu = max(used[busiest], 1e-9)
    return {
        "node_cpu_s": used,
        "node_cpu_fraction": {name: round(value / seconds, 3) for name, value in used.items()},
        "busiest_node": busiest,
        "busiest_cpu_s_per_1000": round(busiest_cpu / messages * 1000, 4),
        "total_cpu_s_per_1000": round(sum(used.values()) / messages * 1000, 4),
        "ceiling_messages_per_second": round(messages / busiest_cpu, 1),
    }


def _ratio(value: float, base: float) -> float | None:
    return round(value / base, 3) if base > 0 else None


def versus_first(rows: Sequence[dict[str, Any]]) -> None:
    """Add to every row its figures relative to the first layout's (the floors' terms)."""
    base = rows[0]
    for row in rows:
        row["versus_first"] = {key: _ratio(row[key], base[key]) for key in (
            "messages_per_second", "busiest_cpu_s_per_1000", "total_cpu_s_per_1000",
            "ceiling_messages_per_second")}


# -- the runs --------------------------------------------------------------------------------


def settings_for(duration: float, warmup: float) -> Settings:
    return Settings(
        concurrency=CONCURRENCY, batch=1, size=SIZE, sessions=SESSIONS, duration=duration,
        warmup=warmup, deadline=CALL_DEADLINE, ready_timeout=READY_TIMEOUT, seed=1,
        progress=False,
    )


async def measure(cluster: Launcher, settings: Settings) -> dict[str, Any]:
    """The load on ``cluster``, with each node's CPU over exactly the measured window."""
    pids = cluster.pids()
    payload = os.urandom(SIZE)
    sessions = [f"scale-{i}" for i in range(settings.sessions)]
    before: dict[str, float | None] = {}
    client_before: list[float | None] = []
    async with AsyncClient(cluster.client_addrs, deadline=CALL_DEADLINE, seed=1) as client:

        async def opened() -> None:
            before.update(cpu_of(pids))
            client_before.append(cpu_seconds(os.getpid()))

        async def append(session: str) -> object:
            return await client.append(session, payload)

        measured = await drive(append, sessions, settings, failures=(errors.QuorumLogError,),
                               at_measure_start=opened)
        after = cpu_of(pids)
        client_after = cpu_seconds(os.getpid())
    messages = measured.totals.messages
    row = {**measured.summary(SIZE),
           **figures(messages, measured.elapsed, before, after)}
    if client_before and client_before[0] is not None and client_after is not None:
        row["client_cpu_s_per_1000"] = round(
            (client_after - client_before[0]) / max(messages, 1) * 1000, 4)
    return row


def run_layout(layout: Layout, settings: Settings, data_root: Path | None) -> dict[str, Any]:
    """One layout's cluster, started, measured and stopped (its data deleted)."""
    load_before = load_average()
    shards = None if layout.shards == 1 else layout.shards  # one shard: today's command
    root = Path(tempfile.mkdtemp(prefix=f"quorumlog-scale-out-{layout.name}-", dir=data_root))
    try:
        with bench_cluster(layout.nodes, root, [], ready_timeout=READY_TIMEOUT,
                           shards=shards) as (cluster, leader):
            log(f"{layout.name}: {layout.nodes} nodes (pids "
                f"{sorted(cluster.pids().values())}), {layout.shards} shard(s), leader "
                f"{leader}; measuring {settings.duration:g} s")
            row = asyncio.run(measure(cluster, settings))
            dead = cluster.dead()
            if dead:
                raise CliError(f"{layout.name}: node(s) {', '.join(dead)} exited during the "
                               "run", code=1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    row.update(layout=layout.name, nodes=layout.nodes, shards=layout.shards,
               load_before=load_before, load_after=load_average())
    log(f"{layout.name}: {row['messages_per_second']:,.0f} msg/s, busiest node "
        f"{row['busiest_node']} {row['busiest_cpu_s_per_1000']:.3f} CPU s per 1,000, all nodes "
        f"{row['total_cpu_s_per_1000']:.3f}, ceiling {row['ceiling_messages_per_second']:,.0f}"
        f" msg/s (load {row['load_after']})")
    return row


def run(layouts: Sequence[Layout], duration: float, warmup: float,
        data_root: Path | None) -> dict[str, Any]:
    settings = settings_for(duration, warmup)
    load_start = load_average()
    rows = [run_layout(layout, settings, data_root) for layout in layouts]
    versus_first(rows)
    return {
        "concurrency": CONCURRENCY, "sessions": SESSIONS, "size": SIZE, "batch": 1,
        "duration_s": duration, "warmup_s": warmup, "cores": os.cpu_count(),
        "layouts": rows, "load_start": load_start, "load_end": load_average(),
    }


def human(report: dict[str, Any]) -> str:
    header = (f"{'layout':<7} {'msg/s':>9} {'busiest':>8} {'CPU s/1k busiest':>17} "
              f"{'CPU s/1k all':>13} {'ceiling msg/s':>14}  vs first: msg/s, busiest, all, "
              "ceiling")
    lines = [
        f"scale-out: {report['concurrency']} concurrent appenders, {report['sessions']} "
        f"sessions, {report['size']}-byte messages, {report['duration_s']:g} s per layout "
        f"after {report['warmup_s']:g} s warmup; {report['cores']} cores",
        header, "-" * len(header),
    ]
    for row in report["layouts"]:
        versus = row["versus_first"]
        relative = ", ".join("n/a" if versus[key] is None else f"{versus[key]:.2f}x" for key in (
            "messages_per_second", "busiest_cpu_s_per_1000", "total_cpu_s_per_1000",
            "ceiling_messages_per_second"))
        errors_seen = sum(row["errors"].values())
        lines.append(
            f"{row['layout']:<7} {row['messages_per_second']:>9,.0f} {row['busiest_node']:>8} "
            f"{row['busiest_cpu_s_per_1000']:>17.3f} {row['total_cpu_s_per_1000']:>13.3f} "
            f"{row['ceiling_messages_per_second']:>14,.0f}  {relative}"
            + (f"  errors {errors_seen}" if errors_seen else ""))
    lines.append("ceiling: one core per node process / the busiest node's CPU per message; "
                 f"load average at start {report['load_start']}, at end {report['load_end']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_out",
                                     description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--layouts", default=",".join(layout.name for layout in LAYOUTS),
                        help="comma-separated NODESxSHARDS (default 3x1,3x6,6x6)")
    parser.add_argument("--duration", type=float, default=8.0,
                        help="measured seconds per layout (default 8)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of load before measuring (default 1)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="parent of each layout's data directory (default: $TMPDIR)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= MAX_SECONDS or not 0 <= args.warmup <= MAX_SECONDS:
        parser.error(f"--duration must be in (0, {MAX_SECONDS:g}] and --warmup in "
                     f"[0, {MAX_SECONDS:g}]")
    try:
        layouts = parse_layouts(args.layouts)
    except ValueError as error:
        parser.error(f"--layouts: {error}")
    return report_of("scale-out",
                     lambda: run(layouts, args.duration, args.warmup, args.data_root),
                     as_json=args.json, human=human)


if __name__ == "__main__":
    raise SystemExit(main())
