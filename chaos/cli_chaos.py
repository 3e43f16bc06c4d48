"""``quorumlog chaos check PATH``: re-check a recorded chaos history.

Owns: the ``chaos`` subcommand's arguments and its ``check`` action: read a history
(``quorumlog.chaos.history``), judge it (``quorumlog.chaos.checker``), print a summary (or the
result JSON with ``--json``). Exit 0 only on ``pass``; 1 on ``fail`` or ``inconclusive``; 2
when the history cannot be read (one line on stderr naming the file and line).
Must never: run a workload or inject faults (a later ``run`` action will), or judge anything
itself.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from quorumlog.chaos.checker import CheckConfig, check
from quorumlog.chaos.history import HistoryError, read_history
from quorumlog.client.cli import CliError

DEFAULTS = CheckConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
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
    raise CliError(f"unknown action {args.action!r}")


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
