"""Access control in the SDK: grant, revoke, enable and list ACL rules.

Owns: building ``quorumlog.v1.Acl`` requests and running each through the client's
:class:`Router` (the leader is found and followed, UNAVAILABLE retried until the deadline, a
refusal raised at once), and :class:`AclRules`, the plain result of a listing. Must never:
evaluate rules (the nodes do) or cache them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from quorumlog.client._grpc import NodeConnection
from quorumlog.client.leader import Router
from quorumlog.proto import acl_pb2

T = TypeVar("T")
VERBS = ("append", "read", "consume", "manage")


@dataclass(frozen=True, slots=True)
class AclRule:
    principal: str  # "*": every caller
    verb: str  # append, read, consume, manage
    prefix: str  # "" covers every session


@dataclass(frozen=True, slots=True)
class AclRules:
    enabled: bool
    rules: list[AclRule]
    caller: str  # the principal the listing was made as


class AclOperations:
    """The ACL calls of one :class:`~quorumlog.client.AsyncClient` (shares its Router)."""

    def __init__(self, router: Router, end_of: Callable[[float | None], float]) -> None:
        self._router = router
        self._end_of = end_of

    async def _call(self, method: str, request: object, deadline: float | None) -> Any:
        async def attempt(node: NodeConnection, timeout: float) -> object:
            return await node.acl(method, request, timeout)

        return await self._router.call(attempt, end=self._end_of(deadline), what=f"acl {method}")

    async def grant(
        self, principal: str, verb: str, prefix: str = "", *, deadline: float | None = None
    ) -> bool:
        """Allow ``principal`` to ``verb`` sessions whose names start with ``prefix``;
        False when the rule already existed."""
        spec = acl_pb2.AclRuleSpec(principal=principal, verb=verb, prefix=prefix)
        response = await self._call("Grant", acl_pb2.AclGrantRequest(rule=spec), deadline)
        return bool(cast(acl_pb2.AclChangeResponse, response).changed)

    async def revoke(
        self, principal: str, verb: str, prefix: str = "", *, deadline: float | None = None
    ) -> bool:
        spec = acl_pb2.AclRuleSpec(principal=principal, verb=verb, prefix=prefix)
        response = await self._call("Revoke", acl_pb2.AclRevokeRequest(rule=spec), deadline)
        return bool(cast(acl_pb2.AclChangeResponse, response).changed)

    async def set_enabled(self, enabled: bool, *, deadline: float | None = None) -> bool:
        """Enforce the rules (deny by default) or allow every call again."""
        request = acl_pb2.AclSetEnabledRequest(enabled=enabled)
        response = await self._call("SetEnabled", request, deadline)
        return bool(cast(acl_pb2.AclChangeResponse, response).changed)

    async def list(self, *, deadline: float | None = None) -> AclRules:
        response = cast(
            acl_pb2.AclListResponse,
            await self._call("List", acl_pb2.AclListRequest(), deadline),
        )
        return AclRules(
            response.enabled,
            [AclRule(r.principal, r.verb, r.prefix) for r in response.rules],
            response.caller,
        )


class SyncAclOperations:
    """The same calls, blocking (:class:`~quorumlog.client.Client`)."""

    def __init__(
        self, operations: AclOperations, run: Callable[[Coroutine[Any, Any, Any]], Any]
    ) -> None:
        self._operations = operations
        self._run = run

    def grant(
        self, principal: str, verb: str, prefix: str = "", *, deadline: float | None = None
    ) -> bool:
        return bool(self._run(self._operations.grant(principal, verb, prefix, deadline=deadline)))

    def revoke(
        self, principal: str, verb: str, prefix: str = "", *, deadline: float | None = None
    ) -> bool:
        return bool(
            self._run(self._operations.revoke(principal, verb, prefix, deadline=deadline))
        )

    def set_enabled(self, enabled: bool, *, deadline: float | None = None) -> bool:
        return bool(self._run(self._operations.set_enabled(enabled, deadline=deadline)))

    def list(self, *, deadline: float | None = None) -> AclRules:
        return cast(AclRules, self._run(self._operations.list(deadline=deadline)))
