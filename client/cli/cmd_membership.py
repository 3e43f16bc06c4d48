"""``quorumlog cluster add-node | remove-node | transfer-leader``: change a running cluster.

Owns: these three actions' flags, output (one line, or ``--json``) and exit codes: 0 done;
2 refused as bad input — unknown node (NOT_FOUND), conflicting id or address
(ALREADY_EXISTS), last voter or a learner as target (FAILED_PRECONDITION), malformed name or
address — with nothing changed; 1 cluster unreachable or the change not finished in time.
Must never: talk to grpc itself (the SDK does) or retry a refusal.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from quorumlog.client import errors
from quorumlog.client.cli import CliError
from quorumlog.client.cli import common as cli_common

DEFAULT_DEADLINE = 60.0  # a new node may need a while to catch up


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add = sub.add_parser(
        "add-node",
        help="add a node: learner first, promoted to voter once caught up",
        description="Add node ID (started with `quorumlog node --join`) as a learner, wait "
        "until it has caught up, then promote it to voter.",
    )
    add.add_argument("node_id", metavar="ID", help="the new node's name, e.g. n4")
    add.add_argument("--peer-addr", required=True, help="HOST:PORT it listens on for peers")
    add.add_argument("--client-addr", required=True, help="HOST:PORT it serves clients on")
    remove = sub.add_parser("remove-node", help="remove a member (the leader hands over first)")
    remove.add_argument("node_id", metavar="ID")
    transfer = sub.add_parser("transfer-leader", help="make a voter the leader")
    transfer.add_argument("node_id", metavar="ID")
    for parser in (add, remove, transfer):
        cli_common.add_common_arguments(parser)


@contextmanager
def refusals() -> Iterator[None]:
    """A refusal is the caller's mistake (exit 2); anything else keeps cli_errors' code."""
    try:
        yield
    except (errors.AlreadyExists, errors.NotFound, errors.FailedPrecondition) as error:
        raise CliError(f"{error.code.lower()}: {error.message}", cli_common.EXIT_USAGE) from None


def run(args: argparse.Namespace) -> int:
    if not args.node_id:
        raise CliError("ID must be a non-empty node name")
    if args.deadline is None:
        args.deadline = str(DEFAULT_DEADLINE)
    with cli_common.connect(args) as client, refusals():
        if args.cluster_command == "add-node":
            result = client.add_node(args.node_id, args.peer_addr, args.client_addr)
            fields: dict[str, object] = {
                "id": result.id, "learner_index": result.learner_index,
                "voter_index": result.voter_index,
                "catch_up_seconds": round(result.catch_up_seconds, 3),
            }
            line = (
                f"{result.id} is a voter (learner at index {result.learner_index or '-'}, "
                f"promoted at {result.voter_index}, {result.catch_up_seconds:.1f}s)"
                if result.voter_index else
                f"{result.id} was already a voter at these addresses (nothing changed)"
            )
        elif args.cluster_command == "remove-node":
            index = client.remove_node(args.node_id)
            fields = {"id": args.node_id, "index": index}
            line = f"{args.node_id} removed at index {index}"
        else:
            leader, term = client.transfer_leader(args.node_id)
            fields = {"leader": leader, "term": term}
            line = f"{leader} is the leader (term {term})"
    if args.json:
        cli_common.print_json(fields)
    else:
        cli_common.print_line(line)
    return 0
