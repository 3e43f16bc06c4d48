"""Proxies and links: no data lost while toxics churn, per-connection toxic state, upstream
down, large messages, enable/disable and updates on live connections.

Driven through toxiproxy-python against our server (and the real one when installed).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from toxiproxy_helpers import (
    IMPLEMENTATIONS,
    SLACK,
    Sockets,
    UpstreamServer,
    make_client,
    make_sockets,
    read_until_end,
    recv_exactly,
    refused_address,
    run_server,
)
from waiting import wait_until

from quorumlog.chaos.toxiproxy.client import ToxiproxyClient

toxi_server = pytest.fixture(scope="module", params=IMPLEMENTATIONS)(run_server)
toxi = pytest.fixture(make_client)
sockets = pytest.fixture(make_sockets)


@pytest.fixture
def echo() -> Iterator[UpstreamServer]:
    with UpstreamServer("echo") as server:
        yield server


def _refused(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return False
    except OSError:
        return True


def _closed(sock: socket.socket, timeout: float) -> bool:
    """True if ``sock`` reads EOF or a reset (no data) within ``timeout``."""
    result = read_until_end(sock, timeout)
    return result.ended in ("eof", "reset") and result.data == b""


# -- links ----------------------------------------------------------------------------------
CHURN = [
    ("latency", "downstream", {"latency": 1000}),
    ("latency", "upstream", {"latency": 500, "jitter": 100}),
    ("bandwidth", "upstream", {"rate": 20}),
    ("bandwidth", "downstream", {"rate": 0}),
    ("slicer", "downstream", {"average_size": 3, "size_variation": 1, "delay": 100}),
    ("slow_close", "upstream", {"delay": 100}),
    ("noop", "downstream", {}),
]


def test_no_data_lost_while_toxics_churn(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = toxi.library.create(upstream=echo.address, name="churn")
    client = sockets.connect(proxy.listen)
    count = 32 * 1024  # 2-byte big-endian counters, 64 KiB in all
    stop = threading.Event()
    churned = [0]
    failures: list[BaseException] = []

    def send() -> None:
        try:
            for start in range(0, count, 256):
                client.sendall(b"".join(struct.pack(">H", i) for i in range(start, start + 256)))
                if stop.wait(0.004):  # pace the writes so toxics come and go in between
                    return
        except BaseException as error:
            failures.append(error)

    def churn() -> None:
        try:
            for round_number in range(400):
                if stop.is_set():
                    return
                toxic_type, stream, attributes = CHURN[round_number % len(CHURN)]
                toxi.add_toxic("churn", toxic_type, stream=stream, attributes=attributes,
                               name="churning")  # fmt: skip
                if round_number % 3 == 0 and toxic_type == "latency":
                    toxi.update_toxic("churn", "churning", attributes={"latency": 700})
                toxi.remove_toxic("churn", "churning")
                churned[0] += 1
        except BaseException as error:
            failures.append(error)

    sender = threading.Thread(target=send)
    churner = threading.Thread(target=churn)
    sender.start()
    churner.start()
    try:
        received = recv_exactly(client, 2 * count, 30)
    finally:
        stop.set()
        sender.join(timeout=10)
        churner.join(timeout=30)
    assert not failures, failures
    assert churned[0] >= 10, churned  # the toxics really did come and go while data flowed
    values = struct.unpack(f">{count}H", received)
    assert values == tuple(range(count))


def test_limit_data_state_is_per_connection(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = toxi.library.create(upstream=echo.address, name="state")
    proxy.add_toxic(type="limit_data", name="limit", attributes={"bytes": 100})
    first = sockets.connect(proxy.listen)
    second = sockets.connect(proxy.listen)
    first.sendall(b"a" * 60)
    assert recv_exactly(first, 60, 5) == b"a" * 60
    second.sendall(b"b" * 100)  # its own budget of 100, untouched by the first connection
    assert recv_exactly(second, 100, 5) == b"b" * 100
    assert _closed(second, 5)

    # Updating the toxic restarts it on the live link but keeps the count: 60 sent, 150 max.
    toxi.update_toxic("state", "limit", attributes={"bytes": 150})
    first.sendall(b"c" * 100)
    result = read_until_end(first, 5)
    assert result.data == b"c" * 90
    assert result.ended in ("eof", "reset")


def test_toxics_apply_to_new_and_live_connections_separately(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = toxi.library.create(upstream=echo.address, name="order")
    proxy.add_toxic(type="latency", stream="upstream", attributes={"latency": 150})
    proxy.add_toxic(type="latency", stream="downstream", attributes={"latency": 150})
    client = sockets.connect(proxy.listen)
    start = time.monotonic()
    client.sendall(b"slow")
    assert recv_exactly(client, 4, 5) == b"slow"
    elapsed = time.monotonic() - start
    assert 0.3 - 0.01 <= elapsed <= 0.3 + SLACK  # toxics in a chain add up


# -- proxies --------------------------------------------------------------------------------
def test_upstream_down_gives_eof_quickly(toxi: ToxiproxyClient, sockets: Sockets) -> None:
    holder, address = refused_address()
    try:
        proxy = toxi.library.create(upstream=address, name="down")
        client = sockets.connect(proxy.listen)
        start = time.monotonic()
        result = read_until_end(client, 5)
        assert result.ended in ("eof", "reset") and result.data == b""
        assert result.ended_at - start < SLACK
    finally:
        holder.close()


def test_upstream_eof_closes_client(toxi: ToxiproxyClient, sockets: Sockets) -> None:
    with UpstreamServer("greet_close", greeting=b"over") as server:
        proxy = toxi.library.create(upstream=server.address, name="eof")
        client = sockets.connect(proxy.listen)
        result = read_until_end(client, 5)
        assert result.data == b"over" and result.ended == "eof"


def test_client_eof_closes_upstream(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = toxi.library.create(upstream=echo.address, name="eof")
    client = sockets.connect(proxy.listen)
    client.sendall(b"last words")
    client.shutdown(socket.SHUT_WR)
    server_side = echo.accepted()[0]
    wait_until(lambda: server_side.eof_at is not None, 5, "EOF at the upstream")
    assert server_side.data() == b"last words"


@pytest.mark.parametrize("size", [4 * 1024 * 1024])
def test_large_message_round_trip(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets, size: int
) -> None:
    proxy = toxi.library.create(upstream=echo.address, name="large")
    proxy.add_toxic(type="latency", stream="upstream", attributes={"latency": 5})
    client = sockets.connect(proxy.listen)
    payload = bytes(i * 7 % 251 for i in range(size))
    failures: list[BaseException] = []

    def send() -> None:
        try:
            client.sendall(payload)
        except BaseException as error:
            failures.append(error)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        received = recv_exactly(client, size, 30)
    finally:
        sender.join(timeout=30)
    assert not failures
    assert received == payload


def test_disable_closes_listener_and_live_connections(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = toxi.library.create(upstream=echo.address, name="flip")
    client = sockets.connect(proxy.listen)
    client.sendall(b"up")
    assert recv_exactly(client, 2, 5) == b"up"
    server_side = echo.accepted()[0]

    proxy.disable()
    assert _closed(client, 5)
    wait_until(lambda: server_side.eof_at is not None, 5, "the upstream side to close")
    assert _refused(proxy.listen)

    proxy.enable()
    again = sockets.connect(proxy.listen)  # same address as before
    again.sendall(b"back")
    assert recv_exactly(again, 4, 5) == b"back"

    with proxy.down():
        assert _closed(again, 5)
        assert _refused(proxy.listen)
    third = sockets.connect(proxy.listen)
    third.sendall(b"3")
    assert recv_exactly(third, 1, 5) == b"3"


def test_update_upstream_drops_connections(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = toxi.library.create(upstream=echo.address, name="move")
    client = sockets.connect(proxy.listen)
    client.sendall(b"one")
    assert recv_exactly(client, 3, 5) == b"one"
    with UpstreamServer("echo") as other:
        toxi.update_proxy("move", upstream=other.address)
        assert _closed(client, 5)
        moved = sockets.connect(proxy.listen)
        moved.sendall(b"two")
        assert recv_exactly(moved, 3, 5) == b"two"
        assert other.accepted()[0].data() == b"two"


def test_delete_closes_live_connections(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = toxi.library.create(upstream=echo.address, name="gone")
    client = sockets.connect(proxy.listen)
    client.sendall(b"x")
    assert recv_exactly(client, 1, 5) == b"x"
    proxy.destroy()
    assert _closed(client, 5)
    assert _refused(proxy.listen)


def test_many_connections_at_once(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = toxi.library.create(upstream=echo.address, name="many")
    clients = [sockets.connect(proxy.listen) for _ in range(20)]
    for number, client in enumerate(clients):
        client.sendall(f"client {number:02d}".encode())
    for number, client in enumerate(clients):
        assert recv_exactly(client, 9, 5) == f"client {number:02d}".encode()
    for client in clients:
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)
    wait_until(lambda: len(echo.accepted(20)) == 20, 5, "20 upstream connections")
