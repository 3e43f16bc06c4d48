"""``quorumlog chaos run`` and ``quorumlog chaos check PATH``.

Owns: the ``chaos`` subcommand's arguments and its two actions. ``run``: validate the options
and hand them to ``quorumlog.chaos.run.runner`` (imported only then), print its summary. ``check``:
read a history (``quorumlog.chaos.run.history``), judge it (``quorumlog.chaos.run.checker``), print
a summary (or the result JSON with ``--json``). Exit 0 only on ``pass``; 1 on ``fail`` or
``inconclusive``; 2 on bad options or when the history cannot be read (one line on stderr
naming the file and line).
Must never: run a workload, inject faults or judge anything itself.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TypeVar

from quorumlog.chaos.run.checker import CheckConfig, check
from quorumlog.chaos.run.faults import (
    FaultListError,
    fault_help,
    for_shards,
    parse_fault_list,
)
from quorumlog.chaos.run.history import HistoryError, read_history
from quorumlog.client.cli import CliError
from quorumlog.proto.sharding import MAX_SHARDS

DEFAULTS = CheckConfig()
T = TypeVar("T", int, float)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    runner = actions.add_parser(
        "run", help="run a 3-node cluster under seeded faults and check the history",
        description="start a local 3-node cluster (--shards S: with S data shards) behind "
                    "Toxiproxy proxies, run producers and "
                    "linearizable readers and consumers while injecting seeded faults, then "
                    "check the history; writes DIR/history.jsonl, DIR/result.json, "
                    "DIR/report.html")
    runner.add_argument("--duration", metavar="SECONDS", default="120",
                        help="workload seconds, faults included (default 120; at least 30)")
    runner.add_argument("--seed", metavar="S", default="1", help="seed of the fault "
                        "schedule and the workload's choices (default 1)")
    runner.add_argument("--faults", metavar="LIST", default=None,
                        help="comma-separated faults (default: all available). "
                             + fault_help())
    runner.add_argument("--out", metavar="DIR", default="chaos-run",
                        help="output directory (default ./chaos-run); its previous results "
                             "and node data are replaced")
    runner.add_argument("--canary", action="store_true",
                        help="self-check: nodes run with the unsafe ack-before-fsync option "
                             "and every node is killed with -9 (default faults: kill_all); "
                             "the run must report lost > 0")
    runner.add_argument("--producers", metavar="N", default="4", help="producer workers (4)")
    runner.add_argument("--readers", metavar="N", default="2",
                        help="linearizable reader workers (2)")
    runner.add_argument("--sessions", metavar="N", default="8", help="sessions written (8)")
    runner.add_argument("--consumers", metavar="N", default="2",
                        help="consumer workers of one group, with leases (2; 0: none)")
    runner.add_argument("--shards", metavar="S", default="1",
                        help="data shards of the cluster (1, the default: one Raft group as "
                             "ever); with more, the sessions are spread so every shard gets "
                             "at least 3, the faults aimed at the leader hit the node "
                             "leading the most shards, and membership is left out (the node "
                             "cannot move shard replicas yet)")
    checker = actions.add_parser(
        "check", help="re-check a recorded history (JSON lines)",
        description="check a chaos history: safety anomalies, convergence, availability")
    checker.add_argument("path", metavar="PATH", help="history file, e.g. DIR/history.jsonl")
    checker.add_argument("--json", action="store_true", help="print the result as JSON")
    checker.add_argument("--min-throughput", metavar="X", default=None,
                         help="ok ops/s before the first fault below which the verdict is "
                              f"inconclusive (default {DEFAULTS.min_throughput:g})")
    checker.add_argument("--min-acked", metavar="N", default=None,
                         help="acknowledged appends below which the verdict is inconclusive "
                              f"(default {DEFAULTS.min_acked})")


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _check(args)
    if args.action == "run":
        return _run(args)
    raise CliError(f"unknown action {args.action!r}")


def _run(args: argparse.Namespace) -> int:
    from quorumlog.chaos.run import runner as chaos_run  # noqa: PLC0415 -- heavy, only for run
    from quorumlog.chaos.run.workload import WorkloadConfig  # noqa: PLC0415

    duration = _number("--duration", args.duration, float, 30)
    seed = _number("--seed", args.seed, int, None)
    shards = _shards(args.shards)
    try:
        faults = (chaos_run.CANARY_FAULTS if args.canary and args.faults is None
                  else parse_fault_list(args.faults))
        explicit = args.faults is not None and args.faults.strip() not in ("default", "all")
        faults = for_shards(faults, shards, explicit=explicit)
    except FaultListError as error:
        raise CliError(str(error)) from None
    workload = WorkloadConfig(producers=_number("--producers", args.producers, int, 1),
                              readers=_number("--readers", args.readers, int, 0),
                              sessions=_number("--sessions", args.sessions, int, 1),
                              consumers=_number("--consumers", args.consumers, int, 0),
                              shards=shards)
    options = chaos_run.RunOptions(out=Path(args.out), duration=duration, seed=seed,
                                   faults=faults, canary=args.canary, workload=workload)
    try:
        outcome = chaos_run.run_chaos(options)
    except chaos_run.RunError as error:
        raise CliError(str(error), code=1) from None
    print(outcome.summary, flush=True)
    return 0 if outcome.verdict == "pass" else 1


def _shards(text: str) -> int:
    shards = _number("--shards", text, int, 1)
    if shards > MAX_SHARDS:
        raise CliError(f"--shards must be at most {MAX_SHARDS}, got {text!r}")
    return shards


def _number(flag: str, text: str, kind: type[T], minimum: T | None) -> T:
    try:
        value = kind(text)
    except ValueError:
        raise CliError(f"{flag} must be a number, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise CliError(f"{flag} must be finite, got {text!r}")
    if minimum is not None and value < minimum:
        raise CliError(f"{flag} must be at least {minimum}, got {text!r}")
    return value


def _check(args: argparse.Namespace) -> int:
    config = CheckConfig(min_throughput=_throughput(args.min_throughput),
                         min_acked=_acked(args.min_acked))
    try:
        history = read_history(args.path)
    except HistoryError as error:
        raise CliError(f"unreadable history: {error}") from None
    except OSError as error:
        raise CliError(f"cannot read {args.path}: {error.strerror or error}") from None
    result = check(history, config)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=False))
    else:
        print(result.summary())
    sys.stdout.flush()
    return 0 if result.verdict == "pass" else 1


def _throughput(text: str | None) -> float:
    if text is None:
        return DEFAULTS.min_throughput
    try:
        value = float(text)
    except ValueError:
        raise CliError(f"--min-throughput must be a number of ops/s, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise CliError(f"--min-throughput must be a finite number >= 0, got {text!r}")
    return value


def _acked(text: str | None) -> int:
    if text is None:
        return DEFAULTS.min_acked
    try:
        value = int(text)
    except ValueError:
        raise CliError(f"--min-acked must be an integer, got {text!r}") from None
    if value < 0:
        raise CliError(f"--min-acked must be >= 0, got {text!r}")
    return value
