"""The console's Starlette application: routes, security headers, identities, templates.

Owns: the pages (``/`` overview, ``/sessions``, ``/session?name=``), the overview's JSON
(``/api/overview``), the live tail (``/tail?name=``, server-sent events), the actions
(``POST /action/<kind>``: a confirmation page first, then the change, audited), the login
(``/login``, ``/logout``), the packaged static files (``/static``), and every response's
security headers (a strict content security policy: scripts, styles and connections from
this origin only, no inline code; no framing; no sniffing). Every POST must carry the
identity's CSRF token and, when the browser names one, this origin; anything else is refused
with 403 and changes nothing. Must never: render a value unescaped, act in read-only mode, or
act for a browser that has not logged in when a login is required.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quorumlog.client import errors
from quorumlog.client.async_client import AsyncClient
from quorumlog.client.console import actions, identity, payload, tail, views
from quorumlog.client.console.audit import ActionAudit
from quorumlog.client.console.feed import ClusterFeed
from quorumlog.client.console.identity import CookieSeal, Identity
from quorumlog.client.console.settings import ConsoleSettings
from quorumlog.client.tls import ClientSecurity

log = logging.getLogger("quorumlog.console")

HERE = Path(__file__).parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
HSTS = (b"strict-transport-security", b"max-age=31536000")
MAX_USER_CLIENTS = 32
MAX_NOTICES = 256
STATUS_OF_CODE = {
    "NOT_FOUND": 404, "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401,
    "INVALID_ARGUMENT": 400, "OUT_OF_RANGE": 400, "FAILED_PRECONDITION": 409,
    "RESOURCE_EXHAUSTED": 429, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}


class SecurityHeaders:
    """ASGI middleware: the security headers on every HTTP response."""

    def __init__(self, app: ASGIApp, https: bool = False) -> None:
        self.app = app
        # over HTTPS, browsers are told never to come back over plain HTTP
        self.headers = [*SECURITY_HEADERS, *([HSTS] if https else [])]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Refused(Exception):
    """A request the console refuses itself (status, one line)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Console:
    """The state behind the routes: settings, the console's own client, users' clients."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.seal = CookieSeal(settings.cookie_key)
        self.audit = ActionAudit(settings.audit_log)
        self.client = AsyncClient(settings.addresses, deadline=settings.deadline,
                                  security=settings.security)
        self.feed = ClusterFeed(self.client, settings.poll_interval)
        self._user_clients: OrderedDict[str, AsyncClient] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()  # evicted clients being closed
        self._notices: OrderedDict[str, str] = OrderedDict()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals.update(
            iso_time=payload.iso_time, size_text=payload.size_text, preview=payload.preview,
            read_only=settings.read_only, require_login=settings.require_login,
        )

    async def close(self) -> None:
        for client in self._user_clients.values():
            await client.close()
        await self.client.close()

    # -- identities and clients ----------------------------------------------------------------

    def client_for(self, user: Identity) -> AsyncClient:
        """The client that acts for ``user``: its own token when it logged in."""
        if user.token is None:
            return self.client
        found = self._user_clients.get(user.token)
        if found is not None:
            self._user_clients.move_to_end(user.token)
            return found
        base = self.settings.security or ClientSecurity()
        client = AsyncClient(self.settings.addresses, deadline=self.settings.deadline,
                             security=replace(base, token=user.token))
        self._user_clients[user.token] = client
        while len(self._user_clients) > MAX_USER_CLIENTS:
            _, old = self._user_clients.popitem(last=False)
            closing = asyncio.get_running_loop().create_task(old.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        return client

    async def forget(self, user: Identity) -> None:
        """Close the client of a token the cluster refused."""
        if user.token is not None:
            client = self._user_clients.pop(user.token, None)
            if client is not None:
                await client.close()

    def notice(self, text: str) -> str:
        key = secrets.token_urlsafe(12)
        self._notices[key] = text
        while len(self._notices) > MAX_NOTICES:
            self._notices.popitem(last=False)
        return key

    def notice_text(self, key: str) -> str:
        return self._notices.get(key, "")


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def _identity(request: Request) -> tuple[Identity, bool]:
    """The browser's identity and whether it is new (its cookie must be set)."""
    console = _console(request)
    found = console.seal.open(request.cookies.get(identity.COOKIE))
    if found is not None:
        return found, False
    return identity.fresh(), True


def _with_cookie(response: Response, console: Console, user: Identity) -> Response:
    response.set_cookie(identity.COOKIE, console.seal.seal(user), max_age=identity.MAX_AGE_S,
                        httponly=True, samesite="strict", path="/",
                        secure=console.settings.https)
    return response


def _page(request: Request, name: str, user: Identity, context: dict[str, Any], *,
          status: int = 200, new: bool = False) -> Response:
    console = _console(request)
    response = console.templates.TemplateResponse(
        request, name, {"user": user, "csrf": user.csrf, **context}, status_code=status,
    )
    response.headers["cache-control"] = "no-store"
    return _with_cookie(response, console, user) if new else response


