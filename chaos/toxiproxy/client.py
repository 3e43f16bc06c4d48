"""toxiproxy-python for the chaos harness: a typed façade, the calls it lacks, and the server.

Owns: pointing toxiproxy-python (import name ``toxiproxy``) at one server, giving every
request it makes a timeout, the calls it lacks (update a toxic, destroy a proxy by name,
create/update a proxy with real errors instead of ``KeyError``, the server's ``/populate``,
raw requests that report status codes), and running a server process: a real
``toxiproxy-server`` from ``PATH`` when there is one, else ``quorumlog toxiproxy-server`` on a
free port. Must never: implement the API itself, or leave a server process running once
``stop()`` (or the ``with`` block) returns. All untyped use of toxiproxy-python stays here.

toxiproxy-python keeps its host and port on a class (``APIConsumer``), so one process talks
to one server at a time: every façade call points the library at this client's server first.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Any, Literal, Protocol, cast

import requests
import toxiproxy  # type: ignore[import-untyped]
import toxiproxy.api  # type: ignore[import-untyped]

from quorumlog.chaos.toxiproxy.server import READY_PREFIX

REAL_SERVER = "toxiproxy-server"
Implementation = Literal["quorumlog", "toxiproxy-server"]
DEFAULT_TIMEOUT = 10.0
# The ``quorumlog`` command without relying on the console script being on PATH. Not
# ``-m quorumlog.client.cli``: that would load the dispatcher twice (as __main__ too).
CLI_COMMAND = (
    sys.executable, "-c", "from quorumlog.client.cli import main; raise SystemExit(main())",
)  # fmt: skip


# -- typed view of toxiproxy-python's objects ----------------------------------------------
class LibraryToxic(Protocol):
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int]


class LibraryProxy(Protocol):
    name: str
    upstream: str
    enabled: bool
    listen: str

    def toxics(self) -> dict[str, LibraryToxic]: ...
    def get_toxic(self, toxic_name: str) -> LibraryToxic | None: ...
    def add_toxic(self, **kwargs: Any) -> None: ...
    def destroy_toxic(self, toxic_name: str) -> bool: ...
    def destroy(self) -> bool: ...
    def disable(self) -> None: ...
    def enable(self) -> None: ...
    def down(self) -> AbstractContextManager[LibraryProxy]: ...


class LibraryServer(Protocol):
    def proxies(self) -> dict[str, LibraryProxy]: ...
    def get_proxy(self, proxy_name: str) -> LibraryProxy | None: ...
    def create(
        self, upstream: str, name: str, listen: str | None = None, enabled: bool | None = None
    ) -> LibraryProxy: ...
    def destroy(self, proxy: LibraryProxy) -> bool: ...
    def destroy_all(self) -> None: ...
    def populate(self, proxies: list[dict[str, Any]]) -> list[LibraryProxy]: ...
    def running(self) -> bool: ...
    def version(self) -> bytes | None: ...
    def reset(self) -> bool: ...


# The library's exceptions, typed (it raises them for 409, 404 and 400 only).
ProxyExists = cast(type[Exception], toxiproxy.api.ProxyExists)
NotFound = cast(type[Exception], toxiproxy.api.NotFound)
InvalidToxic = cast(type[Exception], toxiproxy.api.InvalidToxic)


class _RequestsWithTimeout:
    """Stands in for ``requests`` inside ``toxiproxy.api``: the same calls, with a timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return requests.get(url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return requests.post(url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return requests.delete(url, **kwargs)


@dataclass(frozen=True)
class ApiResult:
    """A raw API answer: status, body text and content type."""

    status: int
    text: str
    content_type: str

    def json(self) -> Any:
        return json.loads(self.text)


class ToxiproxyApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ToxiproxyClient:
    """toxiproxy-python pointed at one server, plus the calls it lacks; all with timeouts."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 8474, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._requests = _RequestsWithTimeout(timeout)
        self._library = cast(LibraryServer, toxiproxy.Toxiproxy())

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def library(self) -> LibraryServer:
        """toxiproxy-python's ``Toxiproxy`` object, aimed at this server."""
        toxiproxy.api.APIConsumer.host = self.host
        toxiproxy.api.APIConsumer.port = self.port
        toxiproxy.api.requests = self._requests
        return self._library

    # -- raw access --------------------------------------------------------------------
    def request(
        self, method: str, path: str, body: Any = None, data: str | None = None
    ) -> ApiResult:
        """Any API call; never raises for an HTTP error status."""
        response = requests.request(
            method, self.base_url + path, json=body, data=data, timeout=self.timeout
        )
        return ApiResult(
            response.status_code, response.text, response.headers.get("Content-Type", "")
        )

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        result = self.request(method, path, body)
        if result.status >= 400:
            try:
                message = str(result.json()["error"])
            except (ValueError, KeyError, TypeError):
                message = result.text.strip()
            raise ToxiproxyApiError(result.status, message)
        return result.json() if result.text.strip() else None

    def running(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 1.0):
            return True
        return False

    # -- what toxiproxy-python lacks ---------------------------------------------------
    def create_proxy(
        self, name: str, upstream: str, listen: str = "127.0.0.1:0", enabled: bool = True
    ) -> dict[str, Any]:
        """POST /proxies; raises ``ToxiproxyApiError`` with the server's message."""
        body = {"name": name, "upstream": upstream, "listen": listen, "enabled": enabled}
        return cast(dict[str, Any], self._call("POST", "/proxies", body))

    def update_proxy(self, name: str, **fields: str | bool) -> dict[str, Any]:
        """Partial update of ``listen``, ``upstream`` and/or ``enabled``."""
        return cast(dict[str, Any], self._call("POST", f"/proxies/{name}", fields))

    def destroy_proxy(self, name: str) -> None:
        self._call("DELETE", f"/proxies/{name}")

    def populate(self, proxies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The server's own ``/populate`` (the library emulates it with many calls)."""
        return cast(list[dict[str, Any]], self._call("POST", "/populate", proxies)["proxies"])

    def update_toxic(
        self,
        proxy: str,
        toxic: str,
        *,
        attributes: dict[str, int] | None = None,
        toxicity: float | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if attributes is not None:
            body["attributes"] = attributes
        if toxicity is not None:
            body["toxicity"] = toxicity
        return cast(dict[str, Any], self._call("POST", f"/proxies/{proxy}/toxics/{toxic}", body))

    def add_toxic(
        self,
        proxy: str,
        toxic_type: str,
        *,
        stream: str = "downstream",
        toxicity: float = 1.0,
        attributes: dict[str, int] | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Like the library's ``add_toxic``, but returns the toxic the server made."""
        body: dict[str, Any] = {
            "type": toxic_type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": attributes or {},
        }
        if name is not None:
            body["name"] = name
        return cast(dict[str, Any], self._call("POST", f"/proxies/{proxy}/toxics", body))

    def remove_toxic(self, proxy: str, toxic: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{toxic}")


# -- the server process --------------------------------------------------------------------
def real_server_binary() -> str | None:
    """A reference ``toxiproxy-server`` on PATH, if any."""
    return shutil.which(REAL_SERVER)


def available_implementations() -> list[Implementation]:
    """Ours always; the reference server too when it is installed."""
    found: list[Implementation] = ["quorumlog"]
    if real_server_binary() is not None:
        found.append("toxiproxy-server")
    return found


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class ToxiproxyServerError(RuntimeError):
    pass


class ToxiproxyServer:
    """A toxiproxy server process for the life of a ``with`` block (or start()..stop())."""

    def __init__(
        self,
        implementation: Implementation | Literal["auto"] = "auto",
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 20.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if implementation == "auto":
            implementation = "toxiproxy-server" if real_server_binary() else "quorumlog"
        self.implementation: Implementation = implementation
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._stderr_text = ""

    def __enter__(self) -> ToxiproxyServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def client(self, timeout: float = DEFAULT_TIMEOUT) -> ToxiproxyClient:
        return ToxiproxyClient(self.host, self.port, timeout)

    def start(self) -> ToxiproxyServer:
        deadline = time.monotonic() + self.startup_timeout
        attempts = 3 if self.implementation == "toxiproxy-server" and self.port == 0 else 1
        for attempt in range(attempts):
            try:
                if self.implementation == "quorumlog":
                    self._start_ours(deadline)
                else:
                    self._start_real(deadline)
                return self
            except ToxiproxyServerError:
                self.stop()
                if attempt == attempts - 1:
                    raise
        return self

    def _spawn(self, command: list[str], stdout: int) -> subprocess.Popen[bytes]:
        # Kept open from start to stop, so no ``with``: stop() closes it.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=self._stderr
        )
        return self._process

    def _start_ours(self, deadline: float) -> None:
        command = [
            *CLI_COMMAND, "toxiproxy-server",
            "--host", self.host, "--port", str(self.port), *self.extra_args,
        ]  # fmt: skip
        process = self._spawn(command, subprocess.PIPE)
        line = self._ready_line(process, deadline)
        self.port = int(line.rsplit(":", 1)[1])

    def _start_real(self, deadline: float) -> None:
        binary = real_server_binary()
        if binary is None:
            raise ToxiproxyServerError(f"{REAL_SERVER} is not on PATH")
        port = self.port or _free_port(self.host)
        command = [binary, "-host", self.host, "-port", str(port), *self.extra_args]
        process = self._spawn(command, subprocess.DEVNULL)
        self.port = port
        client = self.client(timeout=1.0)
        while not client.running():
            if process.poll() is not None or time.monotonic() > deadline:
                raise ToxiproxyServerError(f"{REAL_SERVER} did not start: {self.stderr_text()}")
            time.sleep(0.05)  # polling for the port to open, bounded by the deadline

    def _ready_line(self, process: subprocess.Popen[bytes], deadline: float) -> str:
        assert process.stdout is not None
        descriptor = process.stdout.fileno()
        received = b""
        while b"\n" not in received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ToxiproxyServerError("toxiproxy-server did not report ready in time")
            readable, _, _ = select.select([descriptor], [], [], min(remaining, 0.5))
            if readable:
                chunk = os.read(descriptor, 4096)
                if not chunk:
                    raise ToxiproxyServerError(
                        f"toxiproxy-server exited during startup: {self.stderr_text()}"
                    )
                received += chunk
        line = received.split(b"\n", 1)[0].decode()
        if not line.startswith(READY_PREFIX):
            raise ToxiproxyServerError(f"unexpected toxiproxy-server output: {line!r}")
        return line

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stderr_text(self) -> str:
        """What the server wrote on stderr so far (kept after ``stop``)."""
        if self._stderr is not None:
            self._stderr.seek(0)
            self._stderr_text = self._stderr.read().decode(errors="replace")
        return self._stderr_text

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; returns the exit code."""
        process, self._process = self._process, None
        code = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            code = process.returncode
            if process.stdout is not None:
                process.stdout.close()
        if self._stderr is not None:
            self.stderr_text()
            self._stderr.close()
            self._stderr = None
        return code
