"""Shared pieces of the data-plane CLI commands (status, append, read, tail, sessions).

Owns: the ``--cluster``/``--deadline``/``--json`` flags, the security flags every client command
shares (``--tls-dir``, ``--tls-client``, ``--token``; README "Security"), validating numbers
without argparse's two-line usage errors, turning SDK errors into one clear :class:`CliError`
line, and rendering message bytes as text/JSON. Must never: retry or talk to grpc (the SDK
does that).

Binary data: a message that is valid UTF-8 is printed as that text. Otherwise text output
shows it with ``\\xNN`` escapes, and JSON gives ``"data"`` with the same escapes plus
``"data_b64"`` holding the exact bytes in base64.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from quorumlog.client import errors
from quorumlog.client.cli import CliError
from quorumlog.client.envelope import Envelope
from quorumlog.client.sdk import Client, Record
from quorumlog.client.tls import TLS_DIR_ENV, TOKEN_ENV, ClientSecurity, security_from

DEFAULT_CLUSTER = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
CLUSTER_ENV = "QUORUMLOG_CLUSTER"
DEFAULT_DEADLINE = 5.0

EXIT_USAGE = 2
EXIT_FAILURE = 1


def add_common_arguments(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    parser.add_argument(
        "--cluster",
        metavar="ADDRS",
        default=None,
        help=f"comma-separated node client addresses (default: ${CLUSTER_ENV}, "
        f"else {DEFAULT_CLUSTER})",
    )
    parser.add_argument(
        "--deadline",
        metavar="SECONDS",
        default=None,
        help=f"give up after this many seconds, retries included (default {DEFAULT_DEADLINE:g})",
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON")
    add_security_arguments(parser)


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tls-dir``, ``--tls-client`` and ``--token`` (read back with :func:`security_of`)."""
    group = parser.add_argument_group("security")
    group.add_argument(
        "--tls-dir",
        metavar="DIR",
        default=None,
        help=f"mutual TLS with DIR/ca.pem and DIR/client.pem (default: ${TLS_DIR_ENV}; "
        "none: plaintext)",
    )
    group.add_argument(
        "--tls-client",
        metavar="PRINCIPAL",
        default=None,
        help="use DIR/client-PRINCIPAL.pem instead of DIR/client.pem",
    )
    group.add_argument(
        "--token",
        metavar="TOKEN",
        default=None,
        help=f"bearer token to send (default: ${TOKEN_ENV}); see quorumlog certs token",
    )


def security_of(args: argparse.Namespace) -> ClientSecurity | None:
    """The TLS material and token the security flags ask for; None: plaintext."""
    try:
        return security_from(
            getattr(args, "tls_dir", None), getattr(args, "tls_client", None),
            getattr(args, "token", None),
        )
    except errors.QuorumLogError as error:
        raise CliError(error.message, EXIT_USAGE) from None


def cluster_addresses(args: argparse.Namespace) -> str:
    value = args.cluster if args.cluster is not None else os.environ.get(CLUSTER_ENV)
    return value if value else DEFAULT_CLUSTER


def deadline_of(args: argparse.Namespace, default: float = DEFAULT_DEADLINE) -> float:
    if args.deadline is None:
        return default
    try:
        value = float(args.deadline)
    except ValueError:
        raise CliError(f"--deadline must be a number of seconds, got {args.deadline!r}") from None
    if not 0 < value < 86400:
        raise CliError(f"--deadline must be positive, got {args.deadline!r}")
    return value


def integer(name: str, text: str | None, *, minimum: int, default: int) -> int:
    """Parse ``text`` as an int >= ``minimum``; one clear CliError otherwise."""
    if text is None:
        return default
    try:
        value = int(text, 10)
    except ValueError:
        raise CliError(f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise CliError(f"{name} must be at least {minimum}, got {value}")
    return value


def session_of(args: argparse.Namespace) -> str:
    session: str | None = args.session
    if not session:
        raise CliError("SESSION must be a non-empty session name")
    return session


@contextmanager
def connect(args: argparse.Namespace) -> Iterator[Client]:
    """A Client for ``args``; SDK errors inside the block become one-line CliErrors."""
    addresses = cluster_addresses(args)
    deadline = deadline_of(args)
    with cli_errors(addresses, deadline):
        client = Client(addresses, deadline=deadline, security=security_of(args))
        try:
            yield client
        finally:
            client.close()


@contextmanager
def cli_errors(addresses: str, deadline: float) -> Iterator[None]:
    try:
        yield
    except errors.InvalidArgument as error:
        raise CliError(f"invalid argument: {error.message}", EXIT_USAGE) from None
    except (errors.Unavailable, errors.DeadlineExceeded) as error:
        raise CliError(
            f"cluster {addresses} unavailable within {deadline:g}s: {error.message}",
            EXIT_FAILURE,
        ) from None
    except errors.QuorumLogError as error:
        raise CliError(f"{error.code.lower()}: {error.message}", EXIT_FAILURE) from None


def text_of(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def record_json(record: Record) -> dict[str, Any]:
    """``{"offset", "data"}`` (``data_b64`` too when the payload is not UTF-8), plus
    ``append_time_ms`` when known and ``envelope`` when the message has one."""
    item: dict[str, Any] = {"offset": record.offset, "data": text_of(record.data)}
    try:
        record.data.decode("utf-8")
    except UnicodeDecodeError:
        item["data_b64"] = base64.b64encode(record.data).decode("ascii")
    if record.append_time_ms:
        item["append_time_ms"] = record.append_time_ms
    if record.envelope is not None:
        item["envelope"] = envelope_json(record.envelope)
    return item


def envelope_json(envelope: Envelope) -> dict[str, Any]:
    """The envelope's set properties; ``headers`` maps a key to its text, or to
    ``{"b64": ...}`` for a binary value (in the order they were given)."""
    item: dict[str, Any] = {
        name: getattr(envelope, name)
        for name in ("message_id", "correlation_id", "reply_to", "content_type", "subject",
                     "time_to_live_ms", "deliver_at_ms")
        if getattr(envelope, name)
    }
    if envelope.headers:
        item["headers"] = {
            key: value if isinstance(value, str)
            else {"b64": base64.b64encode(value).decode("ascii")}
            for key, value in envelope.headers.items()
        }
    return item


def iso_time(milliseconds: int) -> str:
    """A leader time (ms since the epoch) as UTC ISO 8601, e.g. ``2026-12-24T18:00:00.000Z``."""
    moment = datetime.datetime.fromtimestamp(milliseconds / 1000, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