def _error_page(request: Request, user: Identity, status: int, message: str,
                new: bool = False) -> Response:
    return _page(request, "error.html", user, {"status": status, "message": message},
                 status=status, new=new)


def _status_of(error: errors.QuorumLogError) -> int:
    return STATUS_OF_CODE.get(error.code, 502)


PageHandler = Callable[[Request, Identity, bool], Awaitable[Response]]


def page(handler: PageHandler) -> Callable[[Request], Awaitable[Response]]:
    """A GET page: identity resolved (login enforced), SDK errors shown as pages."""

    async def endpoint(request: Request) -> Response:
        console = _console(request)
        user, new = _identity(request)
        if console.settings.require_login and not user.logged_in:
            return _with_cookie(RedirectResponse("/login", status_code=303), console, user) \
                if new else RedirectResponse("/login", status_code=303)
        try:
            return await handler(request, user, new)
        except errors.QuorumLogError as error:
            return _error_page(request, user, _status_of(error),
                               f"{error.code}: {error}", new)
        except Refused as refused:
            return _error_page(request, user, refused.status, str(refused), new)

    return endpoint


# -- pages ---------------------------------------------------------------------------------------

async def overview_page(request: Request, user: Identity, new: bool) -> Response:
    console = _console(request)
    await console.feed.wait_first(console.settings.deadline)
    state = console.feed.state
    return _page(request, "overview.html", user, {
        "overview": views.overview(state.status), "feed_error": state.error,
        "changes": list(state.changes), "addresses": console.settings.addresses,
    }, new=new)


async def overview_json(request: Request, user: Identity, new: bool) -> Response:
    console = _console(request)
    overview = views.overview(console.feed.state.status)
    body = console.feed.snapshot()
    body["leader"] = overview.leader
    body["nodes"] = [
        {"id": row.id, "address": row.address, "reachable": row.reachable, "role": row.role,
         "term": row.term, "commit_index": row.commit_index,
         "applied_index": row.applied_index, "last_index": row.last_index, "lag": row.lag,
         "leads": row.leads, "error": row.error}
        for row in overview.nodes
    ]
    body["shards"] = [
        {"shard": row.shard, "group": row.group, "leader": row.leader,
         "replicas": row.replicas, "term": row.term, "commit_index": row.commit_index,
         "max_lag": row.max_lag, "sessions": row.sessions}
        for row in overview.shards
    ]
    response = JSONResponse(body, headers={"cache-control": "no-store"})
    return _with_cookie(response, console, user) if new else response


def _query_int(request: Request, name: str) -> int | None:
    text = request.query_params.get(name, "")
    if text == "":
        return None
    if not text.isdigit() or int(text) >= 2**63:
        raise Refused(400, f"{name} must be a whole number, got {text!r}")
    return int(text)


async def sessions_list(request: Request, user: Identity, new: bool) -> Response:
    console = _console(request)
    query = request.query_params
    sort = query.get("sort", "name")
    if sort not in views.SORTS:
        raise Refused(400, f"sort must be one of {', '.join(views.SORTS)}, got {sort!r}")
    listing = await views.sessions_page(
        console.client_for(user), prefix=query.get("prefix", ""), sort=sort,
        after=query.get("after", ""), page=_query_int(request, "page") or 0,
        deadline=console.settings.deadline,
    )
    return _page(request, "sessions.html", user, {"listing": listing, "sorts": views.SORTS},
                 new=new)


async def session_detail(request: Request, user: Identity, new: bool) -> Response:
    console = _console(request)
    name = request.query_params.get("name", "")
    if not name:
        raise Refused(400, "name is missing: /session?name=SESSION")
    view = request.query_params.get("view", "auto")
    if view not in payload.VIEWS:
        raise Refused(400, f"view must be one of {', '.join(payload.VIEWS)}, got {view!r}")
    detail = await views.session_page(console.client_for(user), name,
                                      from_offset=_query_int(request, "from"),
                                      deadline=console.settings.deadline)
    notice = console.notice_text(request.query_params.get("done", ""))
    return _page(request, "session.html", user, {
        "page": detail, "session": name, "view": view, "views": payload.VIEWS,
        "show": payload.show, "envelope_fields": payload.envelope_fields,
        "state": payload.show(detail.state, "auto") if detail.state_version else None,
        "notice": notice,
    }, new=new)


async def tail_stream(request: Request) -> Response:
    console = _console(request)
    user, _ = _identity(request)
    if console.settings.require_login and not user.logged_in:
        return Response("log in first\n", status_code=401, media_type="text/plain")
    name = request.query_params.get("name", "")
    if not name:
        return Response("name is missing\n", status_code=400, media_type="text/plain")
    try:
        start = tail.start_offset(request.headers.get("last-event-id"),
                                  request.query_params.get("from"))
    except errors.InvalidArgument as error:
        return Response(f"{error}\n", status_code=400, media_type="text/plain")
    stream = tail.events(console.client_for(user), name, start, console.settings.deadline)
    return EventSourceResponse(stream, ping=15, headers={"cache-control": "no-store"})


