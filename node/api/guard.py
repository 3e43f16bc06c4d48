"""Server interceptors that enforce security on a node's two ports.

Owns: wrapping every client-port handler so that, before the service runs, the caller's
principal is resolved (``quorumlog.node.api.auth``), its request rate checked
(``quorumlog.node.api.ratelimit``) and, once ACLs are enabled, the method's requirement from
``quorumlog.node.api.authz`` evaluated against the replicated rules (``quorumlog.node.state.acl``);
the principal is then visible to the service as :data:`current_principal`, and audited methods are
recorded when they end (``quorumlog.node.api.audit``). On the peer port (with TLS), every call must
come from a node certificate whose name is on the allow list. Refusals: ``UNAUTHENTICATED``
(bad token), ``PERMISSION_DENIED`` (no rule, not a member, a client certificate on the peer
port), ``RESOURCE_EXHAUSTED`` (over the rate). Must never: validate or execute requests
itself, or let a refused call reach the service.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from quorumlog.node.api import auth, authz
from quorumlog.node.api.audit import AuditLog
from quorumlog.node.api.ratelimit import RateLimiter
from quorumlog.node.common import tls
from quorumlog.node.common.config import raft_id
from quorumlog.node.common.limits import ErrorCode, InvalidInput
from quorumlog.node.state.acl import APPEND, AclStore

Context = grpc.aio.ServicerContext[Any, Any]
Admit = Callable[[Any, Context], Awaitable[str]]
CheckItem = Callable[[Any, Context], Awaitable[None]]
if TYPE_CHECKING:  # grpc's handler type is generic only in its stubs
    Continuation = Callable[
        [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
    ]
Done = Callable[[str, Any, Context, str], None]

#: The principal of the client call being served ("" anonymous), set by :class:`ClientGuard`.
current_principal: contextvars.ContextVar[str] = contextvars.ContextVar(
    "quorumlog_principal", default=auth.ANONYMOUS
)

_SHOWN_NAME = 80  # characters of a refused session name echoed back


def _outcome(context: Context, error: BaseException | None) -> str:
    code: Any = context.code()
    if code is None:
        return "OK" if error is None else type(error).__name__
    return str(getattr(code, "name", code))


class _Malformed:
    """A request whose bytes did not parse (gRPC itself would answer UNKNOWN)."""

    def __init__(self, error: Exception) -> None:
        self.reason = f"{type(error).__name__}: {error}"[:200]


def _lenient(deserializer: Any) -> Any:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as error:
            return _Malformed(error)

    return deserialize


async def _reject_malformed(request: Any, context: Context) -> None:
    if isinstance(request, _Malformed):
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {request.reason}"
        )


async def _checked_stream(
    requests: Any, context: Context, check_item: CheckItem | None
) -> AsyncIterator[Any]:
    async for request in requests:
        await _reject_malformed(request, context)
        if check_item is not None:
            await check_item(request, context)
        yield request


class _CheckedContext:
    """The servicer context of a streaming call, whose ``read()`` checks each request like
    the request iterator does (a handler may use either)."""

    def __init__(self, context: Context, check_item: CheckItem | None) -> None:
        self._context = context
        self._check_item = check_item

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def read(self) -> Any:
        request = await self._context.read()
        if request is not grpc.aio.EOF:
            await _reject_malformed(request, self._context)
            if self._check_item is not None:
                await self._check_item(request, self._context)
        return request


def wrap(
    handler: grpc.RpcMethodHandler[Any, Any],
    admit: Admit,
    done: Done | None,
    check_item: CheckItem | None = None,
) -> Any:
    """``handler`` with ``admit(request or None, context)`` run first (it aborts to refuse;
    its result is the principal) and ``done(principal, request, context, outcome)`` after.
    A streamed request is checked by ``check_item`` as it arrives (it aborts the call to
    refuse). A request that does not parse is answered INVALID_ARGUMENT before anything."""
    deserializer = _lenient(handler.request_deserializer)

    def finish(
        principal: str, request: Any, context: Context, error: BaseException | None
    ) -> None:
        if done is not None:
            done(principal, request, context, _outcome(context, error))

    async def admitted(request: Any, context: Context) -> str:
        """The principal, once admitted; a refusal is recorded (by then ``admit`` has set
        :data:`current_principal` when it knew who was calling) and re-raised."""
        try:
            await _reject_malformed(request, context)
            principal = await admit(request, context)
        except BaseException as error:
            finish(current_principal.get(), request, context, error)
            raise
        current_principal.set(principal)
        return principal

    inner: Any = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary
        or handler.stream_stream
    )
    streaming_request = handler.request_streaming

    async def start(arg: Any, context: Context) -> tuple[str, Any, Any, Any]:
        """(principal, what to call ``inner`` with, its context, the request to audit)."""
        if streaming_request:
            principal = await admitted(None, context)
            checked = _checked_stream(arg, context, check_item)
            return principal, checked, _CheckedContext(context, check_item), None
        return await admitted(arg, context), arg, context, arg

    if inspect.isasyncgenfunction(inner):

        async def behaviour_stream(arg: Any, context: Context) -> AsyncIterator[Any]:
            principal, first, inner_context, shown = await start(arg, context)
            try:
                async for item in inner(first, inner_context):
                    yield item
            except BaseException as error:
                finish(principal, shown, context, error)
                raise
            finish(principal, shown, context, None)

        behaviour: Any = behaviour_stream
    else:

        async def behaviour_call(arg: Any, context: Context) -> Any:
            principal, first, inner_context, shown = await start(arg, context)
            try:
                result = await inner(first, inner_context)
            except BaseException as error:
                finish(principal, shown, context, error)
                raise
            finish(principal, shown, context, None)
            return result

        behaviour = behaviour_call
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(streaming_request, handler.response_streaming)]
    return make(behaviour, deserializer, handler.response_serializer)


class Rules(Protocol):
    """The replicated ACL rules: ``AclState`` (one reading), or the ``AclStore`` itself."""

    def allows(self, principal: str, verb: str, name: str) -> bool: ...


def may_append(rules: Rules, principal: str, session: str) -> None:
    """Raise ``InvalidInput(PERMISSION_DENIED)`` unless ``principal`` may append to
    ``session``: the per-append check of the append path (``quorumlog.node.api.appends``),
    so one refused append of a batch gets its own outcome and the others go ahead."""
    if not rules.allows(principal, APPEND, session):
        raise InvalidInput(
            ErrorCode.PERMISSION_DENIED,
            f"principal {principal!r} may not append session {session[:_SHOWN_NAME]!r}",
        )


class _Guard(grpc.aio.ServerInterceptor):
    """An interceptor that wraps every handler of its server (``guard``)."""

    async def intercept_service(
        self,
        continuation: Continuation,
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        return None if handler is None else self.guard(handler, details.method)

    def guard(self, handler: grpc.RpcMethodHandler[Any, Any], method: str) -> Any:
        raise NotImplementedError


class ClientGuard(_Guard):
    """Authentication, rate limit, authorization and audit of the client port."""

    def __init__(
        self,
        acl: AclStore,
        *,
        token_key: auth.TokenKey | None = None,
        rate: RateLimiter | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.acl = acl
        self.token_key = token_key
        self.rate = rate
        self.audit = audit

    def guard(self, handler: grpc.RpcMethodHandler[Any, Any], method: str) -> Any:
        requirement = authz.requirement(method)

        async def admit(request: Any, context: Context) -> str:
            return await self._admit(method, requirement, request, context)

        async def check_item(request: Any, context: Context) -> None:
            await self._check(method, requirement, current_principal.get(), request, context)

        done: Done | None = None
        if requirement is not None and requirement.audited and self.audit is not None:
            audit = self.audit

            def done(principal: str, request: Any, context: Context, outcome: str) -> None:
                audit.record(
                    principal=principal, method=method, peer=context.peer(), request=request,
                    outcome=outcome,
                )

        return wrap(handler, admit, done, check_item)

    async def _admit(
        self,
        method: str,
        requirement: authz.Requirement | None,
        request: Any,
        context: Context,
    ) -> str:
        try:
            principal = auth.principal_of(context, self.token_key)
        except auth.Unauthenticated as error:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(error))
        except PermissionError as error:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(error))
        current_principal.set(principal)
        if request is None:  # a stream: each request is checked as it arrives
            return principal
        await self._check(method, requirement, principal, request, context)
        return principal

    async def _check(
        self,
        method: str,
        requirement: authz.Requirement | None,
        principal: str,
        request: Any,
        context: Context,
    ) -> None:
        """Rate and rules for one request of ``principal`` (aborts to refuse)."""
        if self.rate is not None and not self.rate.take(principal):
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"principal {principal!r} is over its rate limit of {self.rate.rate:g} "
                "requests/s; retry later",
            )
        state = self.acl.state()
        if not state.enabled or (requirement is not None and requirement.verb is None):
            return
        if requirement is None or requirement.verb is None:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method} is not in the authorization table: denied while ACLs are enabled",
            )
        verb = requirement.verb
        for name in requirement.names(request):
            if not state.allows(principal, verb, name):
                what = f"session {name[:_SHOWN_NAME]!r}" if name else "every session"
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"principal {principal!r} may not {verb} {what} ({method})",
                )


class PeerGuard(_Guard):
    """With TLS, the peer port takes calls only from node certificates on the allow list,
    and a batch only from the node its certificate names."""

    def __init__(self, allowed: Callable[[], set[str] | None], *, tls: bool = True) -> None:
        """``allowed()``: the node names accepted now; None: any node certificate.
        ``tls`` False (a plaintext peer port): no identity to check, malformed requests are
        still answered INVALID_ARGUMENT."""
        self.allowed = allowed
        self.tls = tls

    def guard(self, handler: grpc.RpcMethodHandler[Any, Any], method: str) -> Any:
        return wrap(handler, self._admit, None, self._check_sender)

    async def _check_sender(self, request: Any, context: Context) -> None:
        """A batch must come from the node its certificate names: a member cannot speak
        for another (the ``from`` field is the sender's Raft id)."""
        if not self.tls or "from" not in request.DESCRIPTOR.fields_by_name:
            return
        name = current_principal.get().removeprefix("node:")
        sender = getattr(request, "from")
        if sender != raft_id(name):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"peer port: node {name!r} sent a batch as Raft id {sender}",
            )

    async def _admit(self, request: Any, context: Context) -> str:
        if not self.tls:
            return auth.ANONYMOUS
        try:
            identity = tls.caller(context)
        except PermissionError as error:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(error))
        if identity is None or not identity.is_node:
            shown = f"a {identity.unit} certificate ({identity.name})" if identity else "no"
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"peer port: {shown} node certificate; only cluster members may call here",
            )
        allowed = self.allowed()
        if allowed is not None and identity.name not in allowed:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"peer port: node {identity.name!r} is not on this cluster's allow list",
            )
        principal = f"node:{identity.name}"
        if request is not None:
            current_principal.set(principal)
            await self._check_sender(request, context)
        return principal
