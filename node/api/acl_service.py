"""The access control API (``quorumlog.v1.Acl`` gRPC service) of one node.

Owns: turning Grant / Revoke / SetEnabled into replicated ``AclCommand`` entries (checked
before anything is proposed; the caller recorded as ``by``), refusing to enable ACLs when the
caller would not keep ``manage`` on every session (so no one locks the cluster out by
accident), and listing the rules from a linearizable read point. Must never: write rules
except through Raft (the node port, ``quorumlog.node.api.node_port``), or check who may call
it (``quorumlog.node.api.guard`` does, from ``quorumlog.node.api.authz``).
"""

from __future__ import annotations

import grpc

from quorumlog.node.api import rpc
from quorumlog.node.api.guard import current_principal
from quorumlog.node.api.node_port import NodePort
from quorumlog.node.api.rpc import Context
from quorumlog.node.common.limits import InvalidInput
from quorumlog.node.state import acl
from quorumlog.proto import acl_pb2, acl_pb2_grpc, commands_pb2


class AclService(acl_pb2_grpc.AclServicer):
    def __init__(self, port: NodePort, store: acl.AclStore) -> None:
        self.port = port
        self.store = store

    async def _change(
        self, context: Context, command: commands_pb2.AclCommand
    ) -> acl_pb2.AclChangeResponse:
        command.by = current_principal.get()
        index, result = await rpc.propose(
            context, self.port, commands_pb2.Command(acl=command), command.ByteSize() + 16
        )
        assert isinstance(result, acl.AclResult)
        return acl_pb2.AclChangeResponse(changed=result.changed, index=index)

    async def _rule_change(
        self, context: Context, kind: str, spec: acl_pb2.AclRuleSpec
    ) -> acl_pb2.AclChangeResponse:
        """Grant or revoke (``kind``) one rule, checked before it is proposed."""
        rule = commands_pb2.AclRule(
            principal=spec.principal, verb=spec.verb, prefix=spec.prefix
        )
        try:
            acl.check_rule(rule)
        except InvalidInput as error:
            await rpc.abort_invalid(context, error)
        command = commands_pb2.AclCommand()
        getattr(command, kind).CopyFrom(rule)
        return await self._change(context, command)

    async def Grant(  # noqa: N802 -- gRPC method name
        self, request: acl_pb2.AclGrantRequest, context: Context
    ) -> acl_pb2.AclChangeResponse:
        return await self._rule_change(context, "grant", request.rule)

    async def Revoke(  # noqa: N802 -- gRPC method name
        self, request: acl_pb2.AclRevokeRequest, context: Context
    ) -> acl_pb2.AclChangeResponse:
        return await self._rule_change(context, "revoke", request.rule)

    async def SetEnabled(  # noqa: N802 -- gRPC method name
        self, request: acl_pb2.AclSetEnabledRequest, context: Context
    ) -> acl_pb2.AclChangeResponse:
        if request.enabled:
            caller = current_principal.get()
            enforced = acl.AclState(True, self.store.state().rules)
            if not enforced.allows(caller, acl.MANAGE, ""):
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"enabling ACLs would lock principal {caller!r} out: grant it manage on "
                    f"the empty prefix first (quorumlog acl grant {caller or '*'} manage '')",
                )
        return await self._change(context, commands_pb2.AclCommand(enabled=request.enabled))

    async def List(  # noqa: N802 -- gRPC method name
        self, request: acl_pb2.AclListRequest, context: Context
    ) -> acl_pb2.AclListResponse:
        await rpc.linearizable(context, self.port)
        state = self.store.state()
        return acl_pb2.AclListResponse(
            enabled=state.enabled,
            rules=[
                acl_pb2.AclRuleSpec(principal=r.principal, verb=r.verb, prefix=r.prefix)
                for r in state.rules
            ],
            caller=current_principal.get(),
        )
