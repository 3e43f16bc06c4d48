"""A Toxiproxy-compatible server process: the HTTP API plus proxies, until SIGINT or SIGTERM.

Owns (the command's flags are ``quorumlog.client.cli.cmd_toxiproxy_server``'s): serving the API on
``--host``/``--port`` (port 0 picks a free one), printing exactly one ready line on stdout
(``toxiproxy-server: API listening on HOST:PORT``; launchers read the port from it), logging to
stderr, and a clean stop on SIGINT or SIGTERM (API closed, every proxy and connection closed, exit
0). Must never: hold API or proxy logic (``toxiproxy_api``, ``proxy_collection``) or print anything
else on stdout.
"""

from __future__ import annotations

import asyncio
import random
import signal

from quorumlog.chaos.toxiproxy.api import ToxiproxyApiServer
from quorumlog.chaos.toxiproxy.proxy_collection import ProxyCollection

READY_PREFIX = "toxiproxy-server: API listening on "


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
