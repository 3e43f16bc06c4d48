"""``quorumlog tail SESSION [--from N]``: print messages as they are committed, until Ctrl-C.

Without ``--from`` it starts at the session's current end (like ``tail -f``; a session that
does not exist yet is followed from 0). Output: ``OFFSET<TAB>DATA`` per message, flushed at
once; ``--json`` prints one ``{"offset", "data"}`` object per line. ``--limit N`` exits after
N messages. Follows the cluster across leader changes without gaps or duplicates.
"""

from __future__ import annotations

import argparse

from quorumlog.client import errors
from quorumlog.client.cli import common as cli_common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", metavar="SESSION", nargs="?", help="session name")
    parser.add_argument("--from", dest="from_offset", metavar="N", default=None,
                        help="first offset (default: the session's current end)")
    parser.add_argument("--limit", metavar="N", default=None,
                        help="exit after N messages (default: never)")
    cli_common.add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    session = cli_common.session_of(args)
    from_offset = cli_common.integer("--from", args.from_offset, minimum=0, default=-1)
    limit = cli_common.integer("--limit", args.limit, minimum=1, default=0)
    with cli_common.connect(args) as client:
        if from_offset < 0:
            try:
                from_offset = client.describe_session(session).next_offset
            except errors.NotFound:
                from_offset = 0
        printed = 0
        with client.subscribe(session, from_offset) as subscription:
            for record in subscription:
                if args.json:
                    cli_common.print_json(cli_common.record_json(record))
                else:
                    cli_common.print_line(f"{record.offset}\t{cli_common.text_of(record.data)}")
                printed += 1
                if limit and printed >= limit:
                    break
    return 0
