"""The operations API (``Admin`` gRPC service) of one node: membership, leadership, backup.

Owns: serving AddNode (learner first, promoted once caught up), RemoveNode, TransferLeader
and Backup on the leader; checking every request against the current configuration before
anything is proposed (``quorumlog.node.replication.membership`` decides, this maps its refusal to
the gRPC status); waiting, with the caller's deadline, until a change is applied. Must never:
reach the Raft driver other than through the node port (``quorumlog.node.api.node_port``), or
propose a change it has not checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc

from quorumlog.node.api import balance, rpc
from quorumlog.node.api.node_port import NodeError
from quorumlog.node.api.rpc import Context
from quorumlog.node.api.shards import ShardTable
from quorumlog.node.common.config import NodeConfig, raft_id
from quorumlog.node.replication import membership
from quorumlog.node.replication.membership import MembershipError
from quorumlog.node.state import placement as placement_rule
from quorumlog.node.state.placement import Shard
from quorumlog.node.storage.backup_file import BackupHeader, backup_chunks
from quorumlog.proto import admin_pb2, admin_pb2_grpc, commands_pb2
from quorumlog.raft.types import ConfChange, ConfChangeType, NodeId, StateRole

T = TypeVar("T")

DEFAULT_TIMEOUT = 60.0  # seconds, when the caller sets no deadline (a catch-up takes a while)
# A learner this close to the leader's last index is caught up: promoting it cannot stall
# commits (the core refuses a promotion beyond ``Config.promote_max_lag`` anyway).
CAUGHT_UP_LAG = 64


def _give_up_at(context: Context) -> float:
    """When to stop waiting (monotonic): a little before the caller's deadline, so the
    caller receives our precise answer rather than its own DEADLINE_EXCEEDED."""
    remaining = rpc.remaining(context, DEFAULT_TIMEOUT)
    return time.monotonic() + remaining - min(1.0, remaining / 10)


class AdminService(admin_pb2_grpc.AdminServicer):
    def __init__(self, shards: ShardTable, config: NodeConfig) -> None:
        self.shards = shards
        self.port = shards.meta.port  # membership, leadership and backup: the meta group
        self.state_machine = shards.meta.state_machine
        self.config = config

    # -- helpers -------------------------------------------------------------------------
    async def _leader_only(self, context: Context) -> None:
        if not self.port.is_leader:
            await rpc.abort_not_leader(context, self.port, "operations are served by the leader")

    async def _checked(self, context: Context, check: Callable[[], T]) -> T:
        """``check()``'s answer, or abort with its refusal's precise status."""
        try:
            return check()
        except MembershipError as error:
            await rpc.abort_invalid(context, error)

    def _records(self) -> dict[NodeId, commands_pb2.MemberAddress]:
        """The member records, with client addresses learned at run time filled in."""
        records = self.state_machine.members()
        peers = self.port.peers
        for node_id, record in records.items():
            info = peers.get(node_id)
            if not record.client_address and info is not None:
                record.client_address = info.client_address
        return records

    async def _poll(
        self, context: Context, done: Callable[[], bool], end: float, what: str
    ) -> None:
        """Wait (one Raft tick at a time) until ``done()``; DEADLINE_EXCEEDED at ``end``."""
        while not done():
            if time.monotonic() >= end:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, what)
            await asyncio.sleep(self.port.tick_seconds)  # re-check once per Raft tick

    def _tags(self) -> dict[NodeId, str]:
        """Every member's host tag as this node heard it (its name when not heard)."""
        tags = {node_id: info.host_tag or info.name for node_id, info in self.port.peers.items()}
        tags[self.port.node_id] = self.config.host_tag or self.config.name
        return tags

    async def _move(self, context: Context, moved: list[Shard], end: float) -> None:
        """Record each moved shard's new replicas in the meta group, then wait until every
        moved shard this node hosts has exactly them as voters (a shard hosted elsewhere
        finishes on its own leader; ``quorumlog status`` shows it)."""
        for shard in moved:
            try:
                await self.port.propose(
                    placement_rule.replicas_command(shard), 64, rpc.deadline(context))
            except NodeError as error:
                await rpc.abort_node_error(context, error)
        hosted = {local.group: local for local in self.shards.local_shards()}

        def settled() -> bool:
            for shard in moved:
                local = hosted.get(shard.group)
                if local is None or local.group not in {
                        g.group for g in self.shards.local_shards()}:
                    continue  # not hosted here (or moved away from here): not watched
                conf = local.port.configuration()
                if set(conf.voters) != set(shard.replicas) or conf.learners:
                    return False
            return True

        await self._poll(
            context, settled, end,
            "shard replicas are still moving (learners catching up); the moves go on: watch "
            "`quorumlog status`, then run the command again",
        )

    async def _change(
        self, context: Context, change: ConfChange, applied: Callable[[], bool]
    ) -> int:
        """Propose ``change`` and wait until it is applied here; returns its index."""
        try:
            term, index = await self.port.change_membership(
                change, rpc.deadline(context, DEFAULT_TIMEOUT)
            )
        except NodeError as error:  # not the leader, another change in progress, deadline
            await rpc.abort_node_error(context, error)
        if not applied():
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"leadership changed at term {term}: the membership change at {index} was "
                "not applied; retry",
            )
        return index

    # -- RPCs ----------------------------------------------------------------------------
    async def AddNode(  # noqa: N802 -- gRPC method name
        self, request: admin_pb2.AddNodeRequest, context: Context
    ) -> admin_pb2.AddNodeResponse:
        await self._leader_only(context)
        port = self.port
        new = await self._checked(context, lambda: membership.check_add(
            port.configuration(), self._records(), request.id,
            request.peer_address, request.client_address,
        ))
        node_id = raft_id(request.id)
        started = time.monotonic()
        end = _give_up_at(context)
        learner_index = voter_index = 0
        if new:
            context_bytes = membership.encode_context(
                request.id, request.peer_address, request.client_address
            )
            learner_index = await self._change(
                context,
                ConfChange(ConfChangeType.ADD_LEARNER, node_id, context_bytes),
                lambda: node_id in port.configuration().learners,
            )

        def caught_up() -> bool:
            status = port.status()
            follower = status.follower(node_id)  # the leader's view; none on a follower
            if follower is None or status.role != StateRole.LEADER:
                return True  # removed meanwhile, or leadership lost: the promotion says so
            return follower.match_index >= learner_index and follower.lag <= CAUGHT_UP_LAG

        if new is not None:  # None: already a voter at these addresses (a retried call)
            await self._poll(
                context, caught_up, end,
                f"{request.id} was added as a learner but has not caught up in time; it stays "
                f"a learner: check it runs (quorumlog node --join ...), then add-node again to "
                f"promote it, or remove-node it",
            )
            voter_index = await self._change(
                context,
                ConfChange(ConfChangeType.ADD_NODE, node_id),
                lambda: node_id in port.configuration().voters,
            )
        if self.shards.sharded:
            # The new member takes its share of shard replicas: each moved shard's leader
            # adds it as a learner, promotes it once caught up, then removes the old replica.
            moved = placement_rule.with_node(
                self.shards.placement(), node_id, port.configuration().voters, self._tags())
            await self._move(context, moved, end)
        return admin_pb2.AddNodeResponse(
            id=request.id,
            learner_index=learner_index,
            voter_index=voter_index,
            catch_up_seconds=time.monotonic() - started,
        )

    async def RemoveNode(  # noqa: N802 -- gRPC method name
        self, request: admin_pb2.RemoveNodeRequest, context: Context
    ) -> admin_pb2.RemoveNodeResponse:
        await self._leader_only(context)
        port = self.port
        node_id = await self._checked(context, lambda: membership.check_remove(
            port.configuration(), self._records(), request.id
        ))
        if self.shards.sharded:
            # First move its shard replicas to the others (added, caught up, promoted; then
            # it is removed from each shard), then it leaves the meta group.
            moved = placement_rule.without_node(
                self.shards.placement(), node_id, port.configuration().voters, self._tags())
            await self._move(context, moved, _give_up_at(context))
            await self._leader_only(context)
        index = await self._change(
            context,
            ConfChange(ConfChangeType.REMOVE_NODE, node_id),
            lambda: node_id not in port.configuration().all_ids(),
        )
        return admin_pb2.RemoveNodeResponse(index=index)

    async def TransferLeader(  # noqa: N802 -- gRPC method name
        self, request: admin_pb2.TransferLeaderRequest, context: Context
    ) -> admin_pb2.TransferLeaderResponse:
        await self._leader_only(context)
        port = self.port
        node_id = await self._checked(context, lambda: membership.check_transfer(
            port.configuration(), self._records(), request.id
        ))
        end = _give_up_at(context)
        election_seconds = port.election_seconds
        while port.leader_id != node_id:
            if port.is_leader:
                # Ask (again: the core abandons a transfer after an election timeout).
                port.transfer_leader(node_id)
            if time.monotonic() >= end:
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"{request.id} did not take over before the deadline (lagging or "
                    "unreachable?); check `quorumlog status`",
                )
            await asyncio.sleep(min(election_seconds, max(0.0, end - time.monotonic())))
        return admin_pb2.TransferLeaderResponse(leader=request.id, term=port.term)

    async def BalanceLeaders(  # noqa: N802 -- gRPC method name
        self, request: admin_pb2.BalanceLeadersRequest, context: Context
    ) -> admin_pb2.BalanceLeadersResponse:
        """Hand the shards this node leads to their preferred leaders; wait (up to an
        election timeout) for the transfers, then answer the leader counts known here.
        Every node also does this on its own every few seconds."""
        moves = balance.balance_once(self.shards)
        end = time.monotonic() + min(self.port.election_seconds, rpc.remaining(context) / 2)
        pending = {move.shard for move in moves}
        while pending and time.monotonic() < end:
            await asyncio.sleep(self.port.tick_seconds)  # re-check once per Raft tick
            pending = {
                local.shard for local in self.shards.local_shards()
                if local.shard in pending and local.port.is_leader
            }
        return admin_pb2.BalanceLeadersResponse(
            moves=[admin_pb2.LeaderMove(shard=move.shard, to=move.to, **{"from": move.frm})
                   for move in moves],
            leaders=balance.leader_counts(self.shards),
        )

    async def Backup(  # noqa: N802 -- gRPC method name
        self, request: admin_pb2.BackupRequest, context: Context
    ) -> AsyncIterator[admin_pb2.BackupChunk]:
        port, state_machine, section = self.port, self.state_machine, ""
        if self.shards.sharded:
            # One group per call, from that group's leader: the meta group, or one shard.
            if request.HasField("shard"):
                try:
                    local = self.shards.for_shard(request.shard)
                except NodeError as error:
                    await rpc.abort_node_error(context, error)
                port, state_machine = local.port, local.state_machine
                section = f"shard {request.shard}"
            elif request.meta:
                section = "meta"
            else:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"a sharded cluster ({self.shards.shard_count} shards) is backed up one "
                    "group at a time (BackupRequest.meta, BackupRequest.shard): "
                    "`quorumlog backup` asks for each and bundles them",
                )
        elif request.HasField("shard") and request.shard != 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"shard {request.shard} does not exist: the cluster has 1 shard")
        if port is self.port:
            await self._leader_only(context)
        elif not port.is_leader:
            await rpc.abort_not_leader(context, port, "backups are served by the leader")
        # A linearizable point first: the copy holds every write acknowledged before the call.
        await rpc.linearizable(context, port)
        export = state_machine.export_state()
        header = BackupHeader(
            applied_index=export.applied_index,
            cluster_id=self.config.cluster_id,
            created_ms=int(time.time() * 1000),
            source=self.config.name,
            members={info.name: info.peer_address for info in self.port.peers.values()},
            section=section,
        )
        digest = hashlib.sha256()
        total = 0
        with export:
            pieces = backup_chunks(header, export)
            while True:
                # Reading the copy is disk work: off the event loop, one chunk at a time.
                piece = await asyncio.to_thread(next, pieces, None)
                if piece is None:
                    break
                digest.update(piece)
                total += len(piece)
                yield admin_pb2.BackupChunk(data=piece)
        yield admin_pb2.BackupChunk(
            done=True, total_bytes=total, sha256=digest.digest(),
            applied_index=export.applied_index,
        )
