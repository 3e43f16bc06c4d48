"""``quorumlog certs``: development TLS material and bearer tokens.

``certs init DIR`` creates (or extends) a TLS directory: a CA (reused when DIR has one), a
certificate per node (``--nodes n1,n2,n3``), a certificate per client principal
(``--clients admin,...``; the first is also ``client.pem``, what ``--tls-dir`` uses, unless
DIR has one) and an
Ed25519 token key pair. ``certs token --key FILE --principal NAME`` prints a signed bearer
token (``FILE``: an Ed25519 private key such as ``DIR/token.key``, or an HMAC secret file).
Owns: these two commands' flags and output. Must never: overwrite an existing CA (it is reused,
so new certificates join the same cluster) or print private keys.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from quorumlog.client.cli import CliError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,62}$")


def _names(text: str, flag: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if not _NAME.match(name):
            raise CliError(f"{flag}: invalid name {name!r} (letters, digits, . _ : @ -)")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="create a development CA, node and client certificates")
    init.add_argument("dir", type=Path, metavar="DIR")
    init.add_argument(
        "--nodes", default="n1,n2,n3", help="node names (default n1,n2,n3; \"\" for none)"
    )
    init.add_argument(
        "--clients", default="admin", help="client principals; the first is client.pem (admin)"
    )
    init.add_argument(
        "--san", action="append", default=[],
        help="extra host name or IP for every node certificate (repeatable)",
    )
    init.add_argument("--days", type=int, default=825, help="validity (default 825 days)")
    token = sub.add_parser("token", help="print a signed bearer token for a principal")
    token.add_argument("--key", type=Path, required=True, help="DIR/token.key or an HMAC secret")
    token.add_argument("--principal", required=True, help="the token's subject")
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds valid (default 3600)")


def run(args: argparse.Namespace) -> int:
    # cryptography is imported only by this command (and by nodes using TLS).
    from quorumlog.client.cli import certs  # noqa: PLC0415
    from quorumlog.node.api.auth import TokenKey  # noqa: PLC0415

    if args.certs_command == "token":
        if args.ttl <= 0:
            raise CliError("--ttl must be positive")
        try:
            key = TokenKey.load(args.key)
            print(key.sign(args.principal, args.ttl), flush=True)
        except ValueError as error:
            raise CliError(f"--key: {error}") from None
        return 0
    if not 1 <= args.days <= 36500:
        raise CliError("--days must be between 1 and 36500")
    nodes = _names(args.nodes, "--nodes")
    clients = _names(args.clients, "--clients")
    for san in args.san:
        _names(san, "--san")
    try:
        written = certs.init_directory(args.dir, nodes, clients, tuple(args.san), args.days)
    except (OSError, ValueError) as error:
        raise CliError(f"{args.dir}: {error}", code=1) from None
    print(f"TLS directory {args.dir}: {', '.join(path.name for path in written)}", flush=True)
    return 0
