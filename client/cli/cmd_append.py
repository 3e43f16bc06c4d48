"""``quorumlog append SESSION MESSAGE... [--json] [envelope flags]``: append messages, print
their offsets.

Each MESSAGE is one message (its UTF-8 bytes; bytes that are not valid UTF-8 on the command
line are kept as they were). Text output: one offset per line. JSON: ``{"offsets": [...]}``
plus ``session`` and ``commit_index``, and ``duplicates`` (positions of the MESSAGEs whose
``--message-id`` the session already held: their offset is the original's) when there are
any. The append is idempotent across retries.

Envelope (docs/envelope.md), given to every MESSAGE: ``--header KEY=VALUE`` (repeatable, a
text header; order kept), ``--message-id ID`` (one MESSAGE only), ``--correlation-id ID``,
``--reply-to SESSION``, ``--content-type TYPE``, ``--subject TEXT``, ``--ttl SECONDS``
(consumer groups do not get it once this long past its append), ``--deliver-at TIME``
(scheduled: groups get it once the leader's clock passes TIME, an ISO 8601 time with a zone
such as ``2026-12-24T18:00:00Z``, ``+SECONDS`` from now, or milliseconds since the epoch).
The server checks them: a bad one exits 2 with ``invalid argument: message N: ...`` and
appends nothing.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import time
from typing import Any

from quorumlog.client.cli import CliError
from quorumlog.client.cli import common as cli_common
from quorumlog.client.envelope import Envelope


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", metavar="SESSION", nargs="?", help="session name")
    parser.add_argument("messages", metavar="MESSAGE", nargs="*", help="messages to append")
    parser.add_argument("--header", dest="headers", metavar="KEY=VALUE", action="append",
                        default=[], help="an application header (repeatable)")
    parser.add_argument("--message-id", default="", metavar="ID",
                        help="the message's id (duplicate detection; one MESSAGE only)")
    parser.add_argument("--correlation-id", default="", metavar="ID")
    parser.add_argument("--reply-to", default="", metavar="SESSION",
                        help="the session replies should go to")
    parser.add_argument("--content-type", default="", metavar="TYPE",
                        help="a media type, e.g. application/json")
    parser.add_argument("--subject", default="", metavar="TEXT")
    parser.add_argument("--ttl", default=None, metavar="SECONDS",
                        help="time to live: not delivered to groups after this")
    parser.add_argument("--deliver-at", default=None, metavar="TIME",
                        help="scheduled delivery: ISO 8601 time, +SECONDS or epoch ms")
    cli_common.add_common_arguments(parser)


def deliver_at_ms(text: str, now: float) -> int:
    """``--deliver-at``'s value as milliseconds since the epoch."""
    problem = (f"--deliver-at {text!r}: expected an ISO 8601 time with a zone "
               "(2026-12-24T18:00:00Z), +SECONDS, or milliseconds since the epoch")
    try:
        if text.startswith("+"):
            seconds = float(text[1:])
            if not math.isfinite(seconds) or seconds < 0:
                raise CliError(problem)
            return int((now + seconds) * 1000)
        if text.isdigit():
            return int(text)
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(problem) from None
    if moment.tzinfo is None:
        raise CliError(problem)
    return int(moment.timestamp() * 1000)


def ttl_ms(text: str) -> int:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds <= 0:
        raise CliError(f"--ttl {text!r}: expected a positive number of seconds")
    return max(1, round(seconds * 1000))


def envelope_of(args: argparse.Namespace, count: int) -> Envelope | None:
    """The envelope the flags describe (None: no envelope flag was given)."""
    headers: dict[str, str] = {}
    for item in args.headers:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--header {item!r}: expected KEY=VALUE")
        if key in headers:
            raise CliError(f"--header {key!r} given twice")
        headers[key] = value
    if args.message_id and count > 1:
        raise CliError(f"--message-id names one message, but {count} MESSAGEs were given")
    envelope = Envelope(
        args.message_id, args.correlation_id, args.reply_to, args.content_type, args.subject,
        headers, time_to_live_ms=ttl_ms(args.ttl) if args.ttl is not None else 0,
        deliver_at_ms=deliver_at_ms(args.deliver_at, time.time())
        if args.deliver_at is not None else 0,
    )
    return None if envelope == Envelope() else envelope


def run(args: argparse.Namespace) -> int:
    session = cli_common.session_of(args)
    if not args.messages:
        raise CliError("give at least one MESSAGE to append")
    messages = [os.fsencode(message) for message in args.messages]
    envelope = envelope_of(args, len(messages))
    with cli_common.connect(args) as client:
        result = client.append(session, *messages, envelope=envelope)
    if args.json:
        answer: dict[str, Any] = {
            "offsets": result.offsets, "session": session, "commit_index": result.commit_index
        }
        if result.duplicates:
            answer["duplicates"] = list(result.duplicates)
        cli_common.print_json(answer)
    else:
        for offset in result.offsets:
            cli_common.print_line(str(offset))
    return 0
