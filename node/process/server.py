"""One quorumlog server process: storage, Raft loop, peer and client gRPC servers, metrics.

Owns: wiring the pieces of a node together and their start/stop order (storage → Raft loop →
peer server → client server; the reverse on stop), bootstrapping an empty data directory as a
founding member (or, with ``--join``, leaving it empty until the leader adds this node), keeping
the peer links in step with the replicated member records, the gRPC health service and server
reflection (``quorumlog.node.api.reflection``) on the client port, and structured JSON logs. The
RaftNode construction, peer address book and client-service registration it shares with the
in-process test cluster are in ``quorumlog.node.process.wiring``. Must never: contain protocol
or state-machine logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2

from quorumlog.node.api.consumer_service import ConsumerService
from quorumlog.node.api.node_port import NodePort
from quorumlog.node.api.shards import LocalShard, ShardTable
from quorumlog.node.common.config import NodeConfig, raft_id
from quorumlog.node.common.tls import peer_channel
from quorumlog.node.process import wiring
from quorumlog.node.process.metrics import (
    LatencyInterceptor,
    NodeMetricsExporter,
    StorageFigures,
)
from quorumlog.node.process.readmission import Readmitter
from quorumlog.node.process.repair import can_repair, set_aside
from quorumlog.node.process.security import NodeSecurity
from quorumlog.node.process.shard_groups import ShardGroups
from quorumlog.node.replication import membership
from quorumlog.node.replication.codec import GroupMessage
from quorumlog.node.replication.groups import GroupHost
from quorumlog.node.replication.incarnations import IncarnationGate
from quorumlog.node.replication.raft_node import FetchState, RaftNode
from quorumlog.node.replication.transport import (
    CHANNEL_OPTIONS,
    PeerInfo,
    PeerServicer,
    PeerTransport,
)
from quorumlog.node.state.state_machine import SessionStateMachine
from quorumlog.node.storage.disk_space import MIB, DiskSpace, is_out_of_space
from quorumlog.node.storage.engine import DB_DIR, StorageEngine, fsync_directory
from quorumlog.node.storage.log_store import LogStore
from quorumlog.node.storage.raft_store import RocksStorage, log_options
from quorumlog.node.storage.scrub import is_corruption, scrub
from quorumlog.proto import raft_pb2, raft_pb2_grpc
from quorumlog.raft.types import NodeId, StateRole

log = logging.getLogger("quorumlog.server")



SERVICE_NAME = "quorumlog.v1.QuorumLog"
SERVER_OPTIONS = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 1000),
    ("grpc.so_reuseport", 0),
]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, node, msg."""

    def __init__(self, node_name: str) -> None:
        super().__init__()
        self.node_name = node_name

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "node": self.node_name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload)


