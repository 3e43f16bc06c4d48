"""A 3-node cluster of real RaftNodes and services inside the test process.

Owns: ``InProcessCluster``: one asyncio loop in a thread of its own running, per node, a
``RaftNode`` on a ``MemoryLogStore`` (the Raft log in memory; the session state machine on a
RocksDB directory of its own under ROOT/<name>), the peers on a ``MemoryNetwork`` (with its
switches to cut links), the ``NodePort`` and every client service (and server reflection) on a
real ``grpc.aio`` server at 127.0.0.1:<ephemeral port>, wired by the same
``quorumlog.node.process.wiring`` functions as ``NodeServer`` — so the SDK, raw stubs and the
tests written against ``cluster_harness.LocalCluster`` (``nodes[name].client_addr``,
``addresses``, ``status``, ``leader``, ``wait_leader``, ``wait_ready``) work unchanged, minus
what needs a process (kill -9, SIGSTOP, restart from disk, TLS, the CLI). n1 campaigns at start,
so the first leader is known without an election timeout. Must never: wait with a bare sleep
(waits poll a condition with a deadline), or leave a thread, server or database open once
``stop`` (or the ``with`` block) is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from cluster_harness import wait_until

from quorumlog.node.api.consumer_service import ConsumerService
from quorumlog.node.api.node_port import NodePort
from quorumlog.node.api.shards import LocalShard, ShardTable
from quorumlog.node.common.config import NodeConfig, raft_id
from quorumlog.node.process import wiring
from quorumlog.node.process.launcher import agreed_leader
from quorumlog.node.process.security import NodeSecurity
from quorumlog.node.process.server import SERVER_OPTIONS
from quorumlog.node.process.shard_groups import ShardGroups
from quorumlog.node.replication import membership
from quorumlog.node.replication.groups import GroupHost
from quorumlog.node.replication.memory_transport import MemoryNetwork, MemoryTransport
from quorumlog.node.replication.raft_node import FetchState, RaftNode
from quorumlog.node.replication.transport import PeerInfo
from quorumlog.node.state.state_machine import SessionStateMachine
from quorumlog.node.storage.log_store import LogStore, MemoryLogStore
from quorumlog.node.storage.raft_store import RocksStorage
from quorumlog.proto import quorumlog_pb2, quorumlog_pb2_grpc

T = TypeVar("T")

READY_TIMEOUT = 30.0  # an election or catch-up on two loaded cores
CALL_TIMEOUT = 60.0  # one start / stop of the whole cluster


@dataclass
class InProcessNode:
    """One node's pieces. ``log_store`` outlives a stop (a restart reopens it)."""

    name: str
    client_addr: str
    peer_addr: str
    data_dir: Path
    log_store: MemoryLogStore
    alive: bool = False
    state_storage: RocksStorage | None = None
    state_machine: SessionStateMachine | None = None
    transport: MemoryTransport | None = None
    raft: RaftNode | None = None
    port: NodePort | None = None
    server: grpc.aio.Server | None = None
    consumer_service: ConsumerService | None = None
    # Sharded clusters (``shards`` > 1): every group's loop on a host, the data groups,
    # each data group's log (kept for a restart) and state storage (closed on stop).
    host: GroupHost | None = None
    groups: ShardGroups | None = None
    keeper: asyncio.Task[None] | None = None
    group_logs: dict[int, MemoryLogStore] = field(default_factory=dict)
    group_states: list[RocksStorage] = field(default_factory=list)

    @property
    def node_id(self) -> int:
        return raft_id(self.name)


