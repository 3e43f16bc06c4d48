"""A cluster holding 10 million messages: node memory, and restart to serving at that size.

Usage: ``python -m benchmarks.large_state [--messages 10000000] [--batch 2000]
[--concurrency 16] [--data-root /tmp] [--json]``.

Owns: a 3-node quorumlog cluster (fsync on) with its data under a temporary directory in
``--data-root``; loading ``--messages`` random 100-byte messages in big appends (SDK, many
sessions, ``--concurrency`` appends in flight) while sampling every node's resident memory
(``VmRSS``); then (1) stopping one follower and timing its restart until it serves (answers
status with a leader and has applied the leader's commit index), (2) the same after kill -9,
and (3) stopping the whole cluster and timing its restart until an append succeeds; RSS after
each. Must never: run unbounded (``--time-limit`` caps the load; every wait has a deadline),
leave a node running, or leave its data behind (deleted at exit, also on error or Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.processes import load_average, local_cluster, report_of
from quorumlog.client import errors
from quorumlog.client.cli import CliError
from quorumlog.client.sdk import AsyncClient
from quorumlog.node.process.launcher import Launcher, LocalNode

READY_TIMEOUT = 120.0
SIZE = 100
SAMPLE_SECONDS = 2.0


def log(line: str) -> None:
    print(f"large-state: {line}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MB (10^6 bytes), None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) * 1024 / 1e6, 1)
    except OSError:
        return None
    return None


def node_rss(cluster: Launcher) -> dict[str, float | None]:
    pids = cluster.pids()
    return {name: rss_mb(pids[name]) if name in pids else None for name in cluster.nodes}


def data_root(cluster: Launcher) -> Path:
    """The directory holding every node's data directory (and so its log)."""
    return next(iter(cluster.nodes.values())).data_dir.parent


def du_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6, 1)


