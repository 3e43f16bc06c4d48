"""One Toxiproxy proxy: a listener on ``listen`` forwarding each connection to ``upstream``.

Owns: binding and unbinding the listen address (port 0 is resolved once and kept, so a
disabled proxy comes back on the same address), dialling the upstream for each accepted
client (closing the client at once when that fails), the proxy's toxics in the order added,
its live connections and pushing toxic changes into them, enable/disable and listen/upstream
updates. Must never: parse HTTP or request bodies (``toxiproxy_api``) or move bytes itself
(``toxic_link``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket

from quorumlog.chaos.toxiproxy.api_json import TOXIC_NOT_FOUND, ApiError, JsonValue
from quorumlog.chaos.toxiproxy.toxic_link import Connection
from quorumlog.chaos.toxiproxy.toxics import Toxic

DIAL_TIMEOUT = 10.0  # seconds; Toxiproxy has none, but a black-holed upstream must not pile up

log = logging.getLogger(__name__)


def split_host_port(address: str) -> tuple[str, str]:
    """``host, port`` of ``host:port`` or ``[v6]:port``, with Go's error wording."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ValueError(f"address {address}: missing ']' in address")
        if not address[end + 1 :].startswith(":"):
            raise ValueError(f"address {address}: missing port in address")
        return address[1:end], address[end + 2 :]
    if ":" not in address:
        raise ValueError(f"address {address}: missing port in address")
    host, port = address.rsplit(":", 1)
    if ":" in host:
        raise ValueError(f"address {address}: too many colons in address")
    return host, port


def format_address(address: tuple[object, ...]) -> str:
    host, port = str(address[0]), address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _errno_text(error: OSError) -> str:
    text = os.strerror(error.errno) if error.errno else str(error)
    return text[:1].lower() + text[1:]  # Go's syscall errors are lower case


async def bind_listener(listen: str) -> tuple[socket.socket, str]:
    """A listening socket for ``listen`` and its resolved ``host:port``; ApiError 500 if not."""
    try:
        host, port_text = split_host_port(listen)
    except ValueError as error:
        raise ApiError(f"listen tcp: {error}", 500) from None
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ApiError(f"listen tcp: address {listen}: invalid port", 500)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            host or "0.0.0.0", int(port_text), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        raise ApiError(f"listen tcp: lookup {host}: no such host", 500) from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise ApiError(
            f"listen tcp {format_address(address)}: bind: {_errno_text(error)}", 500
        ) from None
    return sock, format_address(sock.getsockname())


class Proxy:
    """A named proxy; all methods run on the event loop, mutations serialised by the API."""

    def __init__(self, name: str, listen: str, upstream: str, rng: random.Random) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.toxics: list[Toxic] = []  # in the order added, both directions
        self.connections: set[Connection] = set()
        self._random = rng
        self._server: asyncio.Server | None = None
        self._generation = 0  # bumped by every stop, so a dial in progress knows it is stale
        self._dialling: set[asyncio.StreamWriter] = set()  # clients waiting for their upstream

    # -- views -------------------------------------------------------------------------
    def ordered_toxics(self) -> list[Toxic]:
        """Upstream toxics first, then downstream, each in the order added."""
        return [t for t in self.toxics if t.direction == "upstream"] + [
            t for t in self.toxics if t.direction == "downstream"
        ]

    def find_toxic(self, name: str) -> Toxic:
        for toxic in self.toxics:
            if toxic.name == name:
                return toxic
        raise TOXIC_NOT_FOUND

    def has_toxic(self, name: str) -> bool:
        return any(toxic.name == name for toxic in self.toxics)

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [toxic.to_json() for toxic in self.ordered_toxics()],
        }

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Listen (no-op when already listening); ApiError 500 with the bind error."""
        if self._server is not None:
            return
        sock, resolved = await bind_listener(self.listen)
        try:
            self._server = await asyncio.start_server(self._accept, sock=sock)
        except BaseException:
            sock.close()
            raise
        self.listen = resolved
        self.enabled = True
        log.info("proxy %s listening on %s for %s", self.name, self.listen, self.upstream)

    async def stop(self) -> None:
        """Close the listener and every live connection."""
        server, self._server = self._server, None
        self.enabled = False
        self._generation += 1
        if server is not None:
            server.close()
        for writer in list(self._dialling):
            writer.transport.abort()
        for connection in list(self.connections):
            connection.close(force=True)
        if server is not None:
            await server.wait_closed()  # after the connections: 3.12+ waits for them

    async def update(self, listen: str, upstream: str, enabled: bool) -> None:
        """Toxiproxy's partial update: a new address restarts the proxy."""
        if listen != self.listen or upstream != self.upstream:
            await self.stop()
            self.listen, self.upstream = listen, upstream
        if enabled != self.enabled:
            if enabled:
                await self.start()
            else:
                await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        generation = self._generation
        self._dialling.add(writer)
        try:
            host, port = split_host_port(self.upstream)
            upstream = await asyncio.wait_for(
                asyncio.open_connection(host, int(port)), DIAL_TIMEOUT
            )
        except (OSError, ValueError, TimeoutError) as error:
            log.info("proxy %s: upstream %s unavailable: %s", self.name, self.upstream, error)
            writer.close()
            return
        finally:
            self._dialling.discard(writer)
        if generation != self._generation or self._server is None:
            writer.transport.abort()
            upstream[1].transport.abort()
            return
        connection = Connection(
            (reader, writer), upstream, self.toxics, self._random, self.connections.discard
        )
        self.connections.add(connection)
        connection.start()

    # -- toxics ------------------------------------------------------------------------
    async def add_toxic(self, toxic: Toxic) -> None:
        self.toxics.append(toxic)
        for connection in list(self.connections):
            connection.links[toxic.direction].add_toxic(toxic)

    async def update_toxic(self, toxic: Toxic) -> None:
        self.toxics = [toxic if t.name == toxic.name else t for t in self.toxics]
        for connection in list(self.connections):
            await connection.links[toxic.direction].update_toxic(toxic)

    async def remove_toxic(self, toxic: Toxic) -> None:
        self.toxics = [t for t in self.toxics if t.name != toxic.name]
        for connection in list(self.connections):
            await connection.links[toxic.direction].remove_toxic(toxic)

    async def remove_all_toxics(self) -> None:
        for toxic in self.ordered_toxics():
            await self.remove_toxic(toxic)
