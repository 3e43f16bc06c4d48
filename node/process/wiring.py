"""The node wiring a server process and the in-process test cluster share.

Owns: building a node's ``RaftNode`` from its ``NodeConfig`` (timing, snapshot and entry
bounds, seed), the peer links' address book from the replicated member records (and keeping
the links in step with them), and registering the client services — ``QuorumLogService``,
``AdminService``, ``AclService``, ``ConsumerService`` (all reaching the node through one
``NodePort``), the gRPC health service and server reflection — on a client ``grpc.aio``
server. ``quorumlog.node.process.server`` (``NodeServer``) and ``tests/inprocess_cluster.py``
both use it, so the wiring lives in one place. Must never: start, bind or stop anything (the
callers own their start/stop order, listening addresses and security), or contain protocol or
state-machine logic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from quorumlog.node.api import reflection
from quorumlog.node.api.acl_service import AclService
from quorumlog.node.api.admin_service import AdminService
from quorumlog.node.api.consumer_service import ConsumerService
from quorumlog.node.api.node_port import NodePort
from quorumlog.node.api.quorumlog_service import QuorumLogService
from quorumlog.node.api.shards import LocalShard, ShardTable
from quorumlog.node.common.config import NodeConfig
from quorumlog.node.replication import membership
from quorumlog.node.replication.raft_node import FetchState, RaftNode
from quorumlog.node.replication.transport import PeerInfo
from quorumlog.node.state.state_machine import SessionStateMachine
from quorumlog.node.storage.log_store import LogStore
from quorumlog.proto import (
    acl_pb2_grpc,
    admin_pb2_grpc,
    commands_pb2,
    consumer_pb2_grpc,
    quorumlog_pb2_grpc,
)
from quorumlog.raft.types import Message, NodeId, StateRole


class Links(Protocol):
    """What the wiring needs of the peer links (``PeerTransport``, ``MemoryTransport``)."""

    @property
    def peers(self) -> Mapping[NodeId, PeerInfo]: ...

    def send(self, messages: list[Message], group: int = 0) -> None: ...
    def set_peers(self, wanted: dict[NodeId, PeerInfo]) -> None: ...


def peer_infos(
    records: Mapping[NodeId, commands_pb2.MemberAddress], seed_peers: Mapping[str, str]
) -> dict[NodeId, PeerInfo]:
    """The peer links' address book: the members ``records`` name (``seed_peers`` filling in
    what they lack), as ``PeerInfo``."""
    return {
        node_id: PeerInfo(address.name, address.peer_address, address.client_address)
        for node_id, address in membership.address_book(records, seed_peers).items()
    }


def sync_members(
    state_machine: SessionStateMachine, links: Links, seed_peers: Mapping[str, str]
) -> None:
    """Point the peer links at the members the replicated records name (after a membership
    change applied or a state restore); with no records yet (a joining node) keep the seeds
    and learned peers."""
    records = state_machine.members()
    if records:
        links.set_peers(peer_infos(records, seed_peers))


def build_raft_node(
    config: NodeConfig,
    storage: LogStore,
    state_machine: SessionStateMachine,
    links: Links,
    fetch_state: FetchState,
    *,
    on_role_change: Callable[[StateRole, NodeId, int], None] | None = None,
    on_membership_applied: Callable[[], None] | None = None,
    group: int = 0,
) -> RaftNode:
    """The Raft driver of the node ``config`` describes, on ``storage`` (its log), sending
    through ``links`` and fetching a leader's state with ``fetch_state``."""
    return RaftNode(
        node_id=config.id,
        storage=storage,
        state_machine=state_machine,
        send=(lambda messages: links.send(messages, group)) if group else links.send,
        fetch_state=fetch_state,
        peer_ids=lambda: list(links.peers),
        tick_seconds=config.tick_ms / 1000,
        election_tick=config.election_tick,
        heartbeat_tick=config.heartbeat_tick,
        snapshot_every=config.snapshot_every,
        snapshot_keep=config.snapshot_keep,
        snapshot_bytes=config.snapshot_bytes,
        max_entry_bytes=config.max_entry_bytes,
        seed=config.seed,
        unsafe_ack_before_fsync=config.unsafe_ack_before_fsync,
        on_role_change=on_role_change,
        on_membership_applied=on_membership_applied,
        group=group,
    )


def single_group_table(port: NodePort, state_machine: SessionStateMachine) -> ShardTable:
    """The shard table of a node with one group (the meta group carries every session)."""
    return ShardTable(LocalShard(0, 0, port, state_machine), dict, lambda: port.peers)


def add_client_services(
    server: grpc.aio.Server,
    shards: ShardTable,
    config: NodeConfig,
    *,
    observe: Callable[[str, str, float], None] | None = None,
    health_servicer: health.aio.HealthServicer | None = None,
) -> ConsumerService:
    """Register every client service on ``server`` (not yet started): QuorumLog, Admin, Acl
    and Consumer, each reaching the node only through ``port``, never through each other;
    ``health_servicer`` if given; server reflection (schema only; anyone may ask, like
    health). Returns the ``ConsumerService``, which its owner starts and stops."""
    service = QuorumLogService(shards, config, observe=observe)
    quorumlog_pb2_grpc.add_QuorumLogServicer_to_server(  # type: ignore[no-untyped-call]
        service, server
    )
    admin_pb2_grpc.add_AdminServicer_to_server(  # type: ignore[no-untyped-call]
        AdminService(shards, config), server
    )
    acl_pb2_grpc.add_AclServicer_to_server(  # type: ignore[no-untyped-call]
        AclService(shards.meta.port, shards.meta.state_machine.acl), server
    )
    consumer_service = ConsumerService(shards)
    consumer_pb2_grpc.add_ConsumerServicer_to_server(  # type: ignore[no-untyped-call]
        consumer_service, server
    )
    if health_servicer is not None:
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable(server)
    return consumer_service
