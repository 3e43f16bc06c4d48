"""``quorumlog status``: every node's role, term, leader and log indexes, the leader's view
of each follower's replication, and the membership.

Text: three tables — nodes (role, term, leader, commit / applied / last index, pid), then
``replication`` as the leader reports it (each follower's match index, lag in entries, state,
time since the leader last heard from it), then ``membership`` (voter or learner, peer and
client address). JSON: a list with one object per address, keys ``id, address, role, term,
leader, commit_index, applied_index, last_index, pid`` (plus ``reachable``, ``error``,
``advertised_address``, ``first_index``, ``snapshot_index``, ``members`` and — on the
leader — ``followers``). ``address`` is the address dialed; an unreachable node has ``role``
"unreachable", null numbers and an ``error``. Exit code 0 when at least one node answered, 1
(with one line on stderr) when none did.
"""

from __future__ import annotations

import argparse
from typing import Any

from quorumlog.client.cli import CliError
from quorumlog.client.cli import common as cli_common
from quorumlog.client.sdk import ClusterStatus, FollowerProgress, Member, NodeReport

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
        "members": [member_json(member) for member in status.members],
        "followers": [follower_json(follower) for follower in status.followers],
    }


def member_json(member: Member) -> dict[str, Any]:
    return {
        "id": member.id, "role": "voter" if member.voter else "learner",
        "peer_address": member.peer_address, "client_address": member.client_address,
    }


def follower_json(follower: FollowerProgress) -> dict[str, Any]:
    return {
        "id": follower.id, "role": "learner" if follower.learner else "voter",
        "match_index": follower.match_index, "lag": follower.lag, "state": follower.state,
        "last_contact_ms": None if follower.last_contact_ms < 0 else follower.last_contact_ms,
    }


def _grid(header: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    cells = [list(header), *rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in cells]


def _contact(milliseconds: int | None) -> str:
    if milliseconds is None:
        return "never"
    return f"{milliseconds} ms ago" if milliseconds < 10_000 else f"{milliseconds // 1000} s ago"


def replication_table(rows: list[dict[str, Any]]) -> list[str]:
    """The leader's (highest term's) view of its followers; empty when no leader answered."""
    leaders = [row for row in rows if row["reachable"] and row["role"] == "leader"]
    if not leaders:
        return ["", "replication: no leader answered"]
    leader = max(leaders, key=lambda row: row["term"])
    lines = ["", f"replication (leader {leader['id']}, last index {leader['last_index']}):"]
    lines += _grid(
        ("FOLLOWER", "ROLE", "MATCH", "LAG", "STATE", "LAST CONTACT"),
        [
            [f["id"], f["role"], str(f["match_index"]), str(f["lag"]), f["state"],
             _contact(f["last_contact_ms"])]
            for f in leader["followers"]
        ],
    )
    lines += ["", "membership:"]
    lines += _grid(
        ("MEMBER", "ROLE", "PEER ADDRESS", "CLIENT ADDRESS"),
        [[m["id"], m["role"], m["peer_address"], m["client_address"] or "-"]
         for m in leader["members"]],
    )
    return lines


def table(rows: list[dict[str, Any]]) -> str:
    lines = _grid(
        tuple(c.upper() for c in COLUMNS),
        [["-" if row[c] is None or row[c] == "" else str(row[c]) for c in COLUMNS]
         for row in rows],
    )
    for row in rows:
        if not row["reachable"]:
            lines.append(f"{row['address']}: {row['error']}")
    return "\n".join(lines + replication_table(rows))


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
