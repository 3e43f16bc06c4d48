"""Running the console: the Starlette application under uvicorn, until a signal stops it.

Owns: uvicorn's configuration (no server header, no proxy headers trusted, HTTPS when the
settings name a certificate, the console's log lines) and the line printed once the console
listens. Must never: bind anything but the
settings' address, or serve anything but ``quorumlog.client.console.app``.
"""

from __future__ import annotations

import socket
import sys

import uvicorn

from quorumlog.client.console.app import build
from quorumlog.client.console.settings import ConsoleSettings


class _Server(uvicorn.Server):
    """uvicorn's server, announcing the URL on stdout once it listens (scripts wait on it)."""

    def __init__(self, config: uvicorn.Config, url: str) -> None:
        super().__init__(config)
        self._url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(f"console listening on {self._url}", flush=True)


def serve(settings: ConsoleSettings) -> bool:
    """Serve until SIGINT/SIGTERM; False when the address could not be bound."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config = uvicorn.Config(
        build(settings), host=settings.host, port=settings.port, lifespan="on",
        server_header=False, proxy_headers=False, log_level="warning", access_log=False,
        timeout_graceful_shutdown=2,
        ssl_certfile=None if settings.https_cert is None else str(settings.https_cert),
        ssl_keyfile=None if settings.https_key is None else str(settings.https_key),
    )
    scheme = "https" if settings.https else "http"
    server = _Server(config, f"{scheme}://{host}:{settings.port}/")
    server.run()
    if not server.started:
        print(f"quorumlog console: could not listen on {host}:{settings.port}",
              file=sys.stderr)
    return server.started
