"""Every built-in toxic, on real TCP connections, driven through toxiproxy-python.

Mirrors the scenarios Toxiproxy tests itself with (latency, bandwidth, timeout, reset_peer,
slicer, limit_data, slow_close, toxicity); timing bounds are strict below (toxics only add
delay) and wide above (the machine is busy).
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from toxiproxy_helpers import (
    EARLY,
    IMPLEMENTATIONS,
    SLACK,
    Sockets,
    UpstreamServer,
    make_client,
    make_sockets,
    nothing_arrives,
    read_until_end,
    recv_exactly,
    run_server,
)
from waiting import wait_until

from quorumlog.chaos.toxiproxy.client import LibraryProxy, ToxiproxyClient
from quorumlog.chaos.toxiproxy.toxics import slice_sizes

toxi_server = pytest.fixture(scope="module", params=IMPLEMENTATIONS)(run_server)
toxi = pytest.fixture(make_client)
sockets = pytest.fixture(make_sockets)


@pytest.fixture
def echo() -> Iterator[UpstreamServer]:
    with UpstreamServer("echo") as server:
        yield server


@pytest.fixture
def sink() -> Iterator[UpstreamServer]:
    with UpstreamServer("sink") as server:
        yield server


def _proxy(toxi: ToxiproxyClient, upstream: UpstreamServer, name: str = "t") -> LibraryProxy:
    return toxi.library.create(upstream=upstream.address, name=name)


# -- latency --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("up", "down"),
    [((100, 0), (0, 0)), ((0, 0), (100, 0)), ((100, 0), (100, 0)), ((100, 50), (100, 50))],
    ids=["upstream", "downstream", "both", "both-jitter"],
)
def test_latency(
    toxi: ToxiproxyClient,
    echo: UpstreamServer,
    sockets: Sockets,
    up: tuple[int, int],
    down: tuple[int, int],
) -> None:
    proxy = _proxy(toxi, echo)
    if up[0]:
        proxy.add_toxic(type="latency", stream="upstream",
                        attributes={"latency": up[0], "jitter": up[1]})  # fmt: skip
    if down[0]:
        proxy.add_toxic(type="latency", stream="downstream",
                        attributes={"latency": down[0], "jitter": down[1]})  # fmt: skip
    client = sockets.connect(proxy.listen)
    message = b"hello world " + b"a" * (32 * 1024) + b"\n"
    start = time.monotonic()
    client.sendall(message)
    assert recv_exactly(client, len(message), 10) == message
    done = time.monotonic()
    server_side = echo.accepted()[0]
    assert server_side.data() == message
    assert server_side.last_byte_at is not None
    upstream_delay = server_side.last_byte_at - start
    downstream_delay = done - server_side.last_byte_at
    assert upstream_delay >= (up[0] - up[1]) / 1000 - EARLY
    assert downstream_delay >= (down[0] - down[1]) / 1000 - EARLY
    assert done - start <= (up[0] + up[1] + down[0] + down[1]) / 1000 + SLACK


def test_latency_added_to_live_connection(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = _proxy(toxi, echo)
    client = sockets.connect(proxy.listen)
    client.sendall(b"before")
    assert recv_exactly(client, 6, 5) == b"before"
    proxy.add_toxic(type="latency", attributes={"latency": 200})
    start = time.monotonic()
    client.sendall(b"after")
    assert recv_exactly(client, 5, 5) == b"after"
    assert time.monotonic() - start >= 0.2 - EARLY
    proxy.destroy_toxic("latency_downstream")
    start = time.monotonic()
    client.sendall(b"again")
    assert recv_exactly(client, 5, 5) == b"again"
    assert time.monotonic() - start < 0.2 + SLACK


# -- bandwidth ------------------------------------------------------------------------------
def test_bandwidth(toxi: ToxiproxyClient, sink: UpstreamServer, sockets: Sockets) -> None:
    proxy = _proxy(toxi, sink)
    rate = 1000  # KB/s
    proxy.add_toxic(type="bandwidth", stream="upstream", attributes={"rate": rate})
    payload = b"hello world " * 40000  # 480 KB
    client = sockets.connect(proxy.listen)
    start = time.monotonic()
    client.sendall(payload)
    client.shutdown(socket.SHUT_WR)
    server_side = sink.accepted()[0]
    wait_until(lambda: server_side.eof_at is not None, 10, "the upstream to read everything")
    assert server_side.data() == payload
    assert server_side.eof_at is not None
    elapsed = server_side.eof_at - start
    expected = len(payload) / (rate * 1000)  # 0.48 s
    assert expected - EARLY <= elapsed <= expected + SLACK


def test_bandwidth_zero_holds_data_until_removed(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = _proxy(toxi, echo)
    proxy.add_toxic(type="bandwidth", name="stall", attributes={"rate": 0})
    client = sockets.connect(proxy.listen)
    client.sendall(b"held")
    assert nothing_arrives(client, 0.3)
    proxy.destroy_toxic("stall")
    assert recv_exactly(client, 4, 5) == b"held"  # nothing was dropped


# -- timeout --------------------------------------------------------------------------------
def test_timeout_toxic_does_not_cause_hang(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = _proxy(toxi, echo)
    client = sockets.connect(proxy.listen)
    echo.accepted()
    started = time.monotonic()
    proxy.add_toxic(type="latency", name="might_block", stream="upstream",
                    attributes={"latency": 10})  # fmt: skip
    proxy.add_toxic(type="timeout", name="timeout", stream="upstream", attributes={"timeout": 0})
    for _ in range(5):
        client.sendall(b"hello")
    proxy.destroy_toxic("might_block")
    assert time.monotonic() - started < 1 + SLACK
    assert nothing_arrives(client, 0.2)  # the timeout toxic drops it all
    assert echo.accepted()[0].data() == b""


def test_timeout_removal_closes_both_sides(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = _proxy(toxi, echo)
    client = sockets.connect(proxy.listen)
    server_side = echo.accepted()[0]
    proxy.add_toxic(type="timeout", name="to_delete", stream="upstream",
                    attributes={"timeout": 0})  # fmt: skip
    removed_at = time.monotonic()
    proxy.destroy_toxic("to_delete")
    result = read_until_end(client, 1 + SLACK)
    assert result.ended in ("eof", "reset") and result.data == b""
    assert result.ended_at - removed_at <= 1 + SLACK
    wait_until(lambda: server_side.eof_at is not None, 1 + SLACK, "EOF on the upstream side")


def test_timeout_closes_after_timeout(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = _proxy(toxi, echo)
    client = sockets.connect(proxy.listen)
    server_side = echo.accepted()[0]
    proxy.add_toxic(type="timeout", stream="upstream", attributes={"timeout": 300})
    added = time.monotonic()
    client.sendall(b"dropped")
    result = read_until_end(client, 0.3 + SLACK + 1)
    assert result.ended in ("eof", "reset")
    assert result.data == b""
    assert 0.3 - EARLY <= result.ended_at - added <= 0.3 + SLACK
    assert server_side.data() == b""


# -- reset_peer -----------------------------------------------------------------------------
@pytest.mark.parametrize("timeout_ms", [0, 200])
def test_reset_peer(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets, timeout_ms: int
) -> None:
    proxy = _proxy(toxi, echo)
    proxy.add_toxic(type="reset_peer", stream="upstream", attributes={"timeout": timeout_ms})
    client = sockets.connect(proxy.listen)
    sent = time.monotonic()
    client.sendall(b"hello world")
    result = read_until_end(client, timeout_ms / 1000 + SLACK + 1)
    assert result.ended == "reset", result
    assert result.data == b""
    assert result.ended_at - sent >= timeout_ms / 1000 - EARLY


# -- slicer ---------------------------------------------------------------------------------
def test_slice_sizes_follow_average_and_variation() -> None:
    rng = random.Random(7)
    sizes = slice_sizes(480_000, 1024, 512, rng)
    assert sum(sizes) == 480_000
    assert 480 // 2 <= len(sizes) <= 480 // 2 + 480
    assert max(sizes) <= 1024 + 512
    assert slice_sizes(24, 1, 0, rng) == [1] * 24
    assert slice_sizes(100, 1000, 0, rng) == [100]
    assert sum(slice_sizes(5000, 0, -3, rng)) == 5000  # nonsense attributes still terminate


def test_slicer_many_small_reads(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = _proxy(toxi, echo)
    proxy.add_toxic(type="slicer", attributes={
        "average_size": 1024, "size_variation": 512, "delay": 10_000,
    })  # fmt: skip
    payload = bytes(random.Random(1).randrange(256) for _ in range(24_000))
    client = sockets.connect(proxy.listen)
    client.sendall(payload)
    reads: list[int] = []
    received = bytearray()
    deadline = time.monotonic() + 10
    while len(received) < len(payload) and time.monotonic() < deadline:
        client.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = client.recv(65536)
        assert chunk, "EOF before all data arrived"
        reads.append(len(chunk))
        received += chunk
    assert bytes(received) == payload
    # About 24 pieces of 512..1536 bytes; without the slicer this is one or two reads.
    assert len(reads) >= 8, reads
    assert min(reads) <= 1536


def test_slicer_size_one_gives_one_byte_per_read(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = _proxy(toxi, echo)
    proxy.add_toxic(type="slicer", attributes={"average_size": 1, "delay": 20_000})
    payload = b"hello world " * 2  # 24 bytes
    client = sockets.connect(proxy.listen)
    client.sendall(payload)
    reads: list[bytes] = []
    deadline = time.monotonic() + 10
    while sum(map(len, reads)) < len(payload) and time.monotonic() < deadline:
        client.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = client.recv(1024)
        assert chunk, "EOF before all data arrived"
        reads.append(chunk)
    assert b"".join(reads) == payload
    # Pieces are 20 ms apart; a read only sees two if the reader was descheduled that long.
    assert sum(1 for chunk in reads if len(chunk) == 1) >= len(payload) // 2, reads


# -- limit_data -----------------------------------------------------------------------------
def test_limit_data_downstream_exact_cutoff(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = _proxy(toxi, echo)
    proxy.add_toxic(type="limit_data", attributes={"bytes": 100})
    client = sockets.connect(proxy.listen)
    first = bytes(range(90))
    client.sendall(first)
    assert recv_exactly(client, 90, 5) == first
    client.sendall(bytes(range(100, 120)))
    rest = read_until_end(client, 5)
    assert rest.data == bytes(range(100, 110))  # exactly 100 bytes in all
    assert rest.ended in ("eof", "reset")


def test_limit_data_upstream_exact_cutoff(
    toxi: ToxiproxyClient, sink: UpstreamServer, sockets: Sockets
) -> None:
    proxy = _proxy(toxi, sink)
    proxy.add_toxic(type="limit_data", stream="upstream", attributes={"bytes": 50})
    client = sockets.connect(proxy.listen)
    payload = bytes(range(80))
    client.sendall(payload)
    server_side = sink.accepted()[0]
    wait_until(lambda: server_side.eof_at is not None, 5, "the upstream to be closed")
    assert server_side.data() == payload[:50]
    result = read_until_end(client, 5)
    assert result.ended in ("eof", "reset") and result.data == b""


def test_limit_data_zero_closes_on_first_data(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = _proxy(toxi, echo)
    proxy.add_toxic(type="limit_data", attributes={"bytes": 0})
    client = sockets.connect(proxy.listen)
    client.sendall(b"x")
    result = read_until_end(client, 5)
    assert result.data == b"" and result.ended in ("eof", "reset")


# -- slow_close -----------------------------------------------------------------------------
def test_slow_close_delays_the_close_not_the_data(
    toxi: ToxiproxyClient, sockets: Sockets
) -> None:
    with UpstreamServer("greet_close", greeting=b"goodbye") as server:
        proxy = _proxy(toxi, server)
        proxy.add_toxic(type="slow_close", attributes={"delay": 500})
        client = sockets.connect(proxy.listen)
        assert recv_exactly(client, 7, 5) == b"goodbye"
        result = read_until_end(client, 0.5 + SLACK + 1)
        assert result.ended == "eof" and result.data == b""
        closed_at = server.accepted()[0].closed_at
        assert closed_at is not None
        assert 0.5 - EARLY <= result.ended_at - closed_at <= 0.5 + SLACK


def test_close_passes_through_without_slow_close(
    toxi: ToxiproxyClient, sockets: Sockets
) -> None:
    with UpstreamServer("greet_close", greeting=b"bye") as server:
        proxy = _proxy(toxi, server)
        client = sockets.connect(proxy.listen)
        result = read_until_end(client, 5)
        assert result.data == b"bye" and result.ended == "eof"
        closed_at = server.accepted()[0].closed_at
        assert closed_at is not None and result.ended_at - closed_at < SLACK


# -- toxicity -------------------------------------------------------------------------------
def test_toxicity_zero_passes_one_applies(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = _proxy(toxi, echo)
    proxy.add_toxic(type="timeout", name="maybe", stream="upstream", toxicity=0.0)
    client = sockets.connect(proxy.listen)
    client.sendall(b"passes")
    assert recv_exactly(client, 6, 5) == b"passes"

    # An update redraws toxicity on live connections.
    assert toxi.update_toxic("t", "maybe", toxicity=1.0)["toxicity"] == 1
    client.sendall(b"dropped")
    assert nothing_arrives(client, 0.3)
    other = sockets.connect(proxy.listen)
    other.sendall(b"dropped too")
    assert nothing_arrives(other, 0.3)

    toxi.update_toxic("t", "maybe", toxicity=0.0)
    client.sendall(b"again")
    assert recv_exactly(client, 5, 5) == b"again"


def test_toxicity_is_drawn_per_connection(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = _proxy(toxi, echo)
    proxy.add_toxic(type="latency", toxicity=0.5, attributes={"latency": 1000})
    clients = [sockets.connect(proxy.listen) for _ in range(16)]
    for client in clients:
        client.sendall(b"x")
    started = time.monotonic()
    # Each connection drew once: some pass at once, some wait the full second.
    results: list[float] = []
    lock = threading.Lock()

    def read(client: socket.socket) -> None:
        recv_exactly(client, 1, 5)
        with lock:
            results.append(time.monotonic() - started)

    threads = [threading.Thread(target=read, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 16
    fast = sum(1 for elapsed in results if elapsed < 0.9)
    # P(all 16 draws agree) = 2 * 0.5**16: negligible.
    assert 0 < fast < 16, sorted(results)
