"""Just enough HTTP/1.1 server for the Toxiproxy API, on asyncio streams.

Owns: parsing requests (request line, headers, a ``Content-Length`` or chunked body,
``Expect: 100-continue``), keep-alive versus ``Connection: close``, and writing responses
with exact status lines and ``Content-Length``. A connection that sends nothing and closes
is simply dropped. Must never: know about proxies or JSON; it hands a ``Request`` to a
handler and writes back the ``Response``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

MAX_HEADER_LINES = 100
MAX_BODY = 16 * 1024 * 1024
IDLE_TIMEOUT = 300.0  # seconds a keep-alive connection may sit between requests
READ_TIMEOUT = 30.0  # seconds to receive one request once it has started

REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    505: "HTTP Version Not Supported",
}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # percent-decoded, without the query string
    segments: tuple[str, ...]  # path split on "/" before decoding, each decoded
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default=())


Handler = Callable[[Request], Awaitable[Response]]


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _wants_close(version: str, headers: dict[str, str]) -> bool:
    tokens = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" not in tokens
    return "close" in tokens


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = (await reader.readline()).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise _BadRequest(400, "bad chunk size") from None
        if size == 0:
            while (await reader.readline()).strip():  # trailers
                pass
            return bytes(body)
        if len(body) + size > MAX_BODY:
            raise _BadRequest(413, "request body too large")
        body += await reader.readexactly(size)
        await reader.readline()


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[Request, bool] | None:
    """The next request and whether to close after it; None when the peer is done."""
    async with asyncio.timeout(IDLE_TIMEOUT):
        line = await reader.readline()
        while line in (b"\r\n", b"\n"):  # stray blank lines before a request are allowed
            line = await reader.readline()
    if not line:
        return None
    async with asyncio.timeout(READ_TIMEOUT):
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise _BadRequest(400, "malformed request line")
        method, target, version = parts
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            raise _BadRequest(505, "unsupported HTTP version")
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            header = (await reader.readline()).decode("latin-1").rstrip("\r\n")
            if not header:
                break
            name, sep, value = header.partition(":")
            if not sep:
                raise _BadRequest(400, "malformed header")
            headers[name.strip().lower()] = value.strip()
        else:
            raise _BadRequest(400, "too many headers")
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader)
        else:
            length_text = headers.get("content-length", "0") or "0"
            if not length_text.isdigit():
                raise _BadRequest(400, "bad Content-Length")
            if int(length_text) > MAX_BODY:
                raise _BadRequest(413, "request body too large")
            body = await reader.readexactly(int(length_text))
    raw_path = urlsplit(target).path
    request = Request(
        method=method,
        path=unquote(raw_path),
        segments=tuple(unquote(segment) for segment in raw_path.split("/")),
        headers=headers,
        body=body,
    )
    return request, _wants_close(version, headers)


def _encode(response: Response, close: bool) -> bytes:
    lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}"]
    if response.content_type is not None:
        lines.append(f"Content-Type: {response.content_type}")
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    lines.append(f"Date: {formatdate(usegmt=True)}")
    if response.status != 204 and response.status >= 200:
        lines.append(f"Content-Length: {len(response.body)}")
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if response.status == 204 else head + response.body


class HttpServer:
    """Serves ``handler`` on one TCP address until ``close``."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[object]] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve, host, port)
        address = self._server.sockets[0].getsockname()
        return str(address[0]), int(address[1])

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        # Abort rather than cancel: each handler then sees EOF and returns by itself (a
        # cancelled handler task makes Python 3.11's StreamReaderProtocol log a traceback).
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        if server is not None:
            await server.wait_closed()  # after the connections: 3.12+ waits for them

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                try:
                    received = await _read_request(reader, writer)
                except _BadRequest as error:
                    body = f"{error.status} {error}\n".encode()
                    writer.write(_encode(Response(error.status, body, "text/plain"), True))
                    break
                if received is None:
                    break
                request, close = received
                try:
                    response = await self._handler(request)
                except Exception:
                    log.exception("API handler failed for %s %s", request.method, request.path)
                    response = Response(500, b"internal error\n", "text/plain; charset=utf-8")
                writer.write(_encode(response, close))
                await writer.drain()
                if close:
                    break
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or stalled; nothing to answer
        except ValueError:
            pass  # StreamReader.readline over its limit
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
