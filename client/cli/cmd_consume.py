"""``quorumlog consume SESSION --group G``: receive messages of a session for a consumer group.

Peek-lock by default: the messages received are printed, then completed (``--settle complete``),
abandoned for redelivery (``abandon``) or left locked until their lock expires (``none``).
``--mode receive-and-delete`` settles them as they are delivered (at-most-once). ``--max N``
messages per receive (default 10), ``--wait SECONDS`` for the first one (default 1),
``--follow`` keeps receiving until Ctrl-C, ``--fencing-token T`` the fencing token of a lease
held on the session (see the SDK's ``accept``). The group is created with ``--lock-ms`` /
``--max-deliveries`` when it does not exist (``--no-create``: refuse instead).

Text output: ``OFFSET<TAB>DELIVERY_COUNT<TAB>DATA`` per message. JSON: per receive one object
``{"session", "group", "messages": [{"offset", "data", "delivery_count", "locked_until_ms"}],
"backlog", "settled"}`` (``data_b64`` on binary messages, see ``cli_common``); with
``--follow`` one such object per line. Owns: flags and output only (the SDK does the rest).
"""

from __future__ import annotations

import argparse

from quorumlog.client.cli import CliError
from quorumlog.client.cli import common as cli_common
from quorumlog.client.consumer import Received, ReceiveMode
from quorumlog.client.sdk import Client, Record

MODES = {"peek-lock": ReceiveMode.PEEK_LOCK, "receive-and-delete": ReceiveMode.RECEIVE_AND_DELETE}
SETTLE = ("complete", "abandon", "none")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", metavar="SESSION", nargs="?", help="session name")
    parser.add_argument("--group", metavar="G", default=None, help="consumer group (required)")
    parser.add_argument("--max", metavar="N", default=None,
                        help="messages per receive (default 10)")
    parser.add_argument("--wait", metavar="SECONDS", default=None,
                        help="wait this long for a message (default 1)")
    parser.add_argument("--mode", choices=sorted(MODES), default="peek-lock")
    parser.add_argument("--settle", choices=SETTLE, default="complete",
                        help="after printing peek-locked messages (default complete)")
    parser.add_argument("--follow", action="store_true", help="keep receiving until Ctrl-C")
    parser.add_argument("--fencing-token", metavar="T", default=None,
                        help="fencing token of a lease held on the session")
    parser.add_argument("--lock-ms", metavar="MS", default=None,
                        help="lock duration of a group this creates (default 30000)")
    parser.add_argument("--max-deliveries", metavar="N", default=None,
                        help="max delivery count of a group this creates (default 10)")
    parser.add_argument("--no-create", action="store_true",
                        help="refuse an unknown group instead of creating it")
    cli_common.add_common_arguments(parser)


def _seconds(text: str | None) -> int:
    """``--wait`` in whole milliseconds."""
    if text is None:
        return 1000
    try:
        value = float(text)
    except ValueError:
        raise CliError(f"--wait must be a number of seconds, got {text!r}") from None
    if not 0 <= value <= 60:
        raise CliError(f"--wait must be between 0 and 60 seconds, got {text!r}")
    return int(value * 1000)


def run(args: argparse.Namespace) -> int:
    session = cli_common.session_of(args)
    if not args.group:
        raise CliError("--group G is required")
    count = cli_common.integer("--max", args.max, minimum=1, default=10)
    wait_ms = _seconds(args.wait)
    token = cli_common.integer("--fencing-token", args.fencing_token, minimum=0, default=0)
    lock_ms = cli_common.integer("--lock-ms", args.lock_ms, minimum=1, default=0)
    max_deliveries = cli_common.integer(
        "--max-deliveries", args.max_deliveries, minimum=1, default=0
    )
    mode = MODES[args.mode]
    with cli_common.connect(args) as client:
        if not args.no_create:
            client.consumer.create_group(
                args.group, lock_ms=lock_ms, max_deliveries=max_deliveries, exist_ok=True
            )
        while True:
            batch: Received = client.consumer.receive(
                session, args.group, max_messages=count, token=token, mode=mode,
                wait_ms=wait_ms,
            )
            _print(args, batch, _settle(client, args, batch, mode))
            if not args.follow:
                return 0


def _settle(client: Client, args: argparse.Namespace, batch: Received, mode: ReceiveMode) -> str:
    if mode == ReceiveMode.RECEIVE_AND_DELETE or not batch.messages or args.settle == "none":
        return "none" if mode == ReceiveMode.PEEK_LOCK else "deleted"
    if args.settle == "abandon":
        client.consumer.abandon(batch.messages)
    else:
        client.consumer.complete(batch.messages)
    return str(args.settle)


def _print(args: argparse.Namespace, batch: Received, settled: str) -> None:
    if args.json:
        messages = []
        for message in batch.messages:
            item = cli_common.record_json(Record(
                message.offset, message.data, message.envelope, message.append_time_ms))
            item["delivery_count"] = message.delivery_count
            item["locked_until_ms"] = message.locked_until_ms
            messages.append(item)
        cli_common.print_json({
            "session": batch.session, "group": batch.group, "messages": messages,
            "backlog": batch.backlog, "settled": settled,
        })
        return
    for message in batch.messages:
        cli_common.print_line(
            f"{message.offset}\t{message.delivery_count}\t{cli_common.text_of(message.data)}"
        )