# -- login ---------------------------------------------------------------------------------------

async def login_page(request: Request) -> Response:
    user, new = _identity(request)
    return _page(request, "login.html", user, {"error": ""}, new=new)


def _refuse_foreign(request: Request, user: Identity, form: FormData) -> None:
    """403 unless the form carries ``user``'s CSRF token and the browser's Origin (when it
    names one) is this console."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None and origin != own:
        raise Refused(403, f"refused: a request from {origin}, not from this console "
                      "(cross-site request forgery protection)")
    submitted = form.get("csrf")
    if not identity.csrf_matches(user, submitted if isinstance(submitted, str) else None):
        raise Refused(403, "refused: the form's CSRF token is missing or wrong (reload the "
                      "page and try again)")


FormHandler = Callable[[Request, Console, Identity, FormData], Awaitable[Response]]


def form_post(handler: FormHandler, *, acting: bool = False
              ) -> Callable[[Request], Awaitable[Response]]:
    """A POST: the form read and checked (CSRF token, origin) before ``handler`` sees it;
    ``acting``: a change to the cluster, refused first in read-only mode and, when a login
    is required, without one. A refusal is an error page and changes nothing."""

    async def endpoint(request: Request) -> Response:
        console = _console(request)
        user, _ = _identity(request)
        form = await request.form()
        try:
            if acting and console.settings.read_only:
                raise Refused(403, "refused: this console is read-only (--read-only)")
            if acting and console.settings.require_login and not user.logged_in:
                raise Refused(401, "log in first")
            _refuse_foreign(request, user, form)
            return await handler(request, console, user, form)
        except Refused as refused:
            return _error_page(request, user, refused.status, str(refused))

    return endpoint


async def login_submit(request: Request, console: Console, user: Identity,
                       form: FormData) -> Response:
    token = str(form.get("token", "")).strip()
    if not token:
        return _page(request, "login.html", user, {"error": "enter a token"}, status=400)
    candidate = identity.fresh(token)
    client = console.client_for(candidate)
    try:
        await client.list_sessions(limit=1, deadline=console.settings.deadline)
    except errors.PermissionDenied:
        pass  # a valid token whose principal may not list everything: it may still log in
    except errors.QuorumLogError as error:
        await console.forget(candidate)
        status = 401 if isinstance(error, errors.Unauthenticated) else _status_of(error)
        return _page(request, "login.html", user,
                     {"error": f"the cluster refused the token: {error.code}: {error}"},
                     status=status)
    log.info("login of %r from %s", candidate.principal,
             request.client.host if request.client else "?")
    return _with_cookie(RedirectResponse("/", status_code=303), console, candidate)


async def logout(request: Request, console: Console, user: Identity,
                 form: FormData) -> Response:
    target = "/login" if console.settings.require_login else "/"
    return _with_cookie(RedirectResponse(target, status_code=303), console, identity.fresh())


# -- actions -------------------------------------------------------------------------------------

def _fields(form: FormData) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            fields.setdefault(key, []).append(value)
    return fields


async def action(request: Request, console: Console, user: Identity,
                 form: FormData) -> Response:
    try:
        wanted = actions.parse(request.path_params["kind"], _fields(form))
    except errors.InvalidArgument as error:
        return _error_page(request, user, 400, f"INVALID_ARGUMENT: {error}")
    if form.get("confirmed") != "yes":
        return _page(request, "confirm.html", user, {"action": wanted})
    remote = request.client.host if request.client else ""
    outcome = "OK"
    try:
        done = await actions.perform(console.client_for(user), wanted, user.principal,
                                     console.settings.deadline)
    except errors.QuorumLogError as error:
        outcome = error.code
        return _error_page(request, user, _status_of(error), f"{error.code}: {error}")
    finally:
        await asyncio.to_thread(
            console.audit.record, principal=user.principal, remote=remote, action=wanted.kind,
            session=wanted.session, details=wanted.details(), outcome=outcome)
    key = console.notice(done)
    return RedirectResponse("/session?" + urlencode({"name": wanted.session, "done": key}),
                            status_code=303)


# -- the application -----------------------------------------------------------------------------

def build(settings: ConsoleSettings) -> Starlette:
    console = Console(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        poller = asyncio.create_task(console.feed.run(), name="console-feed")
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await console.close()

    routes = [
        Route("/", page(overview_page), name="overview"),
        Route("/api/overview", page(overview_json), name="overview_json"),
        Route("/sessions", page(sessions_list), name="sessions"),
        Route("/session", page(session_detail), name="session"),
        Route("/tail", tail_stream, name="tail"),
        Route("/login", login_page, methods=["GET"], name="login"),
        Route("/login", form_post(login_submit), methods=["POST"]),
        Route("/logout", form_post(logout), methods=["POST"], name="logout"),
        Route("/action/{kind}", form_post(action, acting=True), methods=["POST"],
              name="action"),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.console = console
    app.add_middleware(SecurityHeaders, https=settings.https)
    return app
