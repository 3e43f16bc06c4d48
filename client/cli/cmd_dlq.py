"""``quorumlog dlq list|resubmit|purge SESSION``: a session's dead-letter log.

``list [--from SEQ] [--limit N]``: text ``SEQUENCE<TAB>OFFSET<TAB>GROUP<TAB>DELIVERIES<TAB>
REASON<TAB>DATA`` per dead letter; JSON ``{"session", "dead_letters": [{"sequence", "offset",
"group", "reason", "delivery_count", "dead_lettered_ms", "dead_lettered" (the same time, UTC,
ISO 8601), "data"}]}`` (``data_b64`` on binary data; ``append_time_ms`` and ``envelope`` as
``read --json`` shows them). ``resubmit [--sequence SEQ ...]``: append the dead letters (all
of them when none is named, up to 1000 per call) to the session again and remove them from the
log; prints their new offsets (JSON ``{"session", "offsets", "remaining"}``). ``purge
[--sequence SEQ ...]``: remove the dead letters (all of them when none is named, up to 1000 per
call) for good; prints ``purged N dead letters; M remain`` (JSON ``{"session", "purged",
"remaining"}``); a sequence that is not held is refused (``not_found: dead letter N ...``,
exit 1) and nothing is removed. Owns: flags and output only.
"""

from __future__ import annotations

import argparse

from quorumlog.client.cli import CliError
from quorumlog.client.cli import common as cli_common
from quorumlog.client.sdk import Record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", metavar="ACTION", nargs="?",
                        choices=("list", "resubmit", "purge"), help="list, resubmit or purge")
    parser.add_argument("session", metavar="SESSION", nargs="?", help="session name")
    parser.add_argument("--from", dest="from_sequence", metavar="SEQ", default=None,
                        help="list: first dead-letter sequence (default 0)")
    parser.add_argument("--limit", metavar="N", default=None, help="list: at most N")
    parser.add_argument("--sequence", metavar="SEQ", action="append", default=[],
                        help="resubmit or purge: this dead letter (repeatable; default all)")
    cli_common.add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.action is None:
        raise CliError("ACTION must be list, resubmit or purge")
    session = cli_common.session_of(args)
    if args.action == "list":
        return _list(args, session)
    sequences = [cli_common.integer("--sequence", text, minimum=0, default=0)
                 for text in args.sequence]
    if args.action == "purge":
        return _purge(args, session, sequences)
    with cli_common.connect(args) as client:
        offsets, remaining = client.consumer.resubmit(session, sequences)
    if args.json:
        cli_common.print_json({"session": session, "offsets": offsets, "remaining": remaining})
    else:
        cli_common.print_line(
            f"resubmitted {len(offsets)} dead letters as offsets "
            f"{','.join(map(str, offsets)) or '-'}; {remaining} remain"
        )
    return 0


def _purge(args: argparse.Namespace, session: str, sequences: list[int]) -> int:
    with cli_common.connect(args) as client:
        purged, remaining = client.consumer.purge_dead_letters(session, sequences)
    if args.json:
        cli_common.print_json({"session": session, "purged": purged, "remaining": remaining})
    else:
        cli_common.print_line(f"purged {purged} dead letters; {remaining} remain")
    return 0


def _list(args: argparse.Namespace, session: str) -> int:
    start = cli_common.integer("--from", args.from_sequence, minimum=0, default=0)
    limit = cli_common.integer("--limit", args.limit, minimum=1, default=0)
    with cli_common.connect(args) as client:
        letters = client.consumer.dead_letters(session, from_sequence=start, limit=limit)
    if args.json:
        items = []
        for letter in letters:
            item = cli_common.record_json(Record(
                letter.offset, letter.data, letter.envelope, letter.append_time_ms))
            item.update(sequence=letter.sequence, group=letter.group, reason=letter.reason,
                        delivery_count=letter.delivery_count,
                        dead_lettered_ms=letter.dead_lettered_ms,
                        dead_lettered=cli_common.iso_time(letter.dead_lettered_ms))
            items.append(item)
        cli_common.print_json({"session": session, "dead_letters": items})
        return 0
    for letter in letters:
        cli_common.print_line(
            f"{letter.sequence}\t{letter.offset}\t{letter.group}\t{letter.delivery_count}\t"
            f"{letter.reason}\t{cli_common.text_of(letter.data)}"
        )
    return 0
