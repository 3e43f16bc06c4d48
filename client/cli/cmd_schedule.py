"""``quorumlog schedule list|cancel SESSION``: a session's scheduled messages
(docs/envelope.md#scheduled-delivery-and-time-to-live).

``list [--all]``: the scheduled messages not yet due (``--all``: those whose time has come
too), by offset; text ``OFFSET<TAB>DELIVER_AT (UTC, ISO 8601)<TAB>canceled|scheduled``; JSON
``{"session", "scheduled": [{"offset", "deliver_at_ms", "deliver_at",
"canceled"}]}``. ``cancel OFFSET...``: cancel scheduled messages not yet due, all or none
(exit 1 naming the one that is due, canceled or not scheduled); no consumer group will get
them, readers of the log still see them. Owns: flags and output only.
"""

from __future__ import annotations

import argparse

from quorumlog.client.cli import CliError
from quorumlog.client.cli import common as cli_common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", metavar="ACTION", nargs="?", choices=("list", "cancel"),
                        help="list or cancel")
    parser.add_argument("session", metavar="SESSION", nargs="?", help="session name")
    parser.add_argument("offsets", metavar="OFFSET", nargs="*", help="cancel: these messages")
    parser.add_argument("--all", action="store_true",
                        help="list: also the messages whose time has come")
    cli_common.add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.action is None:
        raise CliError("ACTION must be list or cancel")
    session = cli_common.session_of(args)
    if args.action == "cancel":
        if not args.offsets:
            raise CliError("give the OFFSET of each scheduled message to cancel")
        offsets = [cli_common.integer("OFFSET", text, minimum=0, default=0)
                   for text in args.offsets]
        with cli_common.connect(args) as client:
            client.consumer.cancel_scheduled(session, offsets)
        if args.json:
            cli_common.print_json({"session": session, "canceled": offsets})
        else:
            cli_common.print_line(f"canceled {len(offsets)} scheduled messages")
        return 0
    if args.offsets:
        raise CliError("list takes no OFFSET")
    with cli_common.connect(args) as client:
        scheduled = client.consumer.scheduled(session, include_due=args.all)
    if args.json:
        cli_common.print_json({"session": session, "scheduled": [
            {"offset": m.offset, "deliver_at_ms": m.deliver_at_ms,
             "deliver_at": cli_common.iso_time(m.deliver_at_ms), "canceled": m.canceled}
            for m in scheduled
        ]})
    else:
        for m in scheduled:
            state = "canceled" if m.canceled else "scheduled"
            cli_common.print_line(f"{m.offset}\t{cli_common.iso_time(m.deliver_at_ms)}\t{state}")
    return 0