def configure_logging(node_name: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(node_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class NodeServer:
    def __init__(self, config: NodeConfig) -> None:
        config.validate()
        self.config = config
        self.engine: StorageEngine | None = None
        self.storage: RocksStorage | None = None  # the meta group's (group 0)
        self.state_machine: SessionStateMachine | None = None
        self.node: RaftNode | None = None
        self.host: GroupHost | None = None  # every group's RaftNode, the meta group's too
        self.shards: ShardTable | None = None
        self.groups: ShardGroups | None = None  # the data groups hosted here
        self._keeper: asyncio.Task[None] | None = None
        self._readmitter: asyncio.Task[None] | None = None
        self._scrubber: asyncio.Task[None] | None = None
        self._damaged: asyncio.Future[BaseException] | None = None
        self.scrub_passes = 0
        self.scrub_keys = 0
        self.gate: IncarnationGate | None = None
        self.transport: PeerTransport | None = None
        self.client_server: grpc.aio.Server | None = None
        self.peer_server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self.metrics = NodeMetricsExporter(
            config.name, lambda: self.node, self._labelled_groups,
            lambda: self.host.driver.stats if self.host is not None else None,
            self.storage_figures,
        )
        self.started_at = time.time()
        self.security = NodeSecurity(config)
        self.consumer_service: ConsumerService | None = None
        self.disk = DiskSpace(config.data_dir, config.min_free_disk_mb * MIB)

    def _labelled_groups(self) -> list[tuple[str, RaftNode]]:
        """Every hosted group with its shard label, for the metrics."""
        if self.node is None:
            return []
        if self.groups is None or not self.groups.table.sharded:
            return [("0", self.node)]
        hosted = [("meta", self.node)]
        for local in sorted(self.groups.local.values(), key=lambda local: local.shard):
            node = self.host.get(local.group) if self.host is not None else None
            if node is not None:
                hosted.append((str(local.shard), node))
        return hosted

    def _names(self) -> dict[NodeId, str]:
        names = {raft_id(name): name for name in self.config.peers}
        if self.transport is not None:
            names.update({peer_id: info.name for peer_id, info in self.transport.peers.items()})
        return names

    def _sync_members(self) -> None:
        """Point the peer links at the members the replicated records name (after a
        membership change applied or a state restore)."""
        if self.state_machine is None or self.transport is None:
            return
        wiring.sync_members(self.state_machine, self.transport, self.config.peers)

    async def start(self) -> None:
        config = self.config
        if not config.data_dir.exists():
            config.data_dir.mkdir(parents=True)
            fsync_directory(config.data_dir.parent)  # the data directory's own entry
        path = config.data_dir / DB_DIR
        for stale in config.data_dir.glob(f".{path.name}.export-*"):
            # A snapshot export's checkpoint left by a crash (hard links: it holds space)
            shutil.rmtree(stale, ignore_errors=True)
        engine = StorageEngine(
            path, log_options(path), unsafe_volatile=config.unsafe_ack_before_fsync,
            unsafe_no_fsync=config.unsafe_no_fsync,
        )
        self.engine = engine
        storage = RocksStorage(path, engine=engine, group=0)
        self.storage = storage
        founding = False
        if storage.is_empty() and config.join:
            log.info("empty data directory: waiting to be added as %s", config.name)
        elif storage.is_empty():
            voters = tuple(sorted(raft_id(name) for name in config.peers))
            storage.bootstrap(voters)
            founding = True
            log.info("bootstrapped a new cluster member with voters %s and %d shard(s)",
                     sorted(config.peers), config.init_shards)
        state_machine = SessionStateMachine(storage)
        self.state_machine = state_machine
        if founding and config.init_shards > 1:
            state_machine.seed_shard_count(config.init_shards)
        records = state_machine.members()
        if not records and not config.join and not state_machine.import_incomplete:
            # Founding members: every one derives the same records from the same --peers.
            records = membership.records_from_peers(
                config.peers, storage.snapshot().metadata.conf_state.all_ids()
            )
            state_machine.seed_members(records)
        incarnation = storage.incarnation()
        gate = IncarnationGate(self._admitted, enforce=not config.unsafe_no_incarnation_check)
        gate.heard[config.id] = incarnation  # the leader admits itself too
        self.gate = gate
        log.info("data directory incarnation %x", incarnation)
        peers = wiring.peer_infos(records, config.peers)
        peers[config.id] = PeerInfo(config.name, config.peer_addr, config.client_addr)
        transport = PeerTransport(
            self_name=config.name,
            self_id=config.id,
            cluster_id=config.cluster_id,
            client_address=config.client_addr,
            peers=peers,
            on_messages=self._deliver,
            on_unreachable=self._unreachable,
            peer_address=config.peer_addr,
            routes=config.peer_routes,
            tls=self.security.tls,
            host_tag=config.host_tag or config.name,
            incarnation=incarnation,
            gate=gate,
        )
        self.transport = transport
        host = GroupHost(config.tick_ms / 1000, transport)
        self.host = host
        node = wiring.build_raft_node(
            config, storage, state_machine, transport, self._fetcher(0),
            on_role_change=self._on_role_change, on_membership_applied=self._sync_members,
        )
        self.node = node
        host.add(node)

        self.peer_server = grpc.aio.server(
            options=SERVER_OPTIONS,
            interceptors=self.security.peer_interceptors(self._allowed_peers),
        )
        raft_pb2_grpc.add_RaftPeerServicer_to_server(  # type: ignore[no-untyped-call]
            PeerServicer(transport, self._export_state), self.peer_server
        )
        self.security.bind(self.peer_server, config.peer_addr, "--peer-addr")

        self.client_server = grpc.aio.server(
            options=SERVER_OPTIONS,
            interceptors=[
                LatencyInterceptor(self.metrics.request_seconds),
                *self.security.client_interceptors(state_machine.acl),
            ],
        )
        request_seconds = self.metrics.request_seconds
        # The services reach each group only through its port, never through each other.
        port = NodePort(node, transport, config.name, self.disk.refusal)

        def open_stores(group: int) -> tuple[LogStore, SessionStateMachine]:
            store = RocksStorage(engine.path, engine=engine, group=group)
            return store, SessionStateMachine(store)

        groups = ShardGroups(
            config, host=host, links=transport, meta=LocalShard(0, 0, port, state_machine),
            open_stores=open_stores, fetcher=self._fetcher, refuse_writes=self.disk.refusal,
        )
        self.groups, self.shards = groups, groups.table
        shards = groups.table
        groups.open_placed()
        self.consumer_service = wiring.add_client_services(
            self.client_server, shards, config,
            observe=lambda method, code, seconds: request_seconds.labels(method, code).observe(
                seconds
            ),
            health_servicer=self.health,
        )
        self.security.bind(self.client_server, config.client_addr, "--client-addr")

        host.start()
        self._keeper = asyncio.get_running_loop().create_task(
            groups.keep(), name="shard-keeper"
        )
        self._damaged = asyncio.get_running_loop().create_future()
        self._scrubber = asyncio.get_running_loop().create_task(self._scrub(), name="scrub")
        readmitter = Readmitter(gate, groups, host)
        self._readmitter = asyncio.get_running_loop().create_task(
            readmitter.run(), name="readmission")
        self.consumer_service.start()
        transport.start()
        await self.peer_server.start()
        await self.client_server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        if config.metrics_addr:
            self.metrics.serve(config.metrics_addr)
        log.info(
            "node %s serving clients on %s, peers on %s (pid %d)",
            config.name, config.client_addr, config.peer_addr, os.getpid(),
        )

    async def _scrub(self) -> None:
        """A scrub pass at start, then one every ``scrub_every_s`` (0: only at start);
        damaged data ends the node's run (``serve`` repairs it)."""
        assert self.engine is not None and self._damaged is not None
        while True:
            started = time.monotonic()
            try:
                keys = await scrub(self.engine)
            except Exception as error:
                if not self._damaged.done():
                    self._damaged.set_result(error)
                return
            self.scrub_passes += 1
            self.scrub_keys = keys
            log.info("scrub: %d keys read back, every checksum good (%.1f s)", keys,
                     time.monotonic() - started)
            if self.config.scrub_every_s <= 0:
                return
            await asyncio.sleep(self.config.scrub_every_s)  # the scrub's period

    def storage_figures(self) -> StorageFigures:
        """The disk and storage-health figures the metrics show."""
        disk = self.disk
        disk.refusal()  # a fresh sample when the last is older than its period
        return StorageFigures(
            free_bytes=disk.free, reserve_bytes=disk.reserve_bytes, writes_refused=disk.low,
            votes_dropped=self.gate.dropped_votes if self.gate is not None else 0,
            scrub_passes=self.scrub_passes, scrub_keys=self.scrub_keys)

    async def wait_failure(self) -> BaseException:
        """The first of: the Raft loop's failure, damaged data found by the scrub."""
        assert self.host is not None and self._damaged is not None
        loop_failure = asyncio.ensure_future(self.host.wait_failure())
        try:
            done, _ = await asyncio.wait({loop_failure, self._damaged},
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop_failure.cancel()
        return done.pop().result()

    def _admitted(self, group: int) -> dict[NodeId, int]:
        """Each replica's admitted incarnation in ``group`` ({} when not hosted here)."""
        if self.groups is not None:
            state_machine = self.groups.state_machine(group)
        else:
            state_machine = self.state_machine if group == 0 else None
        return {} if state_machine is None else state_machine.incarnations()

    def _deliver(self, messages: list[GroupMessage]) -> None:
        if self.host is not None:
            self.host.deliver(messages)

    def _unreachable(self, peer: NodeId) -> None:
        if self.host is not None:
            self.host.report_unreachable(peer)

    def _allowed_peers(self) -> set[str] | None:
        """Node names the peer port takes (with TLS): the members, ``--peers`` and
        ``--peer-allow``; while this node has no member records (it waits to be added),
        any node certificate of the cluster's CA (None), since it knows no members yet."""
        records = self.state_machine.members() if self.state_machine is not None else {}
        if not records:
            return None
        return {record.name for record in records.values()} | set(self.config.peers) | set(
            self.config.peer_allow
        )

    def _on_role_change(self, role: StateRole, leader_id: NodeId, term: int) -> None:
        names = self._names()
        log.info(
            "role %s, leader %s, term %d", role, names.get(leader_id, "none"), term
        )

    async def _export_state(self, min_index: int, group: int = 0) -> AsyncIterator[bytes]:
        node = self.host.get(group) if self.host is not None else None
        state_machine = self.groups.state_machine(group) if self.groups is not None else None
        if node is None or state_machine is None:
            raise RuntimeError(f"group {group} is not hosted here")
        if state_machine.applied_index() < min_index or node.needs_restore:
            raise RuntimeError(
                f"state at {state_machine.applied_index()} is older than requested {min_index}"
            )
        with state_machine.export_state() as export:
            for chunk in export:
                yield chunk
                await asyncio.sleep(0)  # let the Raft loop run between chunks

    def _fetcher(self, group: int) -> FetchState:
        async def fetch(peer: NodeId, min_index: int) -> AsyncIterator[bytes]:
            async for chunk in self._fetch_state_from(peer, min_index, group):
                yield chunk

        return fetch

    async def _fetch_state_from(
        self, peer: NodeId, min_index: int, group: int = 0
    ) -> AsyncIterator[bytes]:
        transport = self.transport
        address = transport.peer_address(peer) if transport else None
        if address is None:
            raise RuntimeError(f"no address for n{peer}")
        name = transport.peers[peer].name if transport and peer in transport.peers else ""
        async with peer_channel(address, self.security.tls, name, CHANNEL_OPTIONS) as channel:
            stub = raft_pb2_grpc.RaftPeerStub(channel)  # type: ignore[no-untyped-call]
            request = raft_pb2.FetchStateRequest(
                cluster_id=self.config.cluster_id, min_index=min_index, group=group
            )
            async for chunk in stub.FetchState(request, timeout=300):
                yield chunk.data

    async def stop(self, grace: float = 1.0) -> None:
        with contextlib.suppress(Exception):
            await self.health.enter_graceful_shutdown()
        if self.client_server is not None:
            await self.client_server.stop(grace)
        if self.consumer_service is not None:
            await self.consumer_service.stop()
        for task in (self._scrubber,):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._readmitter is not None:
            self._readmitter.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._readmitter
        if self._keeper is not None:
            if self.groups is not None:
                self.groups.stopping = True
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._keeper
        if self.host is not None:
            await self.host.stop()
        if self.transport is not None:
            await self.transport.stop()
        if self.peer_server is not None:
            await self.peer_server.stop(grace)
        self.metrics.stop()
        if self.engine is not None:
            try:
                self.engine.close()
            except Exception as error:  # a database a failed write left read-only
                log.warning("closing the database: %s", error)
        log.info("node %s stopped", self.config.name)


REOPEN_PAUSE = 1.0  # seconds at least between two reopenings after ENOSPC


class RaftLoopFailed(Exception):
    """The Raft loop ended by an exception (e.g. a write or fsync that failed): the node
    stops rather than serve without it, and never retries the write."""


async def serve(config: NodeConfig) -> None:
    """Run a node until SIGTERM or SIGINT, then stop cleanly; raise :class:`RaftLoopFailed`
    (after stopping) if the Raft loop dies first.

    Two failures are survived in the process. A write that met a full disk (ENOSPC): RocksDB
    then refuses every later write until the database is reopened, and nothing of the failed
    write was acknowledged, so the node stops its servers, waits until the disk has room for
    its reserve again, and starts afresh from what is on disk. Damaged data (a checksum that
    does not match, at start, on a read or in the scrub): the node sets the database aside
    and starts empty, to be caught up by its peers as a new incarnation
    (``quorumlog.node.process.repair``). Its peers serve and elect meanwhile. Any other
    failure (EIO on fsync above all) stops the node for good.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    repairs = 0
    while True:
        server = NodeServer(config)
        failure: BaseException | None
        try:
            await server.start()
        except Exception as error:
            if not (is_corruption(error) or is_out_of_space(error)):
                await server.stop()
                raise
            failure = error  # damaged data, or a disk too full to open: handled below
        else:
            try:
                failure = await run_until_stopped(stop, server.wait_failure())
            except BaseException:
                await server.stop()
                raise
        await server.stop()
        if failure is None:
            return
        disk = server.disk
        _release(failure)
        del server
        gc.collect()  # the database's last references die here: its lock is released
        if is_out_of_space(failure):
            log.error("disk full: a write failed with ENOSPC (nothing of it was acknowledged); "
                      "reopening the database once %d MiB are free", config.min_free_disk_mb)
            if not await disk.wait_for_room(stop):
                return
            # At least a second between two reopenings: statvfs may show room while writes
            # still fail (inodes exhausted, a quota), and the node must not spin on it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REOPEN_PAUSE)
            if stop.is_set():
                return
            log.info("disk has room again: reopening the database")
            continue
        if is_corruption(failure):
            refused = can_repair(config, repairs)
            if refused is None:
                damaged = set_aside(config.data_dir)
                repairs += 1
                log.error("stored data is damaged (%s): set aside as %s; starting empty, to be "
                          "caught up by the peers as a new incarnation", failure, damaged.name)
                continue
            log.critical("stored data is damaged (%s) and cannot be repaired: %s; stopping "
                         "the node", failure, refused)
            raise RaftLoopFailed(f"stored data is damaged: {failure}") from failure
        log.critical("raft loop failed: %r; stopping the node (the write is not retried)",
                     failure)
        raise RaftLoopFailed(f"raft loop failed: {failure!r}") from failure


def _release(error: BaseException) -> None:
    """Drop the frames ``error``'s tracebacks keep alive (an iterator among their locals
    keeps the failed database open, and its lock held, so it could not be opened again)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if current.__traceback__ is not None:
            traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__


async def run_until_stopped(
    stop: asyncio.Event, failure: Coroutine[Any, Any, BaseException]
) -> BaseException | None:
    """Wait for ``stop`` or for ``failure`` to produce the loop's exception (returned);
    ``None`` on a requested stop."""
    stopped = asyncio.ensure_future(stop.wait())
    failed = asyncio.ensure_future(failure)
    try:
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        failed.cancel()
    if failed.done() and not failed.cancelled():
        return failed.result()
    return None
