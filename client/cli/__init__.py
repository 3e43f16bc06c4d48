"""The ``quorumlog`` command line: one dispatcher, one module per subcommand.

Owns: argument dispatch, exit codes and the "one clear line on stderr" error contract.
Must never: hold a subcommand's logic; each subcommand module exposes
``add_arguments(parser)`` and ``run(args) -> int`` and is imported only when used.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence
from typing import Protocol, cast

# name -> (module, one-line help). Modules are imported lazily so a command never pays for
# another's dependencies.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("quorumlog.client.cli.cmd_sim", "run the deterministic Raft simulator over many seeds"),
    "bench-core": (
        "quorumlog.client.cli.bench_core",
        "benchmark the pure Raft core (3 in-memory nodes, no I/O)",
    ),
    "faultfs": (
        "quorumlog.client.cli.cmd_faultfs", "mount the fault filesystem / inject storage faults"
    ),
    "toxiproxy-server": (
        "quorumlog.client.cli.cmd_toxiproxy_server", "run a Toxiproxy-compatible server"
    ),
    "node": ("quorumlog.client.cli.cmd_node", "run one quorumlog server process"),
    "cluster": (
        "quorumlog.client.cli.cluster",
        "run and operate a cluster (up, add-node, remove-node, transfer-leader, balance)",
    ),
    "status": (
        "quorumlog.client.cli.cmd_status", "show every node's role, term, leader and indexes"
    ),
    "append": ("quorumlog.client.cli.cmd_append", "append messages to a session, print offsets"),
    "read": ("quorumlog.client.cli.cmd_read", "read messages of a session from an offset"),
    "tail": ("quorumlog.client.cli.cmd_tail", "follow a session, printing messages as committed"),
    "sessions": ("quorumlog.client.cli.cmd_sessions", "list sessions"),
    "consume": (
        "quorumlog.client.cli.cmd_consume",
        "receive messages of a session for a consumer group (peek-lock, then complete)",
    ),
    "dlq": ("quorumlog.client.cli.cmd_dlq", "list, resubmit or purge a session's dead letters"),
    "schedule": (
        "quorumlog.client.cli.cmd_schedule", "list or cancel a session's scheduled messages"
    ),
    "bench-consume": (
        "quorumlog.client.cli.bench_consume",
        "consume throughput: peek-lock + complete, one group over many sessions",
    ),
    "chaos": (
        "quorumlog.client.cli.cmd_chaos", "chaos run (faults + checked history) / chaos check"
    ),
    "health": ("quorumlog.client.cli.cmd_health", "check one node's gRPC health service"),
    "bench": ("quorumlog.client.cli.bench", "load-test a cluster (or --local N) and report rates"),
    "backup": ("quorumlog.client.cli.cmd_backup", "write a consistent backup of a running cluster"),
    "restore": (
        "quorumlog.client.cli.cmd_restore", "seed a new node's data directory from a backup"
    ),
    "certs": (
        "quorumlog.client.cli.cmd_certs", "create development TLS certificates / sign tokens"
    ),
    "acl": ("quorumlog.client.cli.cmd_acl", "grant, revoke, list access rules; enable enforcement"),
    "console": (
        "quorumlog.client.cli.cmd_console",
        "serve the web console: the cluster, sessions, messages, dead letters, live tail",
    ),
}


class SubcommandModule(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class CliError(Exception):
    """A user-facing error: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _load(name: str) -> SubcommandModule:
    module_name, _ = SUBCOMMANDS[name]
    return cast(SubcommandModule, importlib.import_module(module_name))


def package_version() -> str:
    """The installed ``quorumlog`` distribution's version (pyproject's ``version``)."""
    try:
        return importlib.metadata.version("quorumlog")
    except importlib.metadata.PackageNotFoundError:  # imported from a tree never installed
        return "unknown (not installed)"


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quorumlog", description="quorumlog command line")
    parser.add_argument(
        "--version", action="version", version=package_version(),
        help="print the installed quorumlog version and exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            _load(name).add_arguments(sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    selected = next((arg for arg in args_list if not arg.startswith("-")), None)
    if selected not in SUBCOMMANDS:
        selected = None
    parser = build_parser(selected)
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return _load(args.command).run(args)
    except CliError as error:
        print(f"quorumlog {args.command}: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        return 130

