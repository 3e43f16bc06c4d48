"""Shared pieces of the toxiproxy tests: server fixtures, an upstream TCP server, socket reads.

Every server listens on 127.0.0.1 only; every wait is bounded by a deadline; everything
started here is stopped and closed by the fixture or context manager that started it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from waiting import wait_until

from quorumlog.chaos.toxiproxy.client import (
    ToxiproxyClient,
    ToxiproxyServer,
    available_implementations,
)

IMPLEMENTATIONS = available_implementations()

# Upper bounds are wide: the suite shares two cores with CPU-heavy simulations.
SLACK = 1.5
# Lower bounds allow for timer granularity only: toxics never deliver early.
EARLY = 0.01


# -- fixtures (bound in each test module with pytest.fixture) -----------------------------
def run_server(request: pytest.FixtureRequest) -> Iterator[ToxiproxyServer]:
    with ToxiproxyServer(request.param) as server:
        yield server
    if server.implementation == "quorumlog":
        errors = server.stderr_text()
        for marker in ("Traceback", "never retrieved", "Exception in", "ResourceWarning"):
            assert marker not in errors, errors


def make_client(toxi_server: ToxiproxyServer) -> Iterator[ToxiproxyClient]:
    client = toxi_server.client()
    try:
        yield client
    finally:
        for name in list(client.library.proxies()):
            client.destroy_proxy(name)


def make_sockets() -> Iterator[Sockets]:
    sockets = Sockets()
    try:
        yield sockets
    finally:
        sockets.close_all()


# -- client sockets -----------------------------------------------------------------------
def host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


@dataclass
class ReadResult:
    data: bytes
    reads: list[int]  # size of each recv that returned data
    ended: Literal["eof", "reset", "timeout"]
    ended_at: float


class Sockets:
    """Client sockets a test opens; all closed at teardown."""

    def __init__(self) -> None:
        self._open: list[socket.socket] = []

    def connect(self, address: str, timeout: float = 5.0) -> socket.socket:
        sock = socket.create_connection(host_port(address), timeout=timeout)
        self._open.append(sock)
        return sock

    def close_all(self) -> None:
        for sock in self._open:
            sock.close()


def recv_exactly(sock: socket.socket, count: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    data = bytearray()
    while len(data) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"received {len(data)} of {count} bytes in {timeout}s")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(count - len(data))
        except TimeoutError:
            continue
        if not chunk:
            raise AssertionError(f"EOF after {len(data)} of {count} bytes")
        data += chunk
    return bytes(data)


def read_until_end(sock: socket.socket, timeout: float, size: int = 65536) -> ReadResult:
    """Everything until EOF or reset (or the deadline), with the size of each read."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    reads: list[int] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return ReadResult(bytes(data), reads, "timeout", time.monotonic())
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(size)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return ReadResult(bytes(data), reads, "reset", time.monotonic())
        if not chunk:
            return ReadResult(bytes(data), reads, "eof", time.monotonic())
        reads.append(len(chunk))
        data += chunk


def nothing_arrives(sock: socket.socket, window: float) -> bool:
    """True if no byte (and no EOF) arrives within ``window`` seconds."""
    sock.settimeout(window)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    return False


def error_of(exception: BaseException) -> Any:
    """The JSON body carried by a toxiproxy-python exception (it holds the raw content)."""
    return json.loads(exception.args[0])


# -- the upstream the proxies dial --------------------------------------------------------
@dataclass
class ServerConnection:
    sock: socket.socket
    received: bytearray = field(default_factory=bytearray)
    reads: int = 0
    last_byte_at: float | None = None
    eof_at: float | None = None
    closed_at: float | None = None
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def data(self) -> bytes:
        with self.lock:
            return bytes(self.received)


Mode = Literal["echo", "sink", "greet_close"]


class UpstreamServer:
    """A TCP server on 127.0.0.1: ``echo`` (default), ``sink`` (read only) or
    ``greet_close`` (send ``greeting``, then close). Records what each connection received."""

    def __init__(self, mode: Mode = "echo", greeting: bytes = b"bye") -> None:
        self.mode = mode
        self.greeting = greeting
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        host, port = self._listener.getsockname()[:2]
        self.address = f"{host}:{port}"
        self.connections: list[ServerConnection] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def __enter__(self) -> UpstreamServer:
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        with self._lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(timeout=5)
        for connection in connections:
            connection.sock.close()
        self._listener.close()

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def accepted(self, count: int = 1, timeout: float = 5.0) -> list[ServerConnection]:
        wait_until(lambda: len(self.connections) >= count, timeout, f"{count} connection(s)")
        with self._lock:
            return list(self.connections)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            connection = ServerConnection(sock)
            with self._lock:
                if self._stop.is_set():
                    sock.close()
                    return
                self.connections.append(connection)
            self._spawn(self._serve, connection)

    def _serve(self, connection: ServerConnection) -> None:
        sock = connection.sock
        try:
            if self.mode == "greet_close":
                sock.sendall(self.greeting)
                connection.closed_at = time.monotonic()
                sock.shutdown(socket.SHUT_RDWR)
                return
            while True:
                data = sock.recv(65536)
                if not data:
                    connection.eof_at = time.monotonic()
                    break
                with connection.lock:
                    connection.received += data
                    connection.reads += 1
                    connection.last_byte_at = time.monotonic()
                if self.mode == "echo":
                    sock.sendall(data)
        except OSError as error:
            connection.error = repr(error)
            connection.eof_at = connection.eof_at or time.monotonic()
        finally:
            if connection.closed_at is None:
                connection.closed_at = time.monotonic()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def refused_address() -> tuple[socket.socket, str]:
    """A bound but not listening socket: connecting to its address is refused.

    The caller closes the socket; holding it keeps the port from being reused meanwhile.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()[:2]
    return sock, f"{host}:{port}"
