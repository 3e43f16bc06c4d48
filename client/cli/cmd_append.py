"""``quorumlog append SESSION MESSAGE... [--json]``: append messages, print their offsets.

Each MESSAGE is one message (its UTF-8 bytes; bytes that are not valid UTF-8 on the command
line are kept as they were). Text output: one offset per line. JSON: ``{"offsets": [...]}``
plus ``session`` and ``commit_index``. The append is idempotent across retries.
"""

from __future__ import annotations

import argparse
import os

from quorumlog.client.cli import CliError
from quorumlog.client.cli import common as cli_common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", metavar="SESSION", nargs="?", help="session name")
    parser.add_argument("messages", metavar="MESSAGE", nargs="*", help="messages to append")
    cli_common.add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    session = cli_common.session_of(args)
    if not args.messages:
        raise CliError("give at least one MESSAGE to append")
    messages = [os.fsencode(message) for message in args.messages]
    with cli_common.connect(args) as client:
        result = client.append(session, *messages)
    if args.json:
        cli_common.print_json(
            {"offsets": result.offsets, "session": session, "commit_index": result.commit_index}
        )
    else:
        for offset in result.offsets:
            cli_common.print_line(str(offset))
    return 0
