"""Toxiproxy HTTP API: status codes, error strings and JSON shapes, through toxiproxy-python.

Runs against ``quorumlog toxiproxy-server`` and, when one is on PATH, the real
``toxiproxy-server`` too (the parameter only exists when the binary does).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from toxiproxy.api import APIConsumer
from toxiproxy_helpers import (
    IMPLEMENTATIONS,
    Sockets,
    UpstreamServer,
    error_of,
    make_client,
    make_sockets,
    recv_exactly,
    run_server,
)
from waiting import wait_until

from quorumlog.chaos.toxiproxy.client import (
    CLI_COMMAND,
    InvalidToxic,
    NotFound,
    ProxyExists,
    ToxiproxyApiError,
    ToxiproxyClient,
    ToxiproxyServer,
)

toxi_server = pytest.fixture(scope="module", params=IMPLEMENTATIONS)(run_server)
toxi = pytest.fixture(make_client)
sockets = pytest.fixture(make_sockets)

LISTEN_RE = re.compile(r"^127\.0\.0\.1:(\d+)$")


@pytest.fixture
def echo() -> Iterator[UpstreamServer]:
    with UpstreamServer("echo") as server:
        yield server


def _body(result: Any) -> Any:
    return json.loads(result.text)


def _assert_error(result: Any, status: int, message: str) -> None:
    assert result.status == status, result.text
    assert result.content_type.startswith("text/plain"), result.content_type
    assert _body(result) == {"error": message, "status": status}


# -- basics ---------------------------------------------------------------------------------
def test_running_and_version(toxi: ToxiproxyClient, toxi_server: ToxiproxyServer) -> None:
    library = toxi.library
    assert library.running() is True
    version = library.version()
    assert version is not None
    assert isinstance(json.loads(version)["version"], str)
    if toxi_server.implementation == "quorumlog":
        assert json.loads(version) == {"version": "2.12.0+quorumlog"}
    result = toxi.request("GET", "/version")
    assert result.status == 200
    assert result.content_type.startswith("application/json")


def test_proxy_lifecycle_through_client(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    library = toxi.library
    proxy = library.create(upstream=echo.address, name="life")
    assert LISTEN_RE.match(proxy.listen), proxy.listen
    assert proxy.enabled is True and proxy.upstream == echo.address

    listed = library.proxies()
    assert list(listed) == ["life"]
    assert listed["life"].listen == proxy.listen

    raw = toxi.request("GET", "/proxies")
    assert raw.status == 200 and raw.content_type.startswith("application/json")
    assert _body(raw) == {
        "life": {
            "name": "life",
            "listen": proxy.listen,
            "upstream": echo.address,
            "enabled": True,
            "toxics": [],
        }
    }
    single = toxi.request("GET", "/proxies/life")
    assert single.status == 200 and _body(single) == _body(raw)["life"]

    client = sockets.connect(proxy.listen)
    client.sendall(b"ping")
    assert recv_exactly(client, 4, 5) == b"ping"

    proxy.disable()
    assert library.get_proxy("life") is not None
    assert library.proxies()["life"].enabled is False
    proxy.enable()
    assert library.proxies()["life"].enabled is True
    assert library.proxies()["life"].listen == proxy.listen  # same resolved address

    assert library.destroy(proxy) is True
    assert library.get_proxy("life") is None
    assert library.proxies() == {}


def test_create_returns_201_and_duplicate_409(
    toxi: ToxiproxyClient, echo: UpstreamServer
) -> None:
    created = toxi.request("POST", "/proxies", {"name": "dup", "upstream": echo.address,
                                                "listen": "127.0.0.1:0"})
    assert created.status == 201
    assert created.content_type.startswith("application/json")
    assert _body(created)["name"] == "dup" and _body(created)["toxics"] == []

    again = toxi.request("POST", "/proxies", {"name": "dup", "upstream": echo.address,
                                              "listen": "127.0.0.1:0"})
    _assert_error(again, 409, "proxy already exists")

    # toxiproxy-python checks the list first and raises ProxyExists itself...
    with pytest.raises(ProxyExists):
        toxi.library.create(upstream=echo.address, name="dup")
    # ...and the server's own 409 reaches the library as ProxyExists with the JSON body.
    assert toxi.library.running()  # also points the library's class-wide APIConsumer here
    with pytest.raises(ProxyExists) as raised:
        APIConsumer.post("/proxies", json={"name": "dup", "upstream": echo.address})
    assert error_of(raised.value) == {"error": "proxy already exists", "status": 409}


def test_create_disabled_proxy_does_not_listen(toxi: ToxiproxyClient) -> None:
    proxy = toxi.library.create(upstream="127.0.0.1:1", name="off", enabled=False)
    assert proxy.enabled is False
    assert _body(toxi.request("GET", "/proxies/off"))["enabled"] is False
    assert _refused(proxy.listen)


BAD_CALLS: list[tuple[str, str, Any, int, str]] = [
    ("POST", "/proxies", {"upstream": "127.0.0.1:1"}, 400, "missing required field: name"),
    ("POST", "/proxies", {"name": "x"}, 400, "missing required field: upstream"),
    ("POST", "/proxies", {"name": "", "upstream": "a:1"}, 400, "missing required field: name"),
    ("GET", "/proxies/missing", None, 404, "proxy not found"),
    ("POST", "/proxies/missing", {"enabled": False}, 404, "proxy not found"),
    ("PATCH", "/proxies/missing", {"enabled": False}, 404, "proxy not found"),
    ("DELETE", "/proxies/missing", None, 404, "proxy not found"),
    ("GET", "/proxies/missing/toxics", None, 404, "proxy not found"),
    ("POST", "/proxies/missing/toxics", {"type": "latency"}, 404, "proxy not found"),
    ("GET", "/proxies/missing/toxics/t", None, 404, "proxy not found"),
    ("GET", "/proxies/api/toxics/missing", None, 404, "toxic not found"),
    ("POST", "/proxies/api/toxics/missing", {"toxicity": 1}, 404, "toxic not found"),
    ("DELETE", "/proxies/api/toxics/missing", None, 404, "toxic not found"),
    (
        "POST",
        "/proxies/api/toxics",
        {"type": "latency", "stream": "sideways"},
        400,
        "stream was invalid, can be either upstream or downstream",
    ),
    (
        "POST",
        "/proxies/api/toxics",
        {"type": "latency", "stream": ""},
        400,
        "stream was invalid, can be either upstream or downstream",
    ),
    ("POST", "/proxies/api/toxics", {"type": "teleport"}, 400, "invalid toxic type"),
    ("POST", "/proxies/api/toxics", {"name": "no_type"}, 400, "invalid toxic type"),
    (
        "POST",
        "/populate",
        [{"name": "a", "upstream": "127.0.0.1:1"}, {"upstream": "127.0.0.1:1"}],
        400,
        "missing required field: name at proxy 2",
    ),
    (
        "POST",
        "/populate",
        [{"name": "a"}],
        400,
        "missing required field: upstream at proxy 1",
    ),
]


@pytest.mark.parametrize("case", BAD_CALLS, ids=[f"{c[0]} {c[1]} {c[3]}" for c in BAD_CALLS])
def test_error_status_and_message(
    toxi: ToxiproxyClient, case: tuple[str, str, Any, int, str]
) -> None:
    method, path, body, status, message = case
    toxi.library.create(upstream="127.0.0.1:1", name="api")
    result = toxi.request(method, path, body)
    if path == "/populate":
        # Populate answers with JSON that also lists the proxies it made (none: all checked
        # before any is created).
        assert result.status == status
        assert _body(result) == {"error": message, "status": status, "proxies": []}
        assert list(toxi.library.proxies()) == ["api"]
    else:
        _assert_error(result, status, message)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/proxies", "{"),
        ("/proxies", ""),
        ("/proxies", "not json"),
        ("/proxies", '{"name": 5, "upstream": "127.0.0.1:1"}'),
        ("/proxies", '{"name": "n", "upstream": "127.0.0.1:1", "enabled": "yes"}'),
        ("/proxies/api", '{"enabled": 1}'),
        ("/proxies/api/toxics", "{"),
        ("/proxies/api/toxics", '{"type": "latency", "toxicity": "high"}'),
        ("/proxies/api/toxics", '{"type": "latency", "name": "l", "attributes": {"latency": "a"}}'),
        ("/proxies/api/toxics", '{"type": "latency", "name": "l", "attributes": {"latency": 1.5}}'),
        ("/proxies/api/toxics", '{"type": "slicer", "attributes": []}'),
        ("/proxies/api/toxics/latency_downstream", '{"attributes": {"jitter": "x"}}'),
        ("/proxies/api/toxics/latency_downstream", '{"toxicity": []}'),
        ("/populate", '{"name": "x"}'),
        ("/populate", "["),
    ],
)
def test_bad_request_body(toxi: ToxiproxyClient, path: str, body: str) -> None:
    toxi.library.create(upstream="127.0.0.1:1", name="api")
    toxi.add_toxic("api", "latency", attributes={"latency": 1})
    result = toxi.request("POST", path, data=body)
    assert result.status == 400, result.text
    decoded = _body(result)
    assert decoded["status"] == 400
    assert decoded["error"].startswith("bad request body: "), decoded
    # Nothing changed.
    assert list(toxi.library.proxies()) == ["api"]
    assert [t["attributes"] for t in _body(toxi.request("GET", "/proxies/api/toxics"))] == [
        {"latency": 1, "jitter": 0}
    ]


def test_client_exceptions_carry_error_bodies(toxi: ToxiproxyClient) -> None:
    proxy = toxi.library.create(upstream="127.0.0.1:1", name="api")
    with pytest.raises(InvalidToxic) as bad_type:
        proxy.add_toxic(type="teleport")
    assert error_of(bad_type.value) == {"error": "invalid toxic type", "status": 400}
    with pytest.raises(InvalidToxic) as bad_stream:
        proxy.add_toxic(type="latency", stream="both")
    assert error_of(bad_stream.value)["error"] == (
        "stream was invalid, can be either upstream or downstream"
    )
    proxy.add_toxic(type="latency", name="slow", stream="upstream")
    with pytest.raises(ProxyExists) as duplicate:
        proxy.add_toxic(type="bandwidth", name="slow", stream="downstream")
    assert error_of(duplicate.value) == {"error": "toxic already exists", "status": 409}
    with pytest.raises(NotFound) as missing_toxic:
        proxy.destroy_toxic("nope")
    assert error_of(missing_toxic.value) == {"error": "toxic not found", "status": 404}
    proxy.destroy()
    with pytest.raises(NotFound) as missing_proxy:
        proxy.toxics()
    assert error_of(missing_proxy.value) == {"error": "proxy not found", "status": 404}


# -- toxics ---------------------------------------------------------------------------------
def test_toxic_crud_defaults_and_order(toxi: ToxiproxyClient) -> None:
    proxy = toxi.library.create(upstream="127.0.0.1:1", name="api")
    proxy.add_toxic(type="latency", attributes={"latency": 100, "jitter": 5, "unknown": 1})
    proxy.add_toxic(type="slicer", stream="upstream", toxicity=0.5)
    proxy.add_toxic(type="noop", stream="upstream", name="nothing")
    proxy.add_toxic(type="limit_data", stream="downstream", attributes={"bytes": 7})

    listed = _body(toxi.request("GET", "/proxies/api/toxics"))
    assert [t["name"] for t in listed] == [
        "slicer_upstream", "nothing", "latency_downstream", "limit_data_downstream",
    ]  # fmt: skip
    latency = listed[2]
    assert latency == {
        "attributes": {"latency": 100, "jitter": 5},
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1,
    }
    assert listed[0]["attributes"] == {"average_size": 0, "size_variation": 0, "delay": 0}
    assert listed[0]["toxicity"] == 0.5
    assert listed[1]["attributes"] == {}

    toxics = proxy.toxics()
    assert set(toxics) == {t["name"] for t in listed}
    assert toxics["latency_downstream"].attributes == {"latency": 100, "jitter": 5}
    assert _body(toxi.request("GET", "/proxies/api"))["toxics"] == listed

    single = toxi.request("GET", "/proxies/api/toxics/latency_downstream")
    assert single.status == 200 and _body(single) == latency

    # Update merges attributes and keeps what is not mentioned.
    updated = toxi.update_toxic("api", "latency_downstream", attributes={"jitter": 0})
    assert updated["attributes"] == {"latency": 100, "jitter": 0}
    assert updated["toxicity"] == 1
    patched = toxi.request(
        "PATCH", "/proxies/api/toxics/latency_downstream", {"toxicity": 0.25}
    )
    assert patched.status == 200
    assert _body(patched)["toxicity"] == 0.25
    assert _body(patched)["attributes"] == {"latency": 100, "jitter": 0}

    deleted = toxi.request("DELETE", "/proxies/api/toxics/latency_downstream")
    assert deleted.status == 204 and deleted.text == ""
    assert proxy.destroy_toxic("nothing") is True
    assert set(proxy.toxics()) == {"slicer_upstream", "limit_data_downstream"}
    # The same name is free again, in the other stream this time.
    proxy.add_toxic(type="latency", name="nothing", stream="downstream")
    assert "nothing" in proxy.toxics()


def test_toxic_names_unique_across_streams(toxi: ToxiproxyClient) -> None:
    toxi.library.create(upstream="127.0.0.1:1", name="api")
    toxi.add_toxic("api", "latency", stream="upstream", name="shared")
    result = toxi.request(
        "POST", "/proxies/api/toxics", {"type": "latency", "stream": "downstream", "name": "shared"}
    )
    _assert_error(result, 409, "toxic already exists")
    with pytest.raises(ToxiproxyApiError) as raised:
        toxi.add_toxic("api", "timeout", stream="downstream", name="shared")
    assert raised.value.status == 409 and raised.value.message == "toxic already exists"


# -- proxies: update, populate, reset, listen --------------------------------------------
def test_update_proxy_partial(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets
) -> None:
    proxy = toxi.library.create(upstream="127.0.0.1:1", name="api")
    old_listen = proxy.listen

    moved = toxi.update_proxy("api", upstream=echo.address)
    assert moved["upstream"] == echo.address and moved["enabled"] is True
    assert moved["listen"] == old_listen  # upstream change restarts on the same address
    client = sockets.connect(old_listen)
    client.sendall(b"abc")
    assert recv_exactly(client, 3, 5) == b"abc"

    patched = toxi.request("PATCH", "/proxies/api", {"listen": "127.0.0.1:0"})
    assert patched.status == 200
    new_listen = _body(patched)["listen"]
    assert LISTEN_RE.match(new_listen) and new_listen != old_listen
    wait_until(lambda: _refused(old_listen), 5, "the old listener to close")
    client2 = sockets.connect(new_listen)
    client2.sendall(b"xyz")
    assert recv_exactly(client2, 3, 5) == b"xyz"

    disabled = toxi.update_proxy("api", enabled=False)
    assert disabled["enabled"] is False and disabled["listen"] == new_listen
    assert toxi.update_proxy("api", enabled=True)["listen"] == new_listen


def _refused(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return False
    except OSError:
        return True


def test_delete_proxy_204_then_404(toxi: ToxiproxyClient) -> None:
    proxy = toxi.library.create(upstream="127.0.0.1:1", name="api")
    result = toxi.request("DELETE", "/proxies/api")
    assert result.status == 204 and result.text == ""
    _assert_error(toxi.request("DELETE", "/proxies/api"), 404, "proxy not found")
    wait_until(lambda: _refused(proxy.listen), 5, "the deleted proxy's listener to close")
    with pytest.raises(ToxiproxyApiError) as raised:
        toxi.destroy_proxy("api")
    assert raised.value.status == 404


def test_populate(toxi: ToxiproxyClient, echo: UpstreamServer) -> None:
    result = toxi.request(
        "POST",
        "/populate",
        [
            {"name": "one", "upstream": echo.address, "listen": "127.0.0.1:0"},
            {"name": "two", "upstream": echo.address, "listen": "127.0.0.1:0", "enabled": False},
        ],
    )
    assert result.status == 201 and result.content_type.startswith("application/json")
    made = _body(result)["proxies"]
    assert [p["name"] for p in made] == ["one", "two"]
    assert [p["enabled"] for p in made] == [True, False]
    one = made[0]
    toxi.add_toxic("one", "latency", attributes={"latency": 5})

    # Identical (same resolved listen and upstream): left alone, toxics kept.
    again = toxi.populate([{"name": "one", "upstream": echo.address, "listen": one["listen"]}])
    assert [p["name"] for p in again] == ["one"]
    kept = _body(toxi.request("GET", "/proxies/one"))
    assert kept["listen"] == one["listen"] and kept["enabled"] is True
    assert [t["name"] for t in kept["toxics"]] == ["latency_downstream"]

    # Different upstream: replaced, so the toxic is gone.
    replaced = toxi.populate([{"name": "one", "upstream": "127.0.0.1:1", "listen": one["listen"]}])
    assert replaced[0]["upstream"] == "127.0.0.1:1" and replaced[0]["toxics"] == []
    assert set(toxi.library.proxies()) == {"one", "two"}

    # toxiproxy-python's own populate (which never calls /populate) works as well.
    created = toxi.library.populate(
        [{"name": "three", "upstream": echo.address, "listen": "127.0.0.1:0"}]
    )
    assert [p.name for p in created] == ["three"]
    assert set(toxi.library.proxies()) == {"one", "two", "three"}


def test_reset_enables_all_and_removes_toxics(
    toxi: ToxiproxyClient, echo: UpstreamServer
) -> None:
    first = toxi.library.create(upstream=echo.address, name="first")
    second = toxi.library.create(upstream=echo.address, name="second")
    first.add_toxic(type="latency", attributes={"latency": 1000})
    second.add_toxic(type="timeout", stream="upstream")
    second.disable()

    result = toxi.request("POST", "/reset")
    assert result.status == 204 and result.text == ""
    proxies = toxi.library.proxies()
    assert set(proxies) == {"first", "second"}
    assert all(p.enabled for p in proxies.values())
    assert proxies["second"].listen == second.listen
    assert first.toxics() == {} and second.toxics() == {}
    assert toxi.library.reset() is True


def test_reset_reports_a_failed_restart_as_500(toxi: ToxiproxyClient) -> None:
    proxy = toxi.library.create(upstream="127.0.0.1:1", name="blocked")
    proxy.disable()
    host, port = proxy.listen.rsplit(":", 1)
    with socket.create_server((host, int(port))):  # someone else took the address
        result = toxi.request("POST", "/reset")
        _assert_error(result, 500, f"listen tcp {proxy.listen}: bind: address already in use")
    assert toxi.library.proxies()["blocked"].enabled is False
    assert toxi.request("POST", "/reset").status == 204
    assert toxi.library.proxies()["blocked"].enabled is True


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "localhost:0"])
def test_listen_port_zero_resolves(
    toxi: ToxiproxyClient, echo: UpstreamServer, sockets: Sockets, listen: str
) -> None:
    proxy = toxi.library.create(upstream=echo.address, name="zero", listen=listen)
    match = LISTEN_RE.match(proxy.listen)
    assert match and int(match.group(1)) > 0, proxy.listen
    client = sockets.connect(proxy.listen)
    client.sendall(b"zero")
    assert recv_exactly(client, 4, 5) == b"zero"


def test_address_conflict_is_500_with_bind_error(toxi: ToxiproxyClient) -> None:
    taken = toxi.library.create(upstream="127.0.0.1:1", name="first")
    result = toxi.request(
        "POST", "/proxies", {"name": "second", "upstream": "127.0.0.1:1", "listen": taken.listen}
    )
    _assert_error(
        result, 500, f"listen tcp {taken.listen}: bind: address already in use"
    )
    # toxiproxy-python cannot read a 500: it fails with KeyError: 'name'.
    with pytest.raises(KeyError):
        toxi.library.create(upstream="127.0.0.1:1", name="second", listen=taken.listen)
    with pytest.raises(ToxiproxyApiError) as raised:
        toxi.create_proxy("second", "127.0.0.1:1", listen=taken.listen)
    assert raised.value.status == 500 and "address already in use" in raised.value.message
    assert set(toxi.library.proxies()) == {"first"}

    # Moving a proxy onto a taken address fails the same way and leaves it disabled.
    toxi.library.create(upstream="127.0.0.1:1", name="mover")
    moved = toxi.request("PATCH", "/proxies/mover", {"listen": taken.listen})
    _assert_error(moved, 500, f"listen tcp {taken.listen}: bind: address already in use")
    assert _body(toxi.request("GET", "/proxies/mover"))["enabled"] is False


# -- HTTP behaviour -------------------------------------------------------------------------
def test_silent_connections_and_keep_alive(toxi: ToxiproxyClient, sockets: Sockets) -> None:
    address = f"{toxi.host}:{toxi.port}"
    sockets.connect(address).close()  # what toxiproxy-python's running() does
    idle = sockets.connect(address)  # connects and never sends
    with requests.Session() as session:
        for _ in range(3):
            response = session.get(f"{toxi.base_url}/proxies", timeout=10)
            assert response.status_code == 200 and response.json() == {}
        created = session.post(
            f"{toxi.base_url}/proxies",
            json={"name": "k", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"},
            timeout=10,
        )
        assert created.status_code == 201
        deleted = session.delete(f"{toxi.base_url}/proxies/k", timeout=10)
        assert deleted.status_code == 204
        assert session.get(f"{toxi.base_url}/proxies", timeout=10).json() == {}
    idle.close()
    unknown = toxi.request("GET", "/nowhere")
    assert unknown.status == 404


def test_chunked_body_and_browser_refusal(toxi: ToxiproxyClient) -> None:
    body = json.dumps({"name": "chunky", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"})
    # A generator makes requests send Transfer-Encoding: chunked.
    pieces = (body[i : i + 7].encode() for i in range(0, len(body), 7))
    created = requests.post(f"{toxi.base_url}/proxies", data=pieces, timeout=10)
    assert created.status_code == 201 and created.json()["name"] == "chunky"
    # Toxiproxy refuses browsers, so a web page cannot drive it (CSRF).
    refused = requests.get(
        f"{toxi.base_url}/proxies", headers={"User-Agent": "Mozilla/5.0"}, timeout=10
    )
    assert refused.status_code == 403
    assert refused.text.strip() == "User agent not allowed"


# -- the command ----------------------------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_stops_cleanly_on_signal(signum: signal.Signals) -> None:
    with UpstreamServer("echo") as echo, ToxiproxyServer("quorumlog") as server:
        client = server.client()
        proxy = client.create_proxy("p", echo.address)
        live = socket.create_connection(tuple_address(proxy["listen"]), timeout=5)
        try:
            live.sendall(b"hi")
            assert recv_exactly(live, 2, 5) == b"hi"
            assert server.pid is not None
            os.kill(server.pid, signum)
            process = server._process
            assert process is not None
            assert process.wait(timeout=10) == 0
            live.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                assert live.recv(1) == b""  # the live connection was closed
            assert _refused(proxy["listen"])
            assert not client.running()
        finally:
            live.close()
    assert "Traceback" not in server.stderr_text()


def tuple_address(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def test_cli_help_and_bad_port() -> None:
    help_run = subprocess.run(
        [*CLI_COMMAND, "toxiproxy-server", "--help"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert help_run.returncode == 0
    assert "--host" in help_run.stdout and "--port" in help_run.stdout
    bad = subprocess.run(
        [*CLI_COMMAND, "toxiproxy-server", "--port", "70000"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip() == "quorumlog toxiproxy-server: --port must be 0..65535, not 70000"
