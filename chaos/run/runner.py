"""``quorumlog chaos run``: a whole chaos run, from an empty directory to a verdict.

Owns: the run's sequence and its output files. Start a Toxiproxy server (a real
``toxiproxy-server`` when on PATH, else ours), one proxy per client port and per directed
peer link (``quorumlog.chaos.run.network``), a 3-node cluster behind them
(``quorumlog.chaos.run.processes``), the monitor and the workload; after a fault-free baseline,
inject seeded faults (``quorumlog.chaos.run.nemesis``) until the duration is nearly used; then
heal, restart every node, stop the workload, wait for convergence, drain the consumer group
(``quorumlog.chaos.run.consumers``), record every node's final records
(``quorumlog.chaos.run.finals``), judge the history (``quorumlog.chaos.run.checker``) and write
``DIR/history.jsonl``, ``DIR/result.json`` and ``DIR/report.html``
(``quorumlog.chaos.run.report``). Prints a live progress line and a human summary.
With ``shards`` > 1 the nodes found the cluster with that many data shards (the launcher's
``--init-shards``), the workload starts once every shard has a leader, and the result adds
``shards``: the count, each shard's leader moves, the leaders per node at the end, and the
checker's per-shard figures.
Must never: judge anything itself (beyond adding harness failures, such as a node that could
not be read at the end, as ``fail`` reasons), listen anywhere but 127.0.0.1, or leave a
process behind: every node and the proxy server are stopped in ``finally`` blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from quorumlog.chaos.run.checker import CheckConfig, check
from quorumlog.chaos.run.consumers import DRAIN_DEADLINE, drain
from quorumlog.chaos.run.disks import ChaosDisks, DiskError
from quorumlog.chaos.run.faults import DEFAULT_FAULTS, STORAGE_FAULTS, FaultScheduler
from quorumlog.chaos.run.finals import write_finals
from quorumlog.chaos.run.history import HistoryWriter, read_history
from quorumlog.chaos.run.monitor import ClusterMonitor
from quorumlog.chaos.run.nemesis import FaultRecord, Nemesis
from quorumlog.chaos.run.network import ChaosNetwork
from quorumlog.chaos.run.processes import ChaosNode, ChaosNodes
from quorumlog.chaos.run.report import render_report
from quorumlog.chaos.run.storage_faults import StorageFaults
from quorumlog.chaos.run.workload import Recorder, Workload, WorkloadConfig
from quorumlog.chaos.toxiproxy.client import (
    Implementation,
    ToxiproxyServer,
    real_server_binary,
)
from quorumlog.node.process.launcher import LocalNode, plan
from quorumlog.proto.sharding import shard_of

NODE_NAMES = ("n1", "n2", "n3")
# Low snapshot thresholds so a blackholed follower falls behind the leader's compaction
# point within seconds (the ``compaction`` fault); 100 ms ticks, 10-tick election timeout.
NODE_ARGS = ("--tick-ms", "100", "--election-tick", "10", "--snapshot-every", "200",
             "--snapshot-keep", "20", "--log-level", "info")
CANARY_NODE_ARGS = ("--unsafe-ack-before-fsync",)
# With power_loss in the list the canary is the one a power cut catches and a kill -9 does
# not: the write-ahead log written, never fsynced; every power cut then hits every node.
POWER_CANARY_NODE_ARGS = ("--unsafe-no-fsync",)
CANARY_FAULTS = ("kill_all",)
FIRST_LEADER_TIMEOUT = 60.0
CONVERGE_TIMEOUT = 60.0
# A canary run is meant to break the cluster (a power-loss canary leaves a majority without
# its data, and the incarnation rule then rightly elects nobody): its verdict is the loss it
# reports, so it waits less for a convergence that may never come.
CANARY_CONVERGE_TIMEOUT = 15.0
FINAL_RESERVE = 12.0  # seconds kept at the end of the duration for the restart of all nodes
MIN_AFTER_RESTART = 3.0  # workload seconds after the final restart (recovery is measured)


class RunError(Exception):
    """The harness could not run (no leader at start, proxies failed): no verdict."""


@dataclass(frozen=True)
class RunOptions:
    out: Path
    duration: float = 120.0
    seed: int = 1
    faults: tuple[str, ...] = DEFAULT_FAULTS
    canary: bool = False
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    baseline: float | None = None  # seconds before the first fault; None: from the duration

    @property
    def shards(self) -> int:
        """The cluster's data shards (the workload spreads its sessions over them)."""
        return self.workload.shards

    @property
    def baseline_seconds(self) -> float:
        if self.baseline is not None:
            return self.baseline
        return min(10.0, max(5.0, self.duration * 0.08))