async def load(client: AsyncClient, cluster: Launcher, total: int, *, batch: int,
               concurrency: int, time_limit: float) -> dict[str, Any]:
    rng = random.Random(1)
    payloads = [rng.randbytes(SIZE) for _ in range(batch)]
    written = 0
    peak: dict[str, float] = {}
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    stop_at = started + time_limit

    async def worker(index: int) -> None:
        nonlocal written
        session = f"large-{index}"
        while written < total and time.monotonic() < stop_at:
            await client.append(session, *payloads)
            written += batch

    async def sampler() -> None:
        next_mark = 1_000_000
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)  # sampling period, not a wait for an event
            rss = node_rss(cluster)
            for name, value in rss.items():
                if value is not None:
                    peak[name] = max(peak.get(name, 0.0), value)
            if written >= next_mark:
                samples.append({"messages": written, "rss_mb": rss,
                                "seconds": round(time.monotonic() - started, 1),
                                "load": load_average()})
                log(f"{written:,} messages, {written / (time.monotonic() - started):,.0f}/s, "
                    f"RSS {rss} MB, load {load_average()}")
                next_mark = (written // 1_000_000 + 1) * 1_000_000

    sampling = asyncio.create_task(sampler())
    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        sampling.cancel()
    seconds = time.monotonic() - started
    if written < total:
        raise CliError(f"loaded only {written:,} of {total:,} messages in {time_limit:g} s",
                       code=1)
    return {"messages": written, "seconds": round(seconds, 1),
            "messages_per_second": round(written / seconds), "peak_rss_mb": peak,
            "samples": samples}


async def serving(client: AsyncClient, member: LocalNode, commit: int, timeout: float) -> None:
    """Wait until ``member`` answers status with a leader and has applied ``commit``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = await client.node_status(member.client_addr, deadline=1.0)
            if status.leader and status.applied_index >= commit:
                return
        except errors.QuorumLogError:
            pass
        if time.monotonic() >= deadline:
            raise CliError(f"{member.name} not serving within {timeout:g} s", code=1)
        await asyncio.sleep(0.01)  # polling interval of a deadline-bounded wait


async def restart_follower(client: AsyncClient, cluster: Launcher, kill: bool
                           ) -> dict[str, Any]:
    status = await client.cluster_status(deadline=5.0)
    leader = status.leader
    if leader is None or leader.status is None:
        raise CliError("no leader before the restart", code=1)
    member = next(node for name, node in cluster.nodes.items() if name != leader.status.id)
    pid = cluster.pid(member.name)
    assert pid is not None
    rss_before = rss_mb(pid)
    if kill:
        cluster.kill([member.name], timeout=30)
    else:
        cluster.stop([member.name], timeout=30)
    commit = (await client.node_status(leader.address, deadline=5.0)).commit_index
    started, wall = time.monotonic(), time.time()
    cluster.start([member.name])
    await serving(client, member, commit, READY_TIMEOUT)
    seconds = time.monotonic() - started
    pid = cluster.pid(member.name)
    return {"node": member.name, "how": "kill -9" if kill else "SIGTERM",
            "restart_to_serving_s": round(seconds, 3), "rss_before_mb": rss_before,
            "rss_after_mb": rss_mb(pid) if pid is not None else None, "load": load_average(),
            "phases": startup_phases(member, wall)}


def startup_phases(member: LocalNode, since: float) -> dict[str, float | None]:
    """Seconds from ``since`` (wall clock) to the node's first log line (imports done, data
    open), to serving its ports, and to leading, from its JSON log."""
    phases: dict[str, float | None] = {"first_log_s": None, "serving_s": None,
                                        "follows_s": None, "leader_s": None}
    with contextlib.suppress(OSError):
        for line in member.log_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
                at, message = float(record["ts"]) - since, str(record.get("msg", ""))
            except (ValueError, KeyError, TypeError):
                continue
            if at < 0:
                continue
            for key, needle in (("first_log_s", ""), ("serving_s", "serving clients"),
                                ("follows_s", "role follower, leader n"),
                                ("leader_s", "became leader")):
                if phases[key] is None and needle in message:
                    phases[key] = round(at, 3)
    return phases


async def restart_cluster(addresses: list[str], cluster: Launcher) -> dict[str, Any]:
    cluster.stop()  # SIGTERM all, clean shutdown
    started, wall = time.monotonic(), time.time()
    cluster.start()
    async with AsyncClient(addresses, deadline=READY_TIMEOUT) as client:
        await client.append("large-after-restart", b"x")
        seconds = time.monotonic() - started
        read = await client.read("large-0", from_offset=0, limit=10)
    return {"restart_to_first_append_s": round(seconds, 3), "rss_mb": node_rss(cluster),
            "first_read_ok": len(read.records) == 10, "load": load_average(),
            "phases": {name: startup_phases(node, wall) for name, node in cluster.nodes.items()}}


async def measure(cluster: Launcher, args: argparse.Namespace) -> dict[str, Any]:
    async with AsyncClient(cluster.client_addrs, deadline=60.0) as client:
        loaded = await load(client, cluster, args.messages, batch=args.batch,
                            concurrency=args.concurrency, time_limit=args.time_limit)
        log(f"loaded {loaded['messages']:,} messages in {loaded['seconds']} s")
        rss_loaded = node_rss(cluster)
        follower_term = await restart_follower(client, cluster, kill=False)
        log(f"follower restart (SIGTERM): {follower_term}")
        follower_kill = await restart_follower(client, cluster, kill=True)
        log(f"follower restart (kill -9): {follower_kill}")
    whole = await restart_cluster(cluster.client_addrs, cluster)
    log(f"cluster restart: {whole}")
    return {"load": loaded, "rss_after_load_mb": rss_loaded,
            "follower_restart": [follower_term, follower_kill], "cluster_restart": whole,
            "data_mb": du_mb(data_root(cluster))}


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_start = load_average()
    with local_cluster("quorumlog-large-", args.data_root) as cluster:
        report = asyncio.run(measure(cluster, args))
    return {**report, "load_start": load_start, "load_end": load_average(),
            "pids": cluster.started_pids}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.large_state",
                                     description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--messages", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=2000, help="messages per append")
    parser.add_argument("--concurrency", type=int, default=16, help="appends in flight")
    parser.add_argument("--time-limit", type=float, default=1800.0,
                        help="seconds the load may take at most (default 1800)")
    parser.add_argument("--data-root", type=Path, default=Path("/tmp"))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= 10_000 or not 1 <= args.concurrency <= 1000 or args.messages < 1:
        parser.error("--batch must be 1..10000, --concurrency 1..1000, --messages positive")
    return report_of("large-state", lambda: run(args), as_json=args.json,
                     human=lambda report: json.dumps(report, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
