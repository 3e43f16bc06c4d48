"""``quorumlog console``: the web console (docs/console.md).

``--cluster ADDRS`` (as every command), ``--listen HOST:PORT`` (default 127.0.0.1:8080; a
non-loopback address needs ``--require-login``), ``--read-only`` (no actions),
``--require-login`` (every user logs in with a cluster token, and the console's calls for
them carry it), ``--audit-log FILE``, ``--cookie-key-file FILE`` (a key that keeps logins
across restarts: created, mode 0600, when missing), ``--tls-dir``/``--tls-client``/``--token``
(the console's own identity toward the cluster), ``--https-cert FILE --https-key FILE`` (serve
HTTPS; cookies are then marked Secure). Owns: flags only.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cryptography.fernet import Fernet

from quorumlog.client.cli import CliError
from quorumlog.client.cli import common as cli_common
from quorumlog.client.console import identity, server
from quorumlog.client.console.settings import (
    DEFAULT_LISTEN,
    ConsoleSettings,
    SettingsError,
    parse_listen,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", metavar="HOST:PORT", default=DEFAULT_LISTEN,
                        help=f"where to serve the console (default {DEFAULT_LISTEN})")
    parser.add_argument("--read-only", action="store_true",
                        help="show, never change: no action buttons, every action refused")
    parser.add_argument("--require-login", action="store_true",
                        help="every user logs in with a cluster token; the console acts "
                        "for them with it, so the cluster's ACLs apply")
    parser.add_argument("--audit-log", metavar="FILE", type=Path, default=None,
                        help="also append each action's audit line (JSON) to FILE")
    parser.add_argument("--cookie-key-file", metavar="FILE", type=Path, default=None,
                        help="the key sealing the console's cookies (created when missing); "
                        "default: a new key each start, so logins end with the process")
    parser.add_argument("--https-cert", metavar="FILE", type=Path, default=None,
                        help="serve HTTPS with this PEM certificate chain (with --https-key)")
    parser.add_argument("--https-key", metavar="FILE", type=Path, default=None,
                        help="the PEM private key of --https-cert")
    cli_common.add_common_arguments(parser, json_flag=False)


def cookie_key(path: Path | None) -> bytes | None:
    """The key in ``path``, made (mode 0600, fsynced) when the file is missing; None: none."""
    if path is None:
        return None
    try:
        if not path.exists():
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(Fernet.generate_key())
                file.flush()
                os.fsync(file.fileno())
        key = path.read_bytes().strip()
    except OSError as error:
        raise CliError(f"--cookie-key-file {path}: {error.strerror or error}") from None
    if not identity.valid_key(key):
        raise CliError(f"--cookie-key-file {path}: not a console key (32 url-safe base64 "
                       "bytes); delete it to have a new one made")
    return key


def run(args: argparse.Namespace) -> int:
    try:
        host, port = parse_listen(args.listen)
        settings = ConsoleSettings(
            addresses=[part.strip() for part in cli_common.cluster_addresses(args).split(",")
                       if part.strip()],
            host=host, port=port, security=cli_common.security_of(args),
            read_only=args.read_only, require_login=args.require_login,
            audit_log=args.audit_log, cookie_key=cookie_key(args.cookie_key_file),
            https_cert=args.https_cert, https_key=args.https_key,
            deadline=cli_common.deadline_of(args, 10.0),
        )
    except SettingsError as error:
        raise CliError(str(error)) from None
    return 0 if server.serve(settings) else 1
