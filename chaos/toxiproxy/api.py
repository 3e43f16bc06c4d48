"""Toxiproxy 2.x's HTTP API over a ``ProxyCollection``: routes, status codes, JSON shapes.

Owns: the route table (``/proxies``, ``/proxies/{p}``, ``/proxies/{p}/toxics``,
``/proxies/{p}/toxics/{t}``, ``/populate``, ``/reset``, ``/version``), decoding each body
into fields, the order in which errors are checked (so each failure gets Toxiproxy's status
and message), serialising mutations, and the response bodies: JSON for success,
``{"error", "status"}`` as text/plain for failures. Must never: bind sockets or move bytes
itself; the collection and its proxies do that.

Known differences from Toxiproxy 2.12: a proxy created without ``listen`` listens on
``127.0.0.1:0`` (Toxiproxy: every interface), and ``host:port`` with an empty host on
``0.0.0.0``; dialling an upstream gives up after 10 s (Toxiproxy waits for the OS);
``/populate`` answers an identical proxy with the running one (Toxiproxy with an unstarted
copy); toxicity is written as ``1.0`` where Go writes ``1``; ``/version`` says
``2.12.0+quorumlog``; there is no ``/metrics`` or ``/events``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from quorumlog.chaos.toxiproxy.api_json import (
    BAD_REQUEST_BODY,
    MISSING_FIELD,
    ApiError,
    GoType,
    JsonValue,
    decode_object,
    json_kind,
    parse_body,
)
from quorumlog.chaos.toxiproxy.http_server import HttpServer, Request, Response
from quorumlog.chaos.toxiproxy.proxy import Proxy
from quorumlog.chaos.toxiproxy.proxy_collection import ProxyCollection, ProxySpec
from quorumlog.chaos.toxiproxy.toxics import parse_new_toxic, parse_toxic_update

# The Toxiproxy release whose API this server follows; "+quorumlog" marks the implementation.
VERSION = "2.12.0+quorumlog"

_PROXY_FIELDS: dict[str, GoType] = {
    "name": "string",
    "listen": "string",
    "upstream": "string",
    "enabled": "bool",
}

Route = Callable[[Request, dict[str, str]], Awaitable[Response]]


def _json(status: int, value: JsonValue) -> Response:
    body = json.dumps(value, separators=(",", ":")).encode()
    return Response(status, body, "application/json")


def error_response(error: ApiError) -> Response:
    body = (json.dumps(error.body(), separators=(",", ":")) + "\n").encode()
    return Response(
        error.status,
        body,
        "text/plain; charset=utf-8",
        (("X-Content-Type-Options", "nosniff"),),
    )


def _plain(status: int, text: str) -> Response:
    return Response(status, text.encode(), "text/plain; charset=utf-8")


def _proxy_spec(value: JsonValue, where: str = "") -> ProxySpec:
    fields = decode_object(value, _PROXY_FIELDS, "Proxy")
    name, upstream = str(fields.get("name", "")), str(fields.get("upstream", ""))
    if not name:
        raise MISSING_FIELD.joined(f"name{where}")
    if not upstream:
        raise MISSING_FIELD.joined(f"upstream{where}")
    listen, enabled = str(fields.get("listen", "")), bool(fields.get("enabled", True))
    return ProxySpec(name, listen, upstream, enabled)


class ToxiproxyApi:
    """Request handler for the API; one lock makes every mutation atomic, as in Toxiproxy."""

    def __init__(self, collection: ProxyCollection) -> None:
        self.collection = collection
        self._lock = asyncio.Lock()
        self._routes: list[tuple[tuple[str, ...], dict[str, Route]]] = [
            (("reset",), {"POST": self._reset}),
            (("version",), {"GET": self._version}),
            (("populate",), {"POST": self._populate}),
            (("proxies",), {"GET": self._list_proxies, "POST": self._create_proxy}),
            (
                ("proxies", "{proxy}"),
                {
                    "GET": self._get_proxy,
                    "POST": self._update_proxy,
                    "PATCH": self._update_proxy,
                    "DELETE": self._delete_proxy,
                },
            ),
            (
                ("proxies", "{proxy}", "toxics"),
                {"GET": self._list_toxics, "POST": self._create_toxic},
            ),
            (
                ("proxies", "{proxy}", "toxics", "{toxic}"),
                {
                    "GET": self._get_toxic,
                    "POST": self._update_toxic,
                    "PATCH": self._update_toxic,
                    "DELETE": self._delete_toxic,
                },
            ),
        ]

    async def handle(self, request: Request) -> Response:
        if request.headers.get("user-agent", "").startswith("Mozilla/"):
            return _plain(403, "User agent not allowed\n")  # Toxiproxy refuses browsers (CSRF)
        segments = request.segments[1:] if request.segments[:1] == ("",) else request.segments
        for pattern, methods in self._routes:
            params = self._match(pattern, segments)
            if params is None:
                continue
            route = methods.get(request.method)
            if route is None:
                return Response(405)
            try:
                return await route(request, params)
            except ApiError as error:
                return error_response(error)
        return _plain(404, "404 page not found\n")

    @staticmethod
    def _match(pattern: tuple[str, ...], segments: tuple[str, ...]) -> dict[str, str] | None:
        if len(pattern) != len(segments):
            return None
        params: dict[str, str] = {}
        for expected, actual in zip(pattern, segments, strict=True):
            if expected.startswith("{"):
                if not actual:
                    return None
                params[expected[1:-1]] = actual
            elif expected != actual:
                return None
        return params

    # -- server-wide -------------------------------------------------------------------
    async def _reset(self, request: Request, params: dict[str, str]) -> Response:
        async with self._lock:
            await self.collection.reset()
        return Response(204)

    async def _version(self, request: Request, params: dict[str, str]) -> Response:
        body = f'{{"version": "{VERSION}"}}\n'.encode()
        return Response(200, body, "application/json;charset=utf-8")

    async def _populate(self, request: Request, params: dict[str, str]) -> Response:
        try:
            specs = self._populate_specs(parse_body(request.body))
        except ApiError as invalid:
            return self._populate_response([], invalid)
        async with self._lock:
            proxies, failure = await self.collection.populate(specs)
        return self._populate_response(proxies, failure)

    @staticmethod
    def _populate_specs(value: JsonValue) -> list[ProxySpec]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise BAD_REQUEST_BODY.joined(
                f"json: cannot unmarshal {json_kind(value)} into Go value of type "
                "[]toxiproxy.Proxy"
            )
        # Every entry is checked before any proxy is touched.
        return [_proxy_spec(entry, f" at proxy {number}") for number, entry in
                enumerate(value, start=1)]

    @staticmethod
    def _populate_response(proxies: list[Proxy], error: ApiError | None) -> Response:
        body: dict[str, JsonValue] = error.body() if error is not None else {}
        body["proxies"] = [proxy.to_json() for proxy in proxies]
        return _json(error.status if error is not None else 201, body)

    # -- proxies -----------------------------------------------------------------------
    async def _list_proxies(self, request: Request, params: dict[str, str]) -> Response:
        proxies = self.collection.proxies
        return _json(200, {name: proxy.to_json() for name, proxy in proxies.items()})

    async def _create_proxy(self, request: Request, params: dict[str, str]) -> Response:
        spec = _proxy_spec(parse_body(request.body))
        async with self._lock:
            proxy = await self.collection.add(spec)
        return _json(201, proxy.to_json())

    async def _get_proxy(self, request: Request, params: dict[str, str]) -> Response:
        return _json(200, self.collection.get(params["proxy"]).to_json())

    async def _update_proxy(self, request: Request, params: dict[str, str]) -> Response:
        async with self._lock:
            proxy = self.collection.get(params["proxy"])
            fields = decode_object(parse_body(request.body), _PROXY_FIELDS, "Proxy")
            await proxy.update(
                listen=str(fields.get("listen", proxy.listen)),
                upstream=str(fields.get("upstream", proxy.upstream)),
                enabled=bool(fields.get("enabled", proxy.enabled)),
            )
            return _json(200, proxy.to_json())

    async def _delete_proxy(self, request: Request, params: dict[str, str]) -> Response:
        async with self._lock:
            await self.collection.remove(params["proxy"])
        return Response(204)

    # -- toxics ------------------------------------------------------------------------
    async def _list_toxics(self, request: Request, params: dict[str, str]) -> Response:
        proxy = self.collection.get(params["proxy"])
        return _json(200, [toxic.to_json() for toxic in proxy.ordered_toxics()])

    async def _create_toxic(self, request: Request, params: dict[str, str]) -> Response:
        async with self._lock:
            proxy = self.collection.get(params["proxy"])
            toxic = parse_new_toxic(parse_body(request.body), proxy.has_toxic)
            await proxy.add_toxic(toxic)
            return _json(200, toxic.to_json())

    async def _get_toxic(self, request: Request, params: dict[str, str]) -> Response:
        proxy = self.collection.get(params["proxy"])
        return _json(200, proxy.find_toxic(params["toxic"]).to_json())

    async def _update_toxic(self, request: Request, params: dict[str, str]) -> Response:
        async with self._lock:
            proxy = self.collection.get(params["proxy"])
            toxic = proxy.find_toxic(params["toxic"])
            updated = parse_toxic_update(toxic, parse_body(request.body))
            await proxy.update_toxic(updated)
            return _json(200, updated.to_json())

    async def _delete_toxic(self, request: Request, params: dict[str, str]) -> Response:
        async with self._lock:
            proxy = self.collection.get(params["proxy"])
            await proxy.remove_toxic(proxy.find_toxic(params["toxic"]))
        return Response(204)


class ToxiproxyApiServer:
    """The API served over HTTP on one address, plus the proxies it manages."""

    def __init__(self, collection: ProxyCollection) -> None:
        self.collection = collection
        self.api = ToxiproxyApi(collection)
        self._http = HttpServer(self.api.handle)

    async def start(self, host: str, port: int) -> tuple[str, int]:
        return await self._http.start(host, port)

    async def close(self) -> None:
        await self._http.close()
        await self.collection.close()
