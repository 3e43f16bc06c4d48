"""Leader failover: kill -9 the leader, time until the next append succeeds; N trials.

Usage: ``python -m benchmarks.failover [--trials 10] [--node-arg=--tick-ms=50 ...] [--json]``.

Owns: a 3-node quorumlog cluster on free loopback ports (fsync on, data in a temporary
directory), a steady trickle of appends from one SDK client, and per trial: find the leader,
``SIGKILL`` it, time from the kill to the first append that succeeds afterwards (the SDK
retries it: leader discovery and backoff are part of the figure), restart the killed node on
its data and wait until all three are in the cluster again (the leader sees every follower
caught up). Reports every trial, the median, min and max. Must never: leave a node running or
its data behind, or run unbounded (trials, each wait and the whole run have deadlines).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.processes import load_average, local_cluster, report_of
from quorumlog.client import errors
from quorumlog.client.cli import CliError
from quorumlog.client.retry import RetryPolicy
from quorumlog.client.sdk import AsyncClient
from quorumlog.node.process.launcher import Launcher

READY_TIMEOUT = 60.0
APPEND_DEADLINE = 30.0  # one append may wait this long for a new leader, retries included
SESSION = "failover"


def log(line: str) -> None:
    print(f"failover: {line}", file=sys.stderr, flush=True)


async def wait_healthy(client: AsyncClient, members: int, timeout: float) -> str:
    """The leader's id, once every member answers and the leader sees each one caught up."""
    deadline = time.monotonic() + timeout
    while True:
        status = await client.cluster_status(deadline=2.0)
        leader = status.leader
        if leader is not None and leader.status is not None and len(status.reachable) == members:
            followers = leader.status.followers
            if len(followers) == members - 1 and all(
                f.state == "replicate" and f.lag == 0 for f in followers
            ):
                return leader.status.id
        if time.monotonic() >= deadline:
            seen = [(n.address, n.status.role, n.status.leader, n.status.applied_index)
                    if n.status else (n.address, str(n.error)) for n in status.nodes]
            followers = leader.status.followers if leader and leader.status else []
            raise CliError(f"cluster not healthy within {timeout:g} s: {seen} {followers}",
                           code=1)
        await asyncio.sleep(0.05)  # polling interval of a deadline-bounded wait


async def trial(cluster: Launcher, client: AsyncClient) -> dict[str, Any]:
    leader_id = await wait_healthy(client, len(cluster.nodes), READY_TIMEOUT)
    await client.append(SESSION, b"before", deadline=APPEND_DEADLINE)  # client knows the leader
    load = load_average()
    killed_at = time.monotonic()
    cluster.signal(leader_id, signal.SIGKILL)
    attempts = 0
    for _ in range(10**6):  # bounded by APPEND_DEADLINE per append as well
        attempts += 1
        try:
            await client.append(SESSION, b"after", deadline=APPEND_DEADLINE)
            break
        except errors.QuorumLogError as error:
            if time.monotonic() - killed_at > APPEND_DEADLINE:
                raise CliError(f"no append succeeded within {APPEND_DEADLINE:g} s: {error}",
                               code=1) from None
    seconds = time.monotonic() - killed_at
    cluster.kill([leader_id], timeout=10)  # reaps it
    cluster.start([leader_id])
    new_leader = await wait_healthy(client, len(cluster.nodes), READY_TIMEOUT)
    return {"killed": leader_id, "new_leader": new_leader, "seconds": round(seconds, 3),
            "sdk_calls": attempts, "load": load}


async def run_trials(cluster: Launcher, trials: int, retry: RetryPolicy
                     ) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    async with AsyncClient(cluster.client_addrs, deadline=APPEND_DEADLINE, seed=1,
                           retry=retry) as client:
        for number in range(trials):
            result = await trial(cluster, client)
            log(f"trial {number + 1}: {result['killed']} killed, {result['new_leader']} leads, "
                f"first append after {result['seconds']:.3f} s (load {result['load']})")
            results.append(result)
    return results


def summarize(results: list[dict[str, Any]]) -> dict[str, float | None]:
    seconds = [result["seconds"] for result in results]
    if not seconds:
        return {"median_s": None, "min_s": None, "max_s": None}
    return {"median_s": round(statistics.median(seconds), 3), "min_s": min(seconds),
            "max_s": max(seconds)}


def run(trials: int, extra: list[str], data_root: Path | None,
        retry: RetryPolicy | None = None) -> dict[str, Any]:
    retry = retry or RetryPolicy()
    load_start = load_average()
    with local_cluster("quorumlog-failover-", data_root, extra) as cluster:
        results = asyncio.run(run_trials(cluster, trials, retry))
    return {"trials": results, **summarize(results), "node_args": extra,
            "client_max_backoff_s": retry.max_backoff,
            "load_start": load_start, "load_end": load_average(),
            "pids": cluster.started_pids}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.failover",
                                     description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--trials", type=int, default=10, help="kills (default 10, max 100)")
    parser.add_argument("--node-arg", action="append", default=[],
                        help="extra flag for every node, e.g. --node-arg=--tick-ms=50")
    parser.add_argument("--max-backoff", type=float, default=None,
                        help="the SDK's retry backoff cap in seconds (default: the SDK's)")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 1 <= args.trials <= 100:
        parser.error("--trials must be between 1 and 100")
    retry = RetryPolicy() if args.max_backoff is None else RetryPolicy(
        max_backoff=args.max_backoff)
    return report_of(
        "failover", lambda: run(args.trials, list(args.node_arg), args.data_root, retry),
        as_json=args.json,
        human=lambda report: (
            f"leader kill -9 -> first successful append, {len(report['trials'])} trials: "
            f"median {report['median_s']} s, min {report['min_s']} s, max {report['max_s']} s"
            f" (load {report['load_start']} -> {report['load_end']})"))


if __name__ == "__main__":
    raise SystemExit(main())