class Progress:
    """The live progress line (``\\r``-rewritten on a terminal, a line every 10 s if not)."""

    def __init__(self, stream: TextIO, duration: float) -> None:
        self.stream = stream
        self.duration = duration
        self.tty = stream.isatty()
        self._last_plain = -1e9
        self._shown = False

    def log(self, clock: float, message: str) -> None:
        self._clear()
        self.stream.write(f"[{clock:6.1f}s] {message}\n")
        self.stream.flush()

    def show(self, clock: float, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + text[:150].ljust(150))
            self._shown = True
        elif clock - self._last_plain >= 10.0:
            self.stream.write(text + "\n")
            self._last_plain = clock
        self.stream.flush()

    def _clear(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\r" + " " * 150 + "\r")
            self._shown = False

    def done(self) -> None:
        self._clear()
        self.stream.flush()


def _progress_text(clock: float, duration: float, recorder: Recorder, rate: float, *,
                   monitor: ClusterMonitor, nemesis: Nemesis) -> str:
    counters = recorder.counters
    leader = monitor.leader or "-"
    shards = ""
    if monitor.shard_count > 1:
        shards = " | shards led " + " ".join(
            f"{name}:{count}" for name, count in monitor.leader_counts().items())
    fault = nemesis.active
    fault_text = f"{fault.kind} {fault.target or ''}".strip() if fault else "none"
    return (f"[{clock:6.1f}s/{duration:.0f}s] ops {counters.invoked} ok {counters.ok} "
            f"fail {counters.fail} info {counters.info} | {rate:5.1f} ok/s | acked "
            f"{counters.acked} | leader {leader} term {monitor.max_term}{shards} | fault "
            f"{fault_text}")


async def _show_progress(progress: Progress, recorder: Recorder, monitor: ClusterMonitor,
                         nemesis: Nemesis, duration: float) -> None:
    last_ok, last_time = 0, recorder.clock()
    while True:
        await asyncio.sleep(1.0)  # the progress line's refresh period
        now = recorder.clock()
        rate = (recorder.counters.ok - last_ok) / max(now - last_time, 1e-9)
        last_ok, last_time = recorder.counters.ok, now
        progress.show(now, _progress_text(now, duration, recorder, rate, monitor=monitor,
                                          nemesis=nemesis))


@dataclass
class RunOutcome:
    result: dict[str, object]
    summary: str

    @property
    def verdict(self) -> str:
        return str(self.result.get("verdict"))


def _clean_outputs(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("history.jsonl", "result.json", "report.html"):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "data", ignore_errors=True)


def run_chaos(options: RunOptions, stream: TextIO = sys.stdout) -> RunOutcome:
    """Run the whole thing; raises ``RunError`` when the harness cannot even start."""
    _clean_outputs(options.out)
    started = time.monotonic()
    data = options.out / "data"
    planned = plan(len(NODE_NAMES), data, log_dir=data,  # n1..n3 on free ports
                   shards=options.shards if options.shards > 1 else None)
    assert tuple(node.name for node in planned) == NODE_NAMES
    node_args = [*NODE_ARGS, *canary_args(options)]
    disks = (ChaosDisks({node.name: node.data_dir for node in planned}, options.seed)
             if STORAGE_FAULTS.intersection(options.faults) else None)
    try:
        if disks is not None:
            disks.mount_all()
    except DiskError as error:
        if disks is not None:
            disks.unmount_all()
        raise RunError(str(error)) from None
    try:
        state = _run_cluster(options, stream, planned, node_args, disks)
    finally:
        if disks is not None:
            disks.unmount_all()
    state.extra["wall_seconds"] = round(time.monotonic() - started, 1)
    return _judge(options, state)


def canary_args(options: RunOptions) -> tuple[str, ...]:
    """The unsafe node flag a canary run uses (none for a real run)."""
    if not options.canary:
        return ()
    return POWER_CANARY_NODE_ARGS if "power_loss" in options.faults else CANARY_NODE_ARGS


def _run_cluster(options: RunOptions, stream: TextIO, planned: list[LocalNode],
                 node_args: list[str], disks: ChaosDisks | None) -> _RunState:
    real_client = {node.name: node.client_addr for node in planned}
    real_peer = {node.name: node.peer_addr for node in planned}
    implementation: Implementation = (
        "toxiproxy-server" if real_server_binary() else "quorumlog")
    extra = ("--seed", str(options.seed)) if implementation == "quorumlog" else ()
    with ToxiproxyServer(implementation, extra_args=extra) as server:
        network = ChaosNetwork(server.client(), real_client, real_peer)
        # Each proxy listens on a port the server picks (port 0) and reports back: a port
        # picked here and bound later could be taken meanwhile by any connection's local end.
        network.setup()
        nodes = ChaosNodes([
            ChaosNode(node.name, node.client_addr, node.peer_addr,
                      network.routes_for(node.name), node.data_dir, node.log_path)
            for node in planned], node_args, options.seed,
            shards=options.shards if options.shards > 1 else None)
        try:
            nodes.start_all()
            state = asyncio.run(_run_async(options, network, nodes, stream, disks))
        except BaseException:
            stream.write("\nnode logs (tail):\n" + nodes.log_tail() + "\n")
            raise
        finally:
            nodes.stop_all()
    state.extra["toxiproxy"] = implementation
    return state


@dataclass
class _RunState:
    elections: int
    terms: list[int]
    problems: list[str]
    records: list[FaultRecord]
    skipped: list[str]
    extra: dict[str, object] = field(default_factory=dict)
    shards: dict[str, object] | None = None  # sharded runs: count, leader moves, leaders


async def _run_async(options: RunOptions, network: ChaosNetwork, nodes: ChaosNodes,
                     stream: TextIO, disks: ChaosDisks | None = None) -> _RunState:
    origin = time.monotonic()

    def clock() -> float:
        return round(time.monotonic() - origin, 4)

    progress = Progress(stream, options.duration)
    writer = HistoryWriter(options.out / "history.jsonl")
    recorder = Recorder(writer, clock)
    monitor = ClusterMonitor({name: node.client_addr for name, node in nodes.nodes.items()},
                             clock)
    nemesis = Nemesis(network, nodes, monitor, recorder,
                      lambda message: progress.log(clock(), message))
    if disks is not None:
        nemesis.storage = StorageFaults(nodes, disks, nemesis.hold_for,
                                        power_loss_everyone=options.canary)
    workload = Workload(recorder, {name: network.client_address(name) for name in nodes.names},
                        options.workload, options.seed)
    problems: list[str] = []
    try:
        monitor.start()
        await _faulty_phase(options, clock, progress, monitor=monitor, nemesis=nemesis,
                            workload=workload)
        progress.log(clock(), "workload stopped; waiting for every node to converge")
        converge = CANARY_CONVERGE_TIMEOUT if options.canary else CONVERGE_TIMEOUT
        if not await monitor.wait_for(monitor.converged, converge):
            problems.append(f"nodes did not converge within {converge:.0f}s")
        if options.workload.consumers:
            progress.log(clock(), "draining the consumer group")
            # A long soak can leave a long backlog: the drain may take a tenth of the run.
            left = await drain(
                recorder, {name: node.client_addr for name, node in nodes.nodes.items()},
                options.workload, seed=options.seed, sessions=workload.sessions(),
                deadline=max(DRAIN_DEADLINE, options.duration / 10))
            problems += [f"final consumer drain incomplete: {text}" for text in left]
        await monitor.poll()
        session_leaders = {session: leader for session in workload.sessions()
                           if (leader := monitor.shard_leaders().get(
                               shard_of(session, options.shards))) is not None
                           } if options.shards > 1 else None
        unreadable = await write_finals(
            writer, clock(), {name: node.client_addr for name, node in nodes.nodes.items()},
            monitor.leader, workload.sessions(), shards=options.shards,
            session_leaders=session_leaders)
        problems += [f"final state unreadable on {text}" for text in unreadable]
    finally:
        writer.close()
        await monitor.close()
    terms = [election.term for election in monitor.elections]
    counters = recorder.counters
    shards: dict[str, object] | None = None
    if options.shards > 1:
        moves = monitor.leader_moves()
        shards = {
            "count": options.shards,
            "reported_by_nodes": monitor.shard_count,
            "sessions_per_shard": {
                str(shard): sum(shard_of(session, options.shards) == shard
                                for session in workload.sessions())
                for shard in range(options.shards)},
            "leader_moves": {str(shard): count for shard, count in moves.items()},
            "leader_moves_total": sum(moves.values()),
            "elections": {str(shard): count
                          for shard, count in monitor.shard_election_counts().items()},
            "leaders_at_end": monitor.leader_counts(),
        }
    return _RunState(
        elections=max(0, len(terms) - 1), terms=terms, problems=problems,
        records=list(nemesis.records), skipped=list(nemesis.skipped),
        extra={"appends_retried_after_unknown": counters.retried_unknown,
               "appends_deduplicated": counters.deduplicated}, shards=shards)


async def _faulty_phase(options: RunOptions, clock: Callable[[], float], progress: Progress, *,
                        monitor: ClusterMonitor, nemesis: Nemesis, workload: Workload) -> None:
    """Baseline, scheduled faults, the final restart; the workload runs throughout."""
    leader = await monitor.wait_leader(FIRST_LEADER_TIMEOUT)
    if leader is None:
        raise RunError(f"no leader elected within {FIRST_LEADER_TIMEOUT:.0f}s of start")
    shards_text = ""
    if options.shards > 1:
        def all_led() -> bool:
            return monitor.shard_count == options.shards and monitor.shards_led()

        if not await monitor.wait_for(all_led, FIRST_LEADER_TIMEOUT):
            raise RunError(f"not every one of the {options.shards} shards had a leader within "
                           f"{FIRST_LEADER_TIMEOUT:.0f}s of start (led: "
                           f"{sorted(monitor.shard_leaders())})")
        shards_text = f", {options.shards} shards led " + " ".join(
            f"{name}:{count}" for name, count in monitor.leader_counts().items())
    progress.log(clock(), f"cluster ready, leader {leader}{shards_text}; workload starts "
                          f"(seed {options.seed}, faults {','.join(options.faults)})")
    progress_task: asyncio.Task[None] | None = None
    try:
        workload.start()
        workload_started = clock()
        progress_task = asyncio.get_running_loop().create_task(_show_progress(
            progress, workload.recorder, monitor, nemesis, options.duration))
        # The baseline counts from the workload's start, not the run's: on a loaded machine
        # the cluster took 6 s to elect a leader, past a 5 s baseline, so the first fault
        # started with the workload and the verdict was "inconclusive (baseline 0 ops/s)".
        await _sleep_until(clock, workload_started + options.baseline_seconds)
        end_at = options.duration - FINAL_RESERVE
        await nemesis.run(FaultScheduler(options.seed, options.faults), end_at)
        await _sleep_until(clock, end_at)
        await nemesis.restart_all()
        await _sleep_until(clock, max(options.duration, clock() + MIN_AFTER_RESTART))
    finally:
        await workload.finish()
        if progress_task is not None:
            progress_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress_task
        progress.done()


async def _sleep_until(clock: Callable[[], float], moment: float) -> None:
    remaining = moment - clock()
    if remaining > 0:
        await asyncio.sleep(remaining)  # the schedule's next point in time, not an event


def _judge(options: RunOptions, state: _RunState) -> RunOutcome:
    history = read_history(options.out / "history.jsonl")
    checked = check(history, CheckConfig())
    result = checked.to_json()
    if state.problems:
        result["verdict"] = "fail"
        reasons = result.get("reasons")
        result["reasons"] = [*(reasons if isinstance(reasons, list) else []), *state.problems]
    availability = result.get("availability")
    success_rate = availability.get("success_rate") if isinstance(availability, dict) else None
    result["success_rate"] = success_rate
    result["elections"] = state.elections
    if state.shards is not None:
        per_shard = result.get("per_shard")
        result["shards"] = {**state.shards, "checked": per_shard if per_shard else {}}
    result["run"] = {
        "seed": options.seed, "duration_s": options.duration, "canary": options.canary,
        "shards": options.shards,
        "faults_requested": list(options.faults), "nodes": list(NODE_NAMES),
        "node_args": [*NODE_ARGS, *canary_args(options)],
        "workload": asdict(options.workload), "leader_terms": state.terms,
        "problems": state.problems, "faults": [record.to_json() for record in state.records],
        "faults_not_reached": state.skipped, **state.extra,
    }
    (options.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    title = (f"quorumlog chaos run (seed {options.seed}"
             f"{f', {options.shards} shards' if options.shards > 1 else ''}"
             f"{', canary' if options.canary else ''})")
    (options.out / "report.html").write_text(render_report(history, result, title))
    summary = [checked.summary()]
    if state.problems:
        summary.insert(0, "verdict: fail (harness: " + "; ".join(state.problems) + ")")
    summary.append(f"idempotent retries: {state.extra.get('appends_retried_after_unknown')} "
                   "acknowledged appends had an attempt of unknown outcome first, "
                   f"{state.extra.get('appends_deduplicated')} were answered as duplicates")
    summary.append(f"elections observed: {state.elections} (leader terms {state.terms[:20]}"
                   f"{' ...' if len(state.terms) > 20 else ''})")
    if state.shards is not None:
        moves = state.shards["leader_moves"]
        assert isinstance(moves, dict)
        total = state.shards["leader_moves_total"]
        summary.append(f"shards: {options.shards}; leader moves {total}"
                       " (" + ", ".join(f"shard {shard}: {count}"
                                        for shard, count in moves.items())
                       + f"); leaders at the end {state.shards['leaders_at_end']}")
    for record in state.records:
        if record.notes:
            summary.append(f"  {record.kind} {record.target}: " + "; ".join(record.notes))
    if state.skipped:
        summary.append("faults not reached before the duration ended: "
                       + ", ".join(state.skipped))
    if options.canary:
        lost = result.get("lost", 0)
        summary.append(f"canary: lost {lost} acknowledged values -> "
                       + ("the harness detects data loss" if lost else
                          "NO LOSS DETECTED: the harness cannot be trusted"))
    summary.append(f"wrote {options.out / 'history.jsonl'}, {options.out / 'result.json'}, "
                   f"{options.out / 'report.html'} (wall {state.extra.get('wall_seconds')}s)")
    return RunOutcome(result, "\n".join(summary))
