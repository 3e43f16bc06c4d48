"""``quorumlog sim``: run the deterministic Raft simulator over many seeds.

``--groups G`` (G > 1) runs the many-groups simulator instead
(``quorumlog.raft.testing.multisim``: a meta group and G - 1 data shards on the same nodes,
one storage engine and fsync per node, one link per node pair, a replica move mid-run).

Owns: the command's flags, spreading seeds over worker processes (results do not depend on
how many), timing the run, the text and ``--json`` summaries and the replay line printed for
every failing seed. Must never: decide anything a seed's outcome depends on; that is
``quorumlog.raft.testing.sim``'s, which stays pure (no clock, processes or I/O).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence

from quorumlog.raft.testing import multisim
from quorumlog.raft.testing.multisim import (
    MultiRunOptions,
    MultiSeedResult,
    MultiSimulation,
    run_multi_seed,
)
from quorumlog.raft.testing.sim import (
    DEFAULT_HEAL_TICKS,
    DEFAULT_SEEDS,
    DEFAULT_STEPS,
    RunOptions,
    SeedResult,
    Simulation,
    run_seed,
)


def _run_seed_job(job: tuple[int, RunOptions]) -> SeedResult:
    return run_seed(*job)


def run_seeds(seeds: Sequence[int], options: RunOptions, jobs: int = 1) -> list[SeedResult]:
    """Results in seed order, identical whatever ``jobs`` is."""
    if jobs <= 1 or len(seeds) <= 1:
        return [run_seed(seed, options) for seed in seeds]
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with context.Pool(jobs) as pool:
        chunk = max(1, min(16, len(seeds) // (jobs * 8)))
        return list(pool.imap(_run_seed_job, [(seed, options) for seed in seeds], chunk))


def _run_multi_seed_job(job: tuple[int, MultiRunOptions]) -> MultiSeedResult:
    return run_multi_seed(*job)


def run_multi_seeds(
    seeds: Sequence[int], options: MultiRunOptions, jobs: int = 1
) -> list[MultiSeedResult]:
    """The many-groups simulator's results in seed order, identical whatever ``jobs`` is."""
    if jobs <= 1 or len(seeds) <= 1:
        return [run_multi_seed(seed, options) for seed in seeds]
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with context.Pool(jobs) as pool:
        chunk = max(1, min(16, len(seeds) // (jobs * 8)))
        jobs_list = [(seed, options) for seed in seeds]
        return list(pool.imap(_run_multi_seed_job, jobs_list, chunk))


def replay_command(seed: int, options: RunOptions | MultiRunOptions) -> str:
    if isinstance(options, MultiRunOptions):
        command = f"quorumlog sim --groups {options.groups} --seed {seed} --steps {options.steps}"
        if options.heal_ticks != multisim.DEFAULT_HEAL_TICKS:
            command += f" --heal-ticks {options.heal_ticks}"
        return command
    command = f"quorumlog sim --seed {seed} --steps {options.steps}"
    if options.heal_ticks != DEFAULT_HEAL_TICKS:
        command += f" --heal-ticks {options.heal_ticks}"
    return command


def _fault_totals(results: Sequence[SeedResult] | Sequence[MultiSeedResult]) -> dict[str, int]:
    """Every fault counter summed over the seeds' results (either simulator's)."""
    faults: dict[str, int] = {}
    for result in results:
        for name, value in vars(result.counters).items():
            faults[name] = faults.get(name, 0) + value
    return faults


def summarize_multi(
    seeds: Sequence[int], options: MultiRunOptions, results: Sequence[MultiSeedResult]
) -> dict[str, object]:
    """The ``--json`` object of a many-groups run (without timings)."""
    faults = _fault_totals(results)
    failures = [
        {
            "seed": result.seed,
            "kind": "violation" if result.violation is not None else "liveness",
            "invariant": result.violation,
            "group": result.group,
            "message": result.message if result.violation is not None else result.liveness_failure,
            "step": result.at_step,
            "move": result.move,
            "replay": replay_command(result.seed, options),
        }
        for result in results
        if result.failed
    ]
    return {
        "seeds": len(seeds),
        "first_seed": seeds[0] if seeds else None,
        "steps": options.steps,
        "groups": options.groups,
        "heal_ticks": options.heal_ticks,
        "violations": sum(1 for result in results if result.violation is not None),
        "liveness_failures": sum(1 for result in results if result.liveness_failure is not None),
        "elections": sum(result.elections for result in results),
        "committed": sum(result.committed for result in results),
        "moves_done": faults.get("moves_done", 0),
        "max_heal_ticks": max((result.heal_ticks for result in results), default=0),
        "faults": faults,
        "failures": failures,
    }


def summarize(
    seeds: Sequence[int], options: RunOptions, results: Sequence[SeedResult]
) -> dict[str, object]:
    """The ``--json`` object (without timings, so equal runs give equal summaries)."""
    faults = _fault_totals(results)
    failures = [
        {
            "seed": result.seed,
            "kind": "violation" if result.violation is not None else "liveness",
            "invariant": result.violation,
            "message": result.message if result.violation is not None else result.liveness_failure,
            "step": result.at_step,
            "replay": replay_command(result.seed, options),
        }
        for result in results
        if result.failed
    ]
    return {
        "seeds": len(seeds),
        "first_seed": seeds[0] if seeds else None,
        "steps": options.steps,
        "heal_ticks": options.heal_ticks,
        "violations": sum(1 for result in results if result.violation is not None),
        "liveness_failures": sum(1 for result in results if result.liveness_failure is not None),
        "elections": sum(result.elections for result in results),
        "committed": sum(result.committed for result in results),
        "max_heal_ticks": max((result.heal_ticks for result in results), default=0),
        "faults": faults,
        "failures": failures,
    }


# -- command line ------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seeds", type=int, default=None,
        help=f"how many seeds to run (default {DEFAULT_SEEDS}, or 1 with --seed)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="first seed (alone: replay exactly this seed)"
    )
    parser.add_argument(
        "--steps", type=int, default=None,
        help=f"fault-injection steps per seed (default {DEFAULT_STEPS}; "
        f"{multisim.DEFAULT_STEPS} with --groups)",
    )
    parser.add_argument(
        "--groups", type=int, default=1,
        help="Raft groups per simulated node: 1 (default) runs the single-group simulator; "
        f"G > 1 a meta group and G - 1 data shards sharing nodes, disks and links "
        f"(e.g. --groups {multisim.DEFAULT_GROUPS})",
    )
    parser.add_argument(
        "--heal-ticks", type=int, default=DEFAULT_HEAL_TICKS,
        help="ticks after the last fault within which every seed must recover",
    )
    parser.add_argument(
        "--jobs", type=int, default=None,
        help="worker processes (default: CPU count); results do not depend on it",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--trace", action="store_true", help="log every fault and client action (one seed)"
    )


def run(args: argparse.Namespace) -> int:
    seeds_count: int | None = args.seeds
    first = args.seed if args.seed is not None else 0
    if seeds_count is None:
        seeds_count = 1 if args.seed is not None else DEFAULT_SEEDS
    groups: int = args.groups
    if groups > 1:
        return _run_multi(args, seeds_count, first)
    steps: int = args.steps if args.steps is not None else DEFAULT_STEPS
    if seeds_count < 1 or steps < 0 or args.heal_ticks < 1 or groups < 1:
        print("quorumlog sim: --seeds, --groups and --heal-ticks must be positive", file=sys.stderr)
        return 2
    options = RunOptions(steps=steps, heal_ticks=args.heal_ticks)
    seeds = list(range(first, first + seeds_count))
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    started = time.perf_counter()
    if args.trace:
        results = [
            Simulation(seed, options.steps, heal_ticks=options.heal_ticks, trace=_stderr_line).run()
            for seed in seeds
        ]
    else:
        results = run_seeds(seeds, options, jobs=max(1, jobs))
    wall = time.perf_counter() - started
    summary = summarize(seeds, options, results)
    failed = [result for result in results if result.failed]
    for result in failed:
        if result.violation is not None:
            what = f"violation {result.violation} at step {result.at_step}: {result.message}"
        else:
            what = f"liveness failure: {result.liveness_failure}"
        print(f"seed {result.seed}: {what}", file=sys.stderr)
        print(f"  replay: {replay_command(result.seed, options)}", file=sys.stderr)
    if args.json:
        summary["wall_seconds"] = round(wall, 3)
        summary["seeds_per_second"] = round(len(seeds) / wall, 2) if wall > 0 else None
        summary["jobs"] = jobs
        print(json.dumps(summary, sort_keys=True))
    else:
        print(
            f"{len(seeds)} seeds x {options.steps} steps: {summary['violations']} violations, "
            f"{summary['liveness_failures']} liveness failures, {summary['elections']} "
            f"elections, {summary['committed']} values committed, {wall:.1f}s "
            f"({len(seeds) / wall if wall > 0 else 0:.1f} seeds/s, {jobs} jobs)"
        )
    return 1 if failed else 0


def _run_multi(args: argparse.Namespace, seeds_count: int, first: int) -> int:
    steps: int = args.steps if args.steps is not None else multisim.DEFAULT_STEPS
    if seeds_count < 1 or steps < 0 or args.heal_ticks < 1:
        print("quorumlog sim: --seeds and --heal-ticks must be positive", file=sys.stderr)
        return 2
    options = MultiRunOptions(steps=steps, heal_ticks=args.heal_ticks, groups=args.groups)
    seeds = list(range(first, first + seeds_count))
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    started = time.perf_counter()
    if args.trace:
        results = [
            MultiSimulation(
                seed, steps, groups=options.groups, heal_ticks=options.heal_ticks,
                trace=_stderr_line,
            ).run()
            for seed in seeds
        ]
    else:
        results = run_multi_seeds(seeds, options, jobs=max(1, jobs))
    wall = time.perf_counter() - started
    summary = summarize_multi(seeds, options, results)
    failed = [result for result in results if result.failed]
    for result in failed:
        if result.violation is not None:
            what = (
                f"violation {result.violation} in group {result.group} at step "
                f"{result.at_step}: {result.message}"
            )
        else:
            what = f"liveness failure: {result.liveness_failure}"
        print(f"seed {result.seed}: {what}", file=sys.stderr)
        print(f"  replay: {replay_command(result.seed, options)}", file=sys.stderr)
    if args.json:
        summary["wall_seconds"] = round(wall, 3)
        summary["seeds_per_second"] = round(len(seeds) / wall, 2) if wall > 0 else None
        summary["jobs"] = jobs
        print(json.dumps(summary, sort_keys=True))
    else:
        faults = summary["faults"]
        assert isinstance(faults, dict)
        syncs = faults["syncs"]
        per_sync = faults["synced_groups"] / syncs if syncs else 0.0
        print(
            f"{len(seeds)} seeds x {steps} steps x {options.groups} groups: "
            f"{summary['violations']} violations, {summary['liveness_failures']} liveness "
            f"failures, {summary['elections']} elections, {summary['committed']} values "
            f"committed, {summary['moves_done']} replica moves ({faults['moves_done_in_run']} "
            f"before the final heal), {syncs} fsyncs "
            f"({per_sync:.2f} groups each), {faults['crashes']} crashes, {wall:.1f}s "
            f"({len(seeds) / wall if wall > 0 else 0:.1f} seeds/s, {jobs} jobs)"
        )
    return 1 if failed else 0


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quorumlog sim")
    add_arguments(parser)
    return run(parser.parse_args(argv))
