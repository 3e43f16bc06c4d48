"""The authorization table: for every RPC of the client port, its verb and the session names
it touches.

Owns: one mapping from a full gRPC method name (``/package.Service/Method``) to a
:class:`Requirement`, and a fallback by service name for services whose every method needs
the same verb (``quorumlog.v1.Consumer``: ``consume``). A method in neither table needs a
rule no one can hold: once ACLs are enabled it is refused (deny by default). Must never: look
at rules or principals (``quorumlog.node.state.acl`` evaluates, ``quorumlog.node.api.guard``
enforces).

Names checked per method:

- a session field: that session (``Append``, ``Read``, ``Subscribe``, ``DescribeSession``,
  ``TrimSession``, ``DeleteSession``);
- ``AppendBatch`` / ``AppendStream``: each append's session, checked per append before it is
  proposed (``guard.may_append``, on the append path): a refused append gets its own
  PERMISSION_DENIED outcome and the others of the batch go ahead;
- ``ListSessions``: the listed prefix (listing ``orders/`` needs read on a prefix of it);
- ``quorumlog.v1.Consumer``: the request's ``session`` when set; else its ``prefix`` field
  when it has one (accept the next available session among ``prefix``); else ``""``: a call
  naming no session (accept-next-available without a prefix, create a group) needs
  ``consume`` on the empty prefix, i.e. on every session. ``ResubmitDeadLetters`` and
  ``PurgeDeadLetters`` need the same, and are audited (they change the dead-letter log
  for good);
- cluster-wide operations (``Admin``, ``Acl``): ``manage`` on ``""``;
- ``ClusterStatus``, the gRPC health service and gRPC server reflection: any caller (no
  session data; ``cluster up``, probes and ``grpcurl`` need them whatever the rules). The
  caller is still authenticated (a bad token is refused) and rate limited like any call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from quorumlog.node.state.acl import APPEND, CONSUME, MANAGE, READ

Names = Callable[[Any], Sequence[str]]


def _session(request: Any) -> Sequence[str]:
    return (str(request.session),)


def _each_append(request: Any) -> Sequence[str]:
    return ()  # checked per append on the append path (guard.may_append), not per call


def _prefix(request: Any) -> Sequence[str]:
    return (str(request.prefix),)


def _cluster(request: Any) -> Sequence[str]:
    return ("",)


def _consumer_target(request: Any) -> Sequence[str]:
    fields = request.DESCRIPTOR.fields_by_name
    if "session" in fields and request.session:
        return (str(request.session),)
    if "prefix" in fields:
        return (str(request.prefix),)
    return ("",)


@dataclass(frozen=True)
class Requirement:
    """``verb`` on every name ``names(request)`` gives; ``verb`` None: any caller."""

    verb: str | None
    names: Names = _cluster
    audited: bool = False  # a manage or dead-letter operation: written to the audit log


PUBLIC = Requirement(None)
_MANAGE = Requirement(MANAGE, _cluster, audited=True)
_CONSUMER = Requirement(CONSUME, _consumer_target)  # every method of quorumlog.v1.Consumer
_CONSUMER_AUDITED = Requirement(CONSUME, _consumer_target, audited=True)

METHODS: dict[str, Requirement] = {
    "/quorumlog.v1.QuorumLog/Append": Requirement(APPEND, _session),
    "/quorumlog.v1.QuorumLog/AppendBatch": Requirement(APPEND, _each_append),
    "/quorumlog.v1.QuorumLog/AppendStream": Requirement(APPEND, _each_append),
    "/quorumlog.v1.QuorumLog/Read": Requirement(READ, _session),
    "/quorumlog.v1.QuorumLog/Subscribe": Requirement(READ, _session),
    "/quorumlog.v1.QuorumLog/ListSessions": Requirement(READ, _prefix),
    "/quorumlog.v1.QuorumLog/DescribeSession": Requirement(READ, _session),
    "/quorumlog.v1.QuorumLog/TrimSession": Requirement(MANAGE, _session, audited=True),
    "/quorumlog.v1.QuorumLog/DeleteSession": Requirement(MANAGE, _session, audited=True),
    "/quorumlog.v1.QuorumLog/ClusterStatus": PUBLIC,
    "/quorumlog.v1.Consumer/ResubmitDeadLetters": _CONSUMER_AUDITED,
    "/quorumlog.v1.Consumer/PurgeDeadLetters": _CONSUMER_AUDITED,
    "/quorumlog.v1.Admin/AddNode": _MANAGE,
    "/quorumlog.v1.Admin/RemoveNode": _MANAGE,
    "/quorumlog.v1.Admin/TransferLeader": _MANAGE,
    "/quorumlog.v1.Admin/BalanceLeaders": _MANAGE,
    "/quorumlog.v1.Admin/Backup": _MANAGE,
    "/quorumlog.v1.Acl/Grant": _MANAGE,
    "/quorumlog.v1.Acl/Revoke": _MANAGE,
    "/quorumlog.v1.Acl/SetEnabled": _MANAGE,
    "/quorumlog.v1.Acl/List": _MANAGE,
}

# Every method of these services (including ones added later).
SERVICES: dict[str, Requirement] = {
    "quorumlog.v1.Consumer": _CONSUMER,
    "grpc.health.v1.Health": PUBLIC,
    # Server reflection (grpcio-reflection serves v1alpha): the API's schema, no data.
    "grpc.reflection.v1alpha.ServerReflection": PUBLIC,
}


def requirement(method: str) -> Requirement | None:
    """What ``method`` (``/package.Service/Method``) needs; None: not in the table."""
    found = METHODS.get(method)
    if found is not None:
        return found
    service = method.strip("/").partition("/")[0]
    return SERVICES.get(service)
