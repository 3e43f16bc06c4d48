"""``quorumlog read SESSION [--from N] [--limit N] [--json]``: one page of a session.

Text output: ``OFFSET<TAB>DATA`` per message. JSON: ``{"session", "messages": [{"offset",
"data"}], "next_offset"}`` (plus ``first_offset``, ``end_offset``; ``data_b64`` on binary
messages, see ``cli_common``). ``--limit`` is at least 1 (default: the server's page size);
the server may return fewer; continue from ``next_offset``. ``--follower`` allows a cheaper,
possibly stale read from any node.
"""

from __future__ import annotations

import argparse

from quorumlog.client.cli import common as cli_common
from quorumlog.client.sdk import Consistency


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", metavar="SESSION", nargs="?", help="session name")
    parser.add_argument("--from", dest="from_offset", metavar="N", default=None,
                        help="first offset to read (default 0)")
    parser.add_argument("--limit", metavar="N", default=None,
                        help="at most N messages (default: server page size)")
    parser.add_argument("--follower", action="store_true",
                        help="possibly stale read served by any node")
    cli_common.add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    session = cli_common.session_of(args)
    from_offset = cli_common.integer("--from", args.from_offset, minimum=0, default=0)
    limit = cli_common.integer("--limit", args.limit, minimum=1, default=0)
    consistency = Consistency.FOLLOWER if args.follower else Consistency.LINEARIZABLE
    with cli_common.connect(args) as client:
        page = client.read(session, from_offset, limit, consistency=consistency)
    if args.json:
        cli_common.print_json({
            "session": session,
            "messages": [cli_common.record_json(record) for record in page.records],
            "next_offset": page.next_offset,
            "first_offset": page.first_offset,
            "end_offset": page.end_offset,
        })
    else:
        for record in page.records:
            cli_common.print_line(f"{record.offset}\t{cli_common.text_of(record.data)}")
    return 0
