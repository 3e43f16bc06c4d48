"""``quorumlog toxiproxy-server``: a Toxiproxy-compatible server (HTTP API plus proxies).

Owns: the command's options, serving the API on ``--host``/``--port`` (port 0 picks a free
one), printing exactly one ready line on stdout (``toxiproxy-server: API listening on
HOST:PORT``; launchers read the port from it), logging to stderr, and a clean stop on SIGINT
or SIGTERM (API closed, every proxy and connection closed, exit 0). Must never: hold API or
proxy logic (``toxiproxy_api``, ``proxy_collection``) or print anything else on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import sys

from quorumlog.chaos.proxy_collection import ProxyCollection
from quorumlog.chaos.toxiproxy_api import ToxiproxyApiServer
from quorumlog.client.cli import CliError

READY_PREFIX = "toxiproxy-server: API listening on "


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


async def serve(host: str, port: int, seed: int | None) -> None:
    """Run until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    server = ToxiproxyApiServer(ProxyCollection(random.Random(seed)))
    try:
        bound_host, bound_port = await server.start(host, port)
        print(f"{READY_PREFIX}{bound_host}:{bound_port}", flush=True)
        await stop.wait()
    finally:
        await server.close()
        for signum in signals:
            loop.remove_signal_handler(signum)


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