class InProcessCluster:
    def __init__(
        self, root: Path, size: int = 3, *, tick_ms: int = 50, election_tick: int = 10,
        snapshot_every: int = 50_000, snapshot_keep: int = 10_000, seed: int = 7,
        shards: int = 1,
    ) -> None:
        self.root = root
        self.shards = shards  # > 1: a meta group and this many data groups per cluster
        self.tick_ms = tick_ms
        self.election_tick = election_tick
        self.snapshot_every = snapshot_every
        self.snapshot_keep = snapshot_keep
        self.seed = seed
        self.network = MemoryNetwork()
        self.peers = {f"n{index}": f"inprocess/n{index}" for index in range(1, size + 1)}
        self.nodes: dict[str, InProcessNode] = {}
        for name, peer_addr in self.peers.items():
            store = MemoryLogStore()
            store.bootstrap(tuple(sorted(raft_id(member) for member in self.peers)))
            self.nodes[name] = InProcessNode(name, "", peer_addr, root / name, store)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="inprocess-cluster", daemon=True)

    # -- running code on the cluster's loop -----------------------------------------------------
    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        """Run ``coroutine`` on the cluster's loop and return its result (from any thread
        but that loop's)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self.call(self._start_all())

    async def _start_all(self) -> None:
        for name in self.nodes:
            await self._start_node(name)
        first = self.nodes["n1"].raft
        assert first is not None
        first.campaign()  # skip the first election timeout

    def stop(self) -> None:
        """Stop every node, then the loop and its thread."""
        if self._thread.is_alive():
            try:
                self.call(self._stop_all())
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(CALL_TIMEOUT)
        if not self.loop.is_closed() and not self.loop.is_running():
            self.loop.close()

    async def _stop_all(self) -> None:
        for name in self.nodes:
            await self._stop_node(name)
        # Let grpc's and the services' cancelled tasks finish before the loop stops.
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def stop_node(self, name: str) -> None:
        """A clean stop of one node (its log store is kept for ``start_node``)."""
        self.call(self._stop_node(name))

    def start_node(self, name: str) -> None:
        """Start a stopped node again on the same client address: its log store reopened
        (nothing lost, as after a clean stop), its state machine from its RocksDB."""
        self.call(self._start_node(name))

    async def _start_node(self, name: str) -> None:
        node = self.nodes[name]
        if node.alive:
            return
        if node.state_storage is not None:  # a restart
            node.log_store = node.log_store.reopen()
        node.data_dir.mkdir(parents=True, exist_ok=True)
        founding = node.state_storage is None
        state_storage = RocksStorage(node.data_dir / "state")
        state_machine = SessionStateMachine(state_storage)
        if founding and self.shards > 1:
            state_machine.seed_shard_count(self.shards)
        records = state_machine.members()
        if not records and not state_machine.import_incomplete:
            records = membership.records_from_peers(
                self.peers, node.log_store.snapshot().metadata.conf_state.all_ids())
            state_machine.seed_members(records)
        config = NodeConfig(
            name=name, client_addr=node.client_addr or "127.0.0.1:0", peer_addr=node.peer_addr,
            peers=dict(self.peers), data_dir=node.data_dir, tick_ms=self.tick_ms,
            election_tick=self.election_tick, snapshot_every=self.snapshot_every,
            snapshot_keep=self.snapshot_keep, seed=self.seed + node.node_id,
        )
        security = NodeSecurity(config)
        server = grpc.aio.server(
            options=SERVER_OPTIONS, interceptors=security.client_interceptors(state_machine.acl))
        port_number = server.add_insecure_port(config.client_addr)
        if port_number == 0:
            raise OSError(f"{name}: cannot listen on {config.client_addr}")
        node.client_addr = config.client_addr = f"127.0.0.1:{port_number}"

        peers = wiring.peer_infos(records, config.peers)
        peers[node.node_id] = PeerInfo(name, node.peer_addr, node.client_addr)

        def deliver(messages: list[Any]) -> None:
            if node.host is not None:
                node.host.deliver(messages)
            elif node.raft is not None:
                node.raft.deliver([message for _, message in messages])  # one group

        def unreachable(peer: int) -> None:
            if node.host is not None:
                node.host.report_unreachable(peer)
            elif node.raft is not None:
                node.raft.report_unreachable(peer)

        async def export_state(min_index: int, group: int = 0) -> AsyncIterator[bytes]:
            raft = node.raft if group == 0 else (
                node.host.get(group) if node.host is not None else None)
            source = state_machine if group == 0 else (
                node.groups.state_machine(group) if node.groups is not None else None)
            if raft is None or source is None or source.applied_index() < min_index \
                    or raft.needs_restore:
                raise RuntimeError(f"{name}: no state of group {group} at {min_index}")
            with source.export_state() as export:
                for chunk in export:
                    yield chunk
                    await asyncio.sleep(0)  # let the Raft loops run between chunks

        transport = self.network.transport(
            self_id=node.node_id, self_name=name, client_address=node.client_addr,
            peers=peers, on_messages=deliver, on_unreachable=unreachable,
            export_state=export_state,
        )

        raft = wiring.build_raft_node(
            config, node.log_store, state_machine, transport, transport.fetch_state,
            on_membership_applied=lambda: wiring.sync_members(
                state_machine, transport, config.peers),
        )
        port = NodePort(raft, transport, name)
        node.state_storage, node.state_machine = state_storage, state_machine
        node.transport, node.raft, node.port = transport, raft, port
        table = wiring.single_group_table(port, state_machine)
        if self.shards > 1:
            table = self._host_groups(node, config)
        consumer_service = wiring.add_client_services(server, table, config)
        node.server, node.consumer_service = server, consumer_service
        if node.host is not None and node.groups is not None:
            node.host.start()
            node.keeper = self.loop.create_task(node.groups.keep(), name=f"keeper-{name}")
        else:
            raft.start()
        consumer_service.start()
        transport.start()
        await server.start()
        node.alive = True

    async def _stop_node(self, name: str) -> None:
        node = self.nodes[name]
        if not node.alive:
            return
        node.alive = False
        if node.server is not None:
            await node.server.stop(0.2)
        if node.consumer_service is not None:
            await node.consumer_service.stop()
        if node.keeper is not None:
            if node.groups is not None:
                node.groups.stopping = True
            node.keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await node.keeper
            node.keeper = None
        if node.host is not None:
            await node.host.stop()  # every group's loop, the meta group's too
        elif node.raft is not None:
            await node.raft.stop()
        if node.transport is not None:
            await node.transport.stop()
        if node.state_storage is not None:
            node.state_storage.close()
        for storage in node.group_states:
            storage.close()
        node.group_states.clear()
        node.raft, node.host, node.groups = None, None, None

    def _host_groups(self, node: InProcessNode, config: NodeConfig) -> ShardTable:
        """A sharded node: the meta group's loop and the data groups on one host (the
        same ``ShardGroups`` as ``NodeServer``), each data group's log in memory (kept for a
        restart) and its state in a RocksDB directory of its own."""
        raft, port, transport = node.raft, node.port, node.transport
        state_machine = node.state_machine
        assert raft and port and transport and state_machine
        host = GroupHost(self.tick_ms / 1000, transport)
        host.add(raft)

        def open_stores(group: int) -> tuple[LogStore, SessionStateMachine]:
            log_store = node.group_logs.get(group)
            log_store = MemoryLogStore() if log_store is None else log_store.reopen()
            node.group_logs[group] = log_store
            state = RocksStorage(node.data_dir / f"state-g{group}")
            node.group_states.append(state)
            return log_store, SessionStateMachine(state)

        def fetcher(group: int) -> FetchState:
            return lambda peer, index: transport.fetch_state(peer, index, group)

        groups = ShardGroups(
            config, host=host, links=transport, meta=LocalShard(0, 0, port, state_machine),
            open_stores=open_stores, fetcher=fetcher,
        )
        groups.open_placed()
        node.host, node.groups = host, groups
        return groups.table

    # -- links (each switch is in force when the call returns) ---------------------------------
    async def _switch(self, change: Callable[[], None]) -> None:
        change()

    def partition(self, name: str) -> None:
        """Cut ``name`` off from the others, both ways (it keeps serving its clients)."""
        self.call(self._switch(lambda: self.network.partition(raft_id(name))))

    def heal_all(self) -> None:
        self.call(self._switch(self.network.heal_all))

    def pause(self, name: str) -> None:
        """The peers' view of a paused (SIGSTOP) node: nothing reaches it or comes from it.
        Unlike a paused process it still answers its own clients."""
        self.partition(name)

    def resume(self, name: str) -> None:
        """Undo ``pause``: every link to and from ``name`` works again."""
        self.call(self._switch(lambda: self.network.heal_node(raft_id(name))))

    # -- the LocalCluster surface ---------------------------------------------------------------
    @property
    def addresses(self) -> list[str]:
        return [node.client_addr for node in self.nodes.values()]

    def status(self, name: str, timeout: float = 1.0) -> quorumlog_pb2.NodeStatus:
        with grpc.insecure_channel(self.nodes[name].client_addr) as channel:
            stub = quorumlog_pb2_grpc.QuorumLogStub(channel)  # type: ignore[no-untyped-call]
            status: quorumlog_pb2.NodeStatus = stub.ClusterStatus(
                quorumlog_pb2.ClusterStatusRequest(), timeout=timeout)
            return status

    def _status_or_none(self, name: str) -> quorumlog_pb2.NodeStatus | None:
        try:
            return self.status(name)
        except grpc.RpcError:
            return None

    def leader(self, exclude: tuple[str, ...] = ()) -> str | None:
        """A running node (not in ``exclude``) that reports itself leader, or None."""
        for name, node in self.nodes.items():
            if name in exclude or not node.alive:
                continue
            status = self._status_or_none(name)
            if status is not None and status.role == "leader":
                return name
        return None

    def wait_leader(self, timeout: float = READY_TIMEOUT, exclude: tuple[str, ...] = ()) -> str:
        return wait_until(lambda: self.leader(exclude), timeout, "a leader")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> str:
        """A leader every running node knows; its name."""
        def ready() -> str | None:
            running = [name for name, node in self.nodes.items() if node.alive]
            statuses = [self._status_or_none(name) for name in running]
            leader_id = agreed_leader(statuses)
            return None if leader_id is None else leader_id

        return wait_until(ready, timeout, "a leader every node knows")


@contextlib.contextmanager
def inprocess_cluster(root: Path, size: int = 3, **options: Any) -> Iterator[InProcessCluster]:
    """A started cluster with a leader every node knows; stopped after, however it ends."""
    cluster = InProcessCluster(root, size, **options)
    try:
        cluster.start()
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.stop()
