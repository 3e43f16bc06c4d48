"""``quorumlog bench``: a bounded load generator against a cluster.

Usage: ``quorumlog bench [--cluster ADDRS | --local N] [--concurrency C] [--batch B]
[--size BYTES] [--sessions S] [--duration SECONDS] [--json]`` (plus ``--warmup``, ``--seed``,
``--metrics ADDRS``, ``--progress``, ``--data-dir``, ``--deadline``, ``--ready-timeout``, and
with ``--local`` ``--shards S``).

Owns: C worker tasks on one :class:`AsyncClient`, each with one append in flight at a time,
appending B messages of SIZE bytes per call to sessions ``bench-<i>`` chosen round-robin among
S; stopping by itself after ``--warmup`` + ``--duration``; per-call latency in a fixed-size
reservoir (bounded memory); a single-line progress bar on stderr (when stderr is a TTY or
``--progress``); the report (messages/s, MB/s with MB = 10^6 payload bytes, appends/s, latency
percentiles in ms, errors by type) on stdout, or one JSON object with ``--json``; the nodes'
write-path figures from their Prometheus ``/metrics`` scraped before and after the measured
interval (``quorumlog.client.cli.bench_metrics``); with ``--local N``,
N nodes on free loopback ports with their own metrics endpoints through the local-cluster
launcher (``quorumlog.node.process.launcher``; ``--shards S`` data shards), a wait until every
node knows the leader and every shard has one, and every node stopped (SIGTERM, then SIGKILL
after a timeout) on success, error, Ctrl-C or SIGTERM.

Must never: leave a node process behind, run without a time bound, hold every latency sample
in memory, or retry on its own (the SDK retries each append until its deadline).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from quorumlog.client import errors
from quorumlog.client.cli import CliError
from quorumlog.client.cli import common as cli_common
from quorumlog.client.cli.bench_metrics import node_figures, scrape_all
from quorumlog.client.sdk import AsyncClient
from quorumlog.client.tls import ClientSecurity, sync_channel
from quorumlog.node.process import launcher
from quorumlog.node.process.launcher import Launcher, NodeExited, NoLeader, plan
from quorumlog.proto.sharding import MAX_SHARDS

RESERVOIR_SIZE = 100_000
PROGRESS_INTERVAL = 0.5
ERROR_PAUSE = 0.01  # after a failed append, so a fast-failing cluster is not spun on
MAX_LOCAL_NODES = launcher.MAX_NODES
MAX_SIZE = 4 * 1024 * 1024


# -- arguments ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("target (one of)")
    target.add_argument("--cluster", metavar="ADDRS", default=None,
                        help="comma-separated node client addresses of a running cluster "
                        f"(default: ${cli_common.CLUSTER_ENV}, else {cli_common.DEFAULT_CLUSTER})")
    target.add_argument("--local", metavar="N", default=None,
                        help="start N local nodes for the run and stop them afterwards")
    parser.add_argument("--metrics", metavar="ADDRS", default=None,
                        help="with --cluster: comma-separated HOST:PORT metrics endpoints")
    parser.add_argument("--concurrency", metavar="C", default=None,
                        help="concurrent workers, one append in flight each (default 16)")
    parser.add_argument("--batch", metavar="B", default=None,
                        help="messages per append call (default 1)")
    parser.add_argument("--size", metavar="BYTES", default=None,
                        help="bytes per message (default 100)")
    parser.add_argument("--sessions", metavar="S", default=None,
                        help="sessions bench-0..bench-<S-1>, round-robin (default 16)")
    parser.add_argument("--duration", metavar="SECONDS", default=None,
                        help="measured seconds (default 10)")
    parser.add_argument("--warmup", metavar="SECONDS", default=None,
                        help="seconds of load before measuring (default 0)")
    parser.add_argument("--deadline", metavar="SECONDS", default=None,
                        help="deadline of each append, retries included (default 5)")
    parser.add_argument("--ready-timeout", metavar="SECONDS", default=None,
                        help="seconds to wait for a leader (default 30)")
    parser.add_argument("--seed", metavar="N", default=None,
                        help="seed for payloads and the latency reservoir")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="with --local: keep node data and logs here (default: a "
                        "temporary directory, removed afterwards)")
    parser.add_argument("--node-arg", action="append", default=[],
                        help="with --local: extra flag for every node (repeatable)")
    parser.add_argument("--shards", metavar="S", default=None,
                        help="with --local: data shards (Raft groups) of the new cluster "
                        "(default 1)")
    parser.add_argument("--rate", metavar="MSGS_PER_S", default=None,
                        help="open loop: offer this many messages/s in total, each call "
                        "timed from its scheduled start (default: as fast as possible)")
    parser.add_argument("--progress", action="store_true",
                        help="show the progress bar even when stderr is not a terminal")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    cli_common.add_security_arguments(parser)  # with --local: the nodes use --tls-dir too


def _seconds(name: str, text: str | None, default: float, *, positive: bool = True,
             maximum: float = 86400.0) -> float:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise CliError(f"{name} must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or not 0 <= value <= maximum or (positive and value == 0):
        low = "positive" if positive else "at least 0"
        raise CliError(f"{name} must be {low} and at most {maximum:g}, got {text!r}")
    return value


@dataclass(frozen=True)
class Settings:
    concurrency: int
    batch: int
    size: int
    sessions: int
    duration: float
    warmup: float
    deadline: float
    ready_timeout: float
    seed: int | None
    progress: bool
    security: ClientSecurity | None = None  # --tls-dir / --token
    rate: float | None = None  # --rate: offered messages/s (open loop), None: closed loop


def settings_of(args: argparse.Namespace) -> Settings:
    if args.cluster is not None and args.local is not None:
        raise CliError("give either --cluster or --local, not both")
    if args.local is not None and args.metrics is not None:
        raise CliError("--metrics is for --cluster; --local scrapes its own nodes")
    if args.local is None and (args.data_dir is not None or args.node_arg
                               or args.shards is not None):
        raise CliError("--data-dir, --node-arg and --shards need --local")
    integer = cli_common.integer
    concurrency = integer("--concurrency", args.concurrency, minimum=1, default=16)
    batch = integer("--batch", args.batch, minimum=1, default=1)
    size = integer("--size", args.size, minimum=0, default=100)
    sessions = integer("--sessions", args.sessions, minimum=1, default=16)
    if concurrency > 10_000:
        raise CliError(f"--concurrency must be at most 10000, got {concurrency}")
    if batch > 10_000:
        raise CliError(f"--batch must be at most 10000, got {batch}")
    if size > MAX_SIZE:
        raise CliError(f"--size must be at most {MAX_SIZE}, got {size}")
    if sessions > 100_000:
        raise CliError(f"--sessions must be at most 100000, got {sessions}")
    seed = None if args.seed is None else integer("--seed", args.seed, minimum=0, default=0)
    return Settings(
        concurrency=concurrency,
        batch=batch,
        size=size,
        sessions=sessions,
        duration=_seconds("--duration", args.duration, 10.0),
        warmup=_seconds("--warmup", args.warmup, 0.0, positive=False),
        deadline=_seconds("--deadline", args.deadline, 5.0, maximum=3600.0),
        ready_timeout=_seconds("--ready-timeout", args.ready_timeout, 30.0, maximum=3600.0),
        seed=seed,
        progress=bool(args.progress) or sys.stderr.isatty(),
        security=cli_common.security_of(args),
        rate=None if args.rate is None else _rate(args.rate),
    )


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CliError(f"--rate must be a number of messages per second, got {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= 10_000_000:
        raise CliError(f"--rate must be positive and at most 10000000, got {text!r}")
    return value


# -- latency -----------------------------------------------------------------------------------


class Reservoir:
    """A uniform sample of at most ``capacity`` values (algorithm R) plus the exact max."""

    def __init__(self, capacity: int, rng: random.Random) -> None:
        self.capacity = capacity
        self.samples: list[float] = []
        self.count = 0
        self.max = 0.0
        self._rng = rng

    def add(self, value: float) -> None:
        self.count += 1
        self.max = max(self.max, value)
        if len(self.samples) < self.capacity:
            self.samples.append(value)
            return
        slot = self._rng.randrange(self.count)
        if slot < self.capacity:
            self.samples[slot] = value

    def percentiles(self) -> dict[str, float | None]:
        ordered = sorted(self.samples)

        def rank(fraction: float) -> float | None:
            if not ordered:
                return None
            index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
            return round(ordered[index] * 1000.0, 3)

        return {
            "p50": rank(0.50),
            "p90": rank(0.90),
            "p99": rank(0.99),
            "p999": rank(0.999),
            "max": round(self.max * 1000.0, 3) if ordered else None,
        }


# -- local cluster -----------------------------------------------------------------------------


def wait_ready(cluster: Launcher, timeout: float) -> str:
    """The first leader every node knows; a node exiting first, or no leader within
    ``timeout``, is one error line (the node's last log line says why it exited)."""
    try:
        return cluster.wait_ready(timeout, interval=0.1, probe_timeout=0.5)
    except NodeExited as exited:
        last = next((line.strip()[:200] for line in reversed(cluster.log_tail(exited.name, 50))
                     if line.strip()), "")
        raise CliError(f"node {exited.name} exited with status {exited.returncode}"
                       + (f": {last}" if last else ""), code=1) from None
    except NoLeader:
        raise CliError(f"no leader elected within {timeout:g} s", code=1) from None


@contextlib.contextmanager
def local_cluster(
    nodes: int, data_dir: Path | None, node_args: Sequence[str], *, ready_timeout: float,
    security: ClientSecurity | None = None, temp_prefix: str = "quorumlog-bench-",
    shards: int | None = None,
) -> Iterator[tuple[Launcher, str]]:
    """``nodes`` nodes on free loopback ports, each with a metrics endpoint, data under
    ``data_dir`` (default: a new temporary directory, removed afterwards), founding a cluster
    of ``shards`` data shards (None: the node's default), started and with a leader (and every
    shard with one): (the launcher, that leader). Every node is stopped on leaving, however
    it is left (``security``: how the readiness probes connect, for ``--tls-dir``)."""
    if nodes > MAX_LOCAL_NODES:
        raise CliError(f"--local must be at most {MAX_LOCAL_NODES}, got {nodes}")
    root = Path(tempfile.mkdtemp(prefix=temp_prefix)) if data_dir is None else data_dir
    try:
        with Launcher(plan(nodes, root, metrics=True, shards=shards), node_args=node_args,
                      channel=functools.partial(sync_channel, security=security)) as cluster:
            cluster.start()
            yield cluster, wait_ready(cluster, ready_timeout)
    finally:
        if data_dir is None:
            shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so cleanup runs as it does on Ctrl-C; and SIGINT is
    Ctrl-C even when this process started with it ignored (a background job of a
    non-interactive shell inherits SIGINT ignored, and a Ctrl-C sent to it did nothing)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    # Our handler for SIGINT too, not ``default_int_handler``: with that one asyncio.run (3.11)
    # installs its own, which cancels the main task, and a Ctrl-C landing at the wrong moment
    # ended the run with CancelledError (exit 1) instead of KeyboardInterrupt (exit 130, after
    # cleanup): tests/test_benchmarks.py failed once in ~7 full runs.
    previous_int = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


# -- load --------------------------------------------------------------------------------------


@dataclass
class Totals:
    appends: int = 0
    messages: int = 0
    errors: Counter[str] = field(default_factory=Counter)


def _progress_line(elapsed: float, total: float, totals: Totals, warmup: float) -> str:
    width = 30
    fraction = min(1.0, elapsed / total) if total > 0 else 1.0
    filled = int(fraction * width)
    bar = "#" * filled + "-" * (width - filled)
    measured = max(elapsed - warmup, 1e-9)
    rate = totals.messages / measured if elapsed > warmup else 0.0
    phase = "warmup" if elapsed < warmup else "bench"
    errors_text = f"  errors {sum(totals.errors.values())}" if totals.errors else ""
    return (f"\r{phase} [{bar}] {min(elapsed, total):5.1f}/{total:.1f} s  "
            f"{totals.messages} msgs  {rate:,.0f} msgs/s{errors_text}")


@dataclass
class Measured:
    """What :func:`drive` counted over the measured interval."""

    totals: Totals
    reservoir: Reservoir
    elapsed: float
    per_call: int

    def summary(self, size: int) -> dict[str, Any]:
        """The rate and latency keys every bench report shares."""
        totals, elapsed = self.totals, self.elapsed
        return {
            "messages": totals.messages,
            "appends": totals.appends,
            "messages_per_second": round(totals.messages / elapsed, 1),
            "mb_per_second": round(totals.messages * size / elapsed / 1e6, 3),
            "appends_per_second": round(totals.appends / elapsed, 1),
            "latency_ms": self.reservoir.percentiles(),
            "errors": dict(sorted(totals.errors.items())),
            "duration_s": round(elapsed, 3),
        }


async def drive(
    call: Callable[[str], Awaitable[object]],
    keys: list[str],
    settings: Settings,
    *,
    failures: tuple[type[BaseException], ...],
    at_measure_start: Callable[[], Awaitable[None]] | None = None,
) -> Measured:
    """C workers, each awaiting ``call(key)`` (one call in flight, keys round-robin) until
    ``warmup`` + ``duration`` is over; ``failures`` are counted by type name, not raised.
    ``at_measure_start`` runs once as measuring begins (a metrics scrape). With
    ``settings.rate`` each worker starts its calls on a fixed schedule (staggered between
    workers) and a call's latency counts from its scheduled start, so a backlog shows up in
    the latency instead of silently lowering the offered load (coordinated omission)."""
    loop = asyncio.get_running_loop()
    reservoir = Reservoir(RESERVOIR_SIZE, random.Random(settings.seed))
    totals = Totals()
    if settings.warmup <= 0 and at_measure_start is not None:
        await at_measure_start()
    started = loop.time()
    measure_start = started + settings.warmup
    end = measure_start + settings.duration

    interval = None if settings.rate is None else (
        settings.concurrency * settings.batch / settings.rate)  # between one worker's calls

    async def worker(index: int) -> None:
        turn = index
        scheduled = started + (0.0 if interval is None else interval * index
                               / settings.concurrency)
        # Bounded by time (``end``) and, as a backstop, by count.
        for _ in range(10**9):
            now = loop.time()
            if interval is not None:
                if scheduled > now:
                    await asyncio.sleep(scheduled - now)  # the open-loop schedule
                now = scheduled
                scheduled += interval
            if now >= end or loop.time() >= end:  # a backlog never outlasts the run
                return
            key = keys[turn % len(keys)]
            turn += 1
            begun = time.perf_counter() - (loop.time() - now)  # from the scheduled start
            try:
                await call(key)
            except failures as error:
                if now >= measure_start:
                    totals.errors[type(error).__name__] += 1
                await asyncio.sleep(ERROR_PAUSE)
                continue
            if now >= measure_start:
                reservoir.add(time.perf_counter() - begun)
                totals.appends += 1
                totals.messages += settings.batch

    async def progress() -> None:
        total = settings.warmup + settings.duration
        for _ in range(10**7):
            elapsed = loop.time() - started
            sys.stderr.write(_progress_line(elapsed, total, totals, settings.warmup))
            sys.stderr.flush()
            if elapsed >= total:
                return
            await asyncio.sleep(min(PROGRESS_INTERVAL, max(0.01, total - elapsed)))

    workers = [asyncio.create_task(worker(i)) for i in range(settings.concurrency)]
    progress_task = asyncio.create_task(progress()) if settings.progress else None
    try:
        if settings.warmup > 0 and at_measure_start is not None:
            await asyncio.sleep(settings.warmup)  # the warmup phase itself
            await at_measure_start()
        await asyncio.gather(*workers)
        finished = loop.time()
    finally:
        for task in workers:
            task.cancel()
        if progress_task is not None:
            progress_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress_task
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
    return Measured(totals, reservoir, max(finished - measure_start, 1e-9), settings.batch)


async def run_load(
    addresses: list[str],
    settings: Settings,
    metrics_addrs: list[str],
) -> dict[str, Any]:
    rng = random.Random(settings.seed)
    payloads = [rng.randbytes(settings.size) for _ in range(settings.batch)]
    sessions = [f"bench-{i}" for i in range(settings.sessions)]

    async with AsyncClient(
        addresses, deadline=settings.deadline, seed=settings.seed, security=settings.security
    ) as client:
        # Preflight: a clear error instead of C timed-out appends when nothing answers.
        status = await client.cluster_status(deadline=min(settings.deadline, 5.0))
        if not status.reachable:
            first = status.nodes[0].error if status.nodes else None
            raise CliError(
                f"no node reachable at {','.join(addresses)}"
                + (f" ({first})" if first is not None else ""),
                code=1,
            )
        before: list[dict[str, float] | None] = []

        async def scrape_before() -> None:
            before[:] = await asyncio.to_thread(scrape_all, metrics_addrs)

        async def append(session: str) -> None:
            await client.append(session, *payloads)

        measured = await drive(
            append, sessions, settings, failures=(errors.QuorumLogError,),
            at_measure_start=scrape_before if metrics_addrs else None,
        )
        after = await asyncio.to_thread(scrape_all, metrics_addrs) if metrics_addrs else []

    figures: dict[str, float | None] = {
        "entries_per_fsync": None, "entries_per_append_entries": None,
        "follower_entries_per_fsync": None, "empty_append_entries_fraction": None,
        "commands_per_entry": None,
    }
    if before and after:
        figures = node_figures(before, after)
    return {
        **measured.summary(settings.size),
        "warmup_s": settings.warmup,
        "concurrency": settings.concurrency,
        "batch": settings.batch,
        "size": settings.size,
        "sessions": settings.sessions,
        "rate": settings.rate,
        **figures,
    }


# -- report ------------------------------------------------------------------------------------


def _fmt(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return str(value)


def print_report(report: dict[str, Any]) -> None:
    latency = report["latency_ms"]
    lines = [
        f"target       {report['target']}",
        f"workload     concurrency {report['concurrency']}  batch {report['batch']}  "
        f"size {report['size']} B  sessions {report['sessions']}",
        f"duration     {report['duration_s']:.2f} s (after {report['warmup_s']:g} s warmup)",
        f"messages/s   {report['messages_per_second']:,.1f}  ({report['messages']} messages)",
        f"MB/s         {report['mb_per_second']:,.3f}",
        f"appends/s    {report['appends_per_second']:,.1f}  ({report['appends']} appends)",
        "latency ms   " + "  ".join(f"{key} {_fmt(latency[key])}"
                                    for key in ("p50", "p90", "p99", "p999", "max")),
        "errors       " + (", ".join(f"{name} {count}" for name, count in
                                     report["errors"].items()) or "none"),
        f"commands/entry (leader)         {_fmt(report['commands_per_entry'])}"
        "  (session batches per Raft entry)",
        f"entries/fsync (leader)          {_fmt(report['entries_per_fsync'])}",
        f"entries/fsync (followers)       {_fmt(report['follower_entries_per_fsync'])}",
        f"entries/AppendEntries (leader)  {_fmt(report['entries_per_append_entries'])}"
        f"  (empty AppendEntries: {_fmt(report['empty_append_entries_fraction'])} of all)",
    ]
    for line in lines:
        cli_common.print_line(line)


def run(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    local_nodes = None
    if args.local is not None:
        local_nodes = cli_common.integer("--local", args.local, minimum=1, default=3)
        if local_nodes > MAX_LOCAL_NODES:
            raise CliError(f"--local must be at most {MAX_LOCAL_NODES}, got {local_nodes}")
    shards = None
    if args.shards is not None:
        shards = cli_common.integer("--shards", args.shards, minimum=1, default=1)
        if shards > MAX_SHARDS:
            raise CliError(f"--shards must be at most {MAX_SHARDS}, got {shards}")
    with sigterm_as_interrupt():
        if local_nodes is None:
            addresses = [a.strip() for a in cli_common.cluster_addresses(args).split(",")
                         if a.strip()]
            metrics_addrs = [a.strip() for a in (args.metrics or "").split(",") if a.strip()]
            report = _run_async(addresses, settings, metrics_addrs)
            report.update(target=",".join(addresses), node_pids=[], leader=None, shards=None)
        else:
            tls = ["--tls-dir", str(args.tls_dir)] if args.tls_dir else []
            with local_cluster(local_nodes, args.data_dir, [*args.node_arg, *tls],
                               ready_timeout=settings.ready_timeout,
                               security=settings.security, shards=shards) as (cluster, leader):
                report = _run_async(cluster.client_addrs, settings, cluster.metrics_addrs)
                dead = cluster.dead()
                if dead:
                    raise CliError(f"node(s) {', '.join(dead)} exited during the run", code=1)
            report.update(target=f"local {local_nodes} nodes"
                          + (f", {shards} shards" if shards is not None else ""),
                          node_pids=cluster.started_pids, leader=leader, shards=shards)
    if args.json:
        cli_common.print_json(report)
    else:
        print_report(report)
    if report["appends"] == 0 and report["errors"]:
        print(f"quorumlog bench: every append failed: {report['errors']}", file=sys.stderr)
        return 1
    return 0


def _run_async(addresses: list[str], settings: Settings,
               metrics_addrs: list[str]) -> dict[str, Any]:
    try:
        return asyncio.run(run_load(addresses, settings, metrics_addrs))
    except errors.QuorumLogError as error:
        raise CliError(f"{type(error).__name__}: {error}", code=1) from None
