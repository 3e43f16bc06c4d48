"""``quorumlog sessions [--prefix P] [--json]``: list sessions with their offsets and sizes.

Text output: a table. JSON: ``{"sessions": [{"session", "first_offset", "next_offset",
"count", "bytes", "created_ms", "last_append_ms"}], "truncated": false}`` (every page is
fetched; ``--limit`` caps the list and sets ``truncated`` when it cut it). Each session object
also carries its consumers: ``"owner"`` and ``"lease_expires_ms"`` (``{group: ...}`` for the
groups with a live lease), ``"lag"`` (``{group: messages not settled}`` for every group),
``"cursor"`` (``{group: the next offset it delivers for the first time}``),
``"first_unsettled"`` (``{group: the lowest offset it has not settled}``, its cursor when
nothing is pending) and ``"dead_letters"`` (a count); a cluster without the consumer API
leaves them out. (``"cursor"``, not ``"next_offset"``: that key is the session's own.)
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from quorumlog.client import errors
from quorumlog.client.cli import common as cli_common
from quorumlog.client.sdk import Client

COLUMNS = ("session", "first_offset", "next_offset", "count", "bytes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prefix", default="", help="only sessions whose name starts with P")
    parser.add_argument("--limit", metavar="N", default=None, help="at most N sessions")
    cli_common.add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    limit = cli_common.integer("--limit", args.limit, minimum=1, default=0)
    with cli_common.connect(args) as client:
        sessions = client.list_sessions(args.prefix, limit=limit + 1 if limit else 0)
        consumers = _consumers(client, args.prefix) if args.json else {}
    truncated = bool(limit) and len(sessions) > limit
    if limit:
        sessions = sessions[:limit]
    if args.json:
        cli_common.print_json({
            "sessions": [
                {**dataclasses.asdict(info), **consumers.get(info.session, {})}
                for info in sessions
            ],
            "truncated": truncated,
        })
        return 0
    cells = [[c.upper() for c in COLUMNS]]
    cells += [[str(getattr(info, c)) for c in COLUMNS] for info in sessions]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    for line in cells:
        cli_common.print_line(
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        )
    if truncated:
        cli_common.print_line(f"(more sessions follow; first {limit} shown)")
    return 0


def _consumers(client: Client, prefix: str) -> dict[str, dict[str, Any]]:
    """Per session: owner, lease expiry, lag, cursor and first unsettled offset per group,
    and the dead-letter count."""
    try:
        statuses = client.consumer.sessions(prefix)
    except errors.Unimplemented:
        return {}
    return {
        status.session: {
            "owner": {g.group: g.owner for g in status.groups if g.owner},
            "lease_expires_ms": {g.group: g.lease_expires_ms for g in status.groups if g.owner},
            "lag": {g.group: g.backlog for g in status.groups},
            "cursor": {g.group: g.next_offset for g in status.groups},
            "first_unsettled": {g.group: g.first_unsettled for g in status.groups},
            "dead_letters": status.dead_letters,
        }
        for status in statuses
    }
