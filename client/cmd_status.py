"""``quorumlog status``: every node's role, term, leader and log indexes.

JSON: a list with one object per address, keys ``id, address, role, term, leader,
commit_index, applied_index, last_index, pid`` (plus ``reachable``, ``error``,
``advertised_address``, ``first_index``, ``snapshot_index``). ``address`` is the address
dialed; an unreachable node has ``role`` "unreachable", null numbers and an ``error``.
Exit code 0 when at least one node answered, 1 (with one line on stderr) when none did.
"""

from __future__ import annotations

import argparse
from typing import Any

from quorumlog.client import cli_common
from quorumlog.client.cli import CliError
from quorumlog.client.sdk import ClusterStatus, NodeReport

COLUMNS = (
    "id", "address", "role", "term", "leader", "commit_index", "applied_index", "last_index",
    "pid",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli_common.add_common_arguments(parser)


def node_json(report: NodeReport) -> dict[str, Any]:
    status = report.status
    if status is None:
        error = report.error
        return {
            "id": None, "address": report.address, "role": "unreachable", "term": None,
            "leader": None, "commit_index": None, "applied_index": None, "last_index": None,
            "pid": None, "reachable": False,
            "error": f"{error.code}: {error.message}" if error else "no answer",
        }
    return {
        "id": status.id,
        "address": report.address,
        "role": status.role,
        "term": status.term,
        "leader": status.leader,
        "commit_index": status.commit_index,
        "applied_index": status.applied_index,
        "last_index": status.last_index,
        "pid": status.pid,
        "reachable": True,
        "error": None,
        "advertised_address": status.address,
        "first_index": status.first_index,
        "snapshot_index": status.snapshot_index,
    }


def table(rows: list[dict[str, Any]]) -> str:
    cells = [[c.upper() for c in COLUMNS]]
    for row in rows:
        cells.append(["-" if row[c] is None or row[c] == "" else str(row[c]) for c in COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
             for line in cells]
    for row in rows:
        if not row["reachable"]:
            lines.append(f"{row['address']}: {row['error']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    with cli_common.connect(args) as client:
        status: ClusterStatus = client.cluster_status()
    if not status.reachable:
        first = status.nodes[0].error if status.nodes else None
        detail = f" (e.g. {first.address}: {first.message})" if first else ""
        raise CliError(
            f"no node of {cli_common.cluster_addresses(args)} answered within "
            f"{cli_common.deadline_of(args):g}s{detail}",
            cli_common.EXIT_FAILURE,
        )
    rows = [node_json(report) for report in status.nodes]
    if args.json:
        cli_common.print_json(rows)
    else:
        cli_common.print_line(table(rows))
    return 0
