"""``quorumlog toxiproxy-server``: the flags, logging set-up and exit codes of the server.

Owns: turning flags into ``quorumlog.chaos.toxiproxy.server.serve`` (which prints the one
ready line launchers read) and its errors into one line and an exit code. Must never: hold
API or proxy logic.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from quorumlog.chaos.toxiproxy.server import serve
from quorumlog.client.cli import CliError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8474, help="API port (default 8474; 0 picks a free port)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed for toxicity draws and latency jitter"
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="stderr log level (default warning)",
    )


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be 0..65535, not {args.port}")
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="toxiproxy-server: %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(serve(args.host, args.port, args.seed))
    except OSError as error:
        raise CliError(f"cannot serve on {args.host}:{args.port}: {error}", code=1) from None
    return 0
