"""Peer transport: batched Raft messages between nodes over gRPC (service ``RaftPeer``).

Owns: one outgoing client stream per peer (messages queued by the Raft loop are sent in
batches, in order), reconnection with bounded backoff, the receiving servicer that decodes
batches and hands them to the Raft loop, what peers told us about themselves (name, client
address for leader hints, peer address so a node just added can answer a leader it has never
heard of), when each peer was last heard from, and following membership changes (links added,
re-pointed and closed by ``set_peers``). Must never: step the Raft core itself, block the event
loop, or queue without bound (a peer that cannot keep up loses messages, which Raft tolerates
and repairs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from quorumlog.node.common.tls import NodeTls, peer_channel
from quorumlog.node.replication.codec import (
    NO_BEAT,
    Beat,
    CodecError,
    GroupMessage,
    add_beat,
    beat_of,
    decode_batch,
    encode_batch,
)
from quorumlog.node.replication.incarnations import IncarnationGate
from quorumlog.node.replication.quiescence import PeerBeats
from quorumlog.proto import raft_pb2, raft_pb2_grpc
from quorumlog.raft.types import Message, NodeId

log = logging.getLogger("quorumlog.transport")

MAX_QUEUED = 8192  # messages per peer before the oldest are dropped
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 2000),
    ("grpc.keepalive_timeout_ms", 2000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
]


@dataclass
class PeerInfo:
    name: str
    peer_address: str
    client_address: str = ""
    host_tag: str = ""  # its --host-tag, once heard from it (shard placement)


class PeerLink:
    """The outgoing stream to one peer."""

    def __init__(self, transport: PeerTransport, peer_id: NodeId, address: str) -> None:
        self.transport = transport
        self.peer_id = peer_id
        self.address = address
        self.queue: list[GroupMessage] = []  # every group's messages, in order
        self.beat: Beat | None = None  # a beat to send (``GroupHost.beats``)
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.sent_batches = 0
        self.dropped = 0
        self.generation = 0
        self.connected = False

    def send_beat(self, beat: Beat) -> None:
        self.beat = beat
        self.ready.set()

    def enqueue(self, messages: list[GroupMessage]) -> None:
        self.queue.extend(messages)
        if len(self.queue) > MAX_QUEUED:
            excess = len(self.queue) - MAX_QUEUED
            del self.queue[:excess]
            self.dropped += excess
        self.ready.set()

    async def _batches(self, generation: int) -> AsyncIterator[raft_pb2.MessageBatch]:
        transport = self.transport
        while True:
            await self.ready.wait()
            if generation != self.generation:
                # A generator of an earlier, failed stream can still be woken (gRPC may keep
                # iterating it): it must not take messages meant for the live stream.
                return
            self.ready.clear()
            if not self.queue and self.beat is None:
                continue
            messages, self.queue = self.queue, []
            self.connected = True
            batch = encode_batch(transport.cluster_id, transport.self_id, messages)
            batch.client_address = transport.client_address
            batch.sender_name = transport.self_name
            batch.peer_address = transport.peer_address_of_self
            batch.host_tag = transport.host_tag
            batch.incarnation = transport.incarnation
            if self.beat is not None:
                add_beat(batch, self.beat)
                self.beat = None
            self.sent_batches += 1
            yield batch

    async def run(self) -> None:
        backoff = 0.05
        while True:
            self.generation += 1
            info = self.transport.peers.get(self.peer_id)
            channel = peer_channel(
                self.address, self.transport.tls, info.name if info else "", CHANNEL_OPTIONS
            )
            call = None
            try:
                stub = raft_pb2_grpc.RaftPeerStub(channel)  # type: ignore[no-untyped-call]
                call = stub.Stream(self._batches(self.generation))
                await call
                backoff = 0.05
            except asyncio.CancelledError:
                await channel.close(grace=None)
                raise
            except grpc.aio.AioRpcError as error:
                if self.connected:
                    log.info("stream to %s failed: %s", self.address, error.code().name)
            finally:
                self.connected = False
                self.generation += 1  # retire this stream's generator
                self.ready.set()  # wake it so it sees it is retired and ends
                if call is not None:
                    call.cancel()
                with contextlib.suppress(Exception):
                    await channel.close(grace=None)
            # Messages queued while the stream was down are stale by now: Raft resends.
            self.dropped += len(self.queue)
            self.queue = []
            self.transport.on_unreachable(self.peer_id)
            await asyncio.sleep(backoff)  # reconnect pacing, not a wait for a condition
            backoff = min(backoff * 2, 1.0)


class PeerTransport:
    def __init__(
        self,
        *,
        self_name: str,
        self_id: NodeId,
        cluster_id: int,
        client_address: str,
        peers: dict[NodeId, PeerInfo],
        on_messages: Callable[[list[GroupMessage]], None],
        on_unreachable: Callable[[NodeId], None],
        peer_address: str = "",
        routes: dict[str, str] | None = None,
        tls: NodeTls | None = None,
        host_tag: str = "",
        incarnation: int = 0,
        gate: IncarnationGate | None = None,
    ) -> None:
        self.host_tag = host_tag
        self.incarnation = incarnation  # this node's data directory id, on every batch
        self.gate = gate  # drops votes the incarnation rule says must not count
        self.tls = tls  # mutual TLS to peers (their certificate must name them); None: plain
        self.self_name = self_name
        self.routes = dict(routes or {})  # member name -> the address this node dials
        self.peer_address_of_self = peer_address
        self.last_heard: dict[NodeId, float] = {}  # peer -> time.monotonic() of its last batch
        self.beats = PeerBeats(self.last_heard)  # what peers' beats said (quiescence)
        self.self_id = self_id
        self.cluster_id = cluster_id
        self.client_address = client_address
        self.peers = peers
        self.on_messages = on_messages
        self.on_unreachable = on_unreachable
        self.links: dict[NodeId, PeerLink] = {}
        self._closing: set[asyncio.Task[None]] = set()  # links of removed peers, ending

    def start(self) -> None:
        for peer_id, info in self.peers.items():
            if peer_id != self.self_id:
                self._link(peer_id, info.peer_address)

    def _link(self, peer_id: NodeId, address: str) -> PeerLink:
        info = self.peers.get(peer_id)
        if info is not None and info.name in self.routes:
            address = self.routes[info.name]  # --peer-route: this node dials it elsewhere
        link = PeerLink(self, peer_id, address)
        link.task = asyncio.get_running_loop().create_task(
            link.run(), name=f"peer-link-{peer_id}"
        )
        self.links[peer_id] = link
        return link

    def send(self, messages: list[Message], group: int = 0) -> None:
        """Queue ``group``'s messages; each peer's link sends whatever every group queued
        since its last batch as one batch (heartbeats of groups ticked together travel in
        one frame)."""
        by_peer: dict[NodeId, list[GroupMessage]] = {}
        for message in messages:
            by_peer.setdefault(message.to, []).append((group, message))
        for peer_id, batch in by_peer.items():
            link = self.links.get(peer_id)
            if link is not None:
                link.enqueue(batch)

    def learn(self, peer_id: NodeId, name: str, client_address: str) -> None:
        info = self.peers.get(peer_id)
        if info is not None and client_address:
            info.client_address = client_address
            if name:
                info.name = name

    def learn_sender(self, peer_id: NodeId, name: str, peer_address: str) -> bool:
        """A batch from a node we have no address for: remember where it said it listens
        and open a link back (a node just added hears from the leader before it knows the
        membership). False when the sender gave no address."""
        if peer_id in self.peers:
            return True
        if not peer_address or peer_id == self.self_id:
            return False
        self.peers[peer_id] = PeerInfo(name or f"n{peer_id}", peer_address)
        self._link(peer_id, peer_address)
        log.info("learned peer %s at %s", name or peer_id, peer_address)
        return True

    def set_peers(self, wanted: dict[NodeId, PeerInfo]) -> None:
        """Follow the membership: open links to new members, re-point moved ones, close
        links to removed ones. Client addresses already learned are kept when ``wanted``
        has none. This node's own entry is kept as it is."""
        for peer_id, info in wanted.items():
            if peer_id == self.self_id:
                continue
            current = self.peers.get(peer_id)
            if current is None:
                self.peers[peer_id] = PeerInfo(info.name, info.peer_address, info.client_address)
                self._link(peer_id, info.peer_address)
                log.info("added peer %s at %s", info.name, info.peer_address)
                continue
            current.name = info.name or current.name
            current.client_address = info.client_address or current.client_address
            if current.peer_address != info.peer_address:
                current.peer_address = info.peer_address
                self._close_link(peer_id)
                self._link(peer_id, info.peer_address)
                log.info("peer %s moved to %s", info.name, info.peer_address)
        for peer_id in [p for p in self.peers if p not in wanted and p != self.self_id]:
            del self.peers[peer_id]
            self.last_heard.pop(peer_id, None)
            self.beats.forget(peer_id)
            self._close_link(peer_id)
            log.info("removed peer n%d", peer_id)

    def _close_link(self, peer_id: NodeId) -> None:
        link = self.links.pop(peer_id, None)
        if link is not None and link.task is not None:
            link.task.cancel()
            self._closing.add(link.task)
            link.task.add_done_callback(self._closing.discard)

    def heard_from(self, peer_id: NodeId, beat: Beat | None = None) -> None:
        """A batch from ``peer_id`` arrived (carrying ``beat``, if it beat)."""
        self.beats.heard(peer_id, beat)  # sets last_heard[peer_id]

    def beat(self, beats: dict[NodeId, Beat]) -> None:
        """Queue every peer's beat (sent at once, with whatever else is queued)."""
        for peer_id, link in self.links.items():
            link.send_beat(beats.get(peer_id, NO_BEAT))

    def peer_address(self, peer_id: NodeId) -> str | None:
        info = self.peers.get(peer_id)
        return info.peer_address if info else None

    async def stop(self) -> None:
        tasks = [link.task for link in self.links.values() if link.task is not None]
        tasks += list(self._closing)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.links.clear()


class PeerServicer(raft_pb2_grpc.RaftPeerServicer):
    """Receives peers' batches and hands the messages to the Raft loop."""

    def __init__(
        self,
        transport: PeerTransport,
        fetch_state: Callable[[int, int], AsyncIterator[bytes]],
    ) -> None:
        self.transport = transport
        self.fetch_state = fetch_state

    def _accept(self, batch: raft_pb2.MessageBatch) -> list[GroupMessage]:
        messages = decode_batch(batch, self.transport.cluster_id)
        sender = getattr(batch, "from")
        if not self.transport.learn_sender(sender, batch.sender_name, batch.peer_address):
            raise CodecError(f"n{sender} is not a known peer")
        self.transport.learn(sender, batch.sender_name, batch.client_address)
        info = self.transport.peers.get(sender)
        if info is not None and batch.host_tag:
            info.host_tag = batch.host_tag
        self.transport.heard_from(sender, beat_of(batch))
        gate = self.transport.gate
        return messages if gate is None else gate.accept(sender, batch.incarnation, messages)

    async def Stream(  # noqa: N802 -- gRPC method name
        self,
        request_iterator: AsyncIterator[raft_pb2.MessageBatch],
        context: grpc.aio.ServicerContext[raft_pb2.MessageBatch, raft_pb2.BatchAck],
    ) -> raft_pb2.BatchAck:
        async for batch in request_iterator:
            await self._receive(batch, context)
        return raft_pb2.BatchAck()

    async def Send(  # noqa: N802 -- gRPC method name
        self,
        request: raft_pb2.MessageBatch,
        context: grpc.aio.ServicerContext[raft_pb2.MessageBatch, raft_pb2.BatchAck],
    ) -> raft_pb2.BatchAck:
        await self._receive(request, context)
        return raft_pb2.BatchAck()

    async def _receive(
        self,
        batch: raft_pb2.MessageBatch,
        context: grpc.aio.ServicerContext[raft_pb2.MessageBatch, raft_pb2.BatchAck],
    ) -> None:
        """Hand one batch to the Raft loop; a batch that does not decode aborts the call."""
        try:
            messages = self._accept(batch)
        except CodecError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        self.transport.on_messages(messages)

    async def FetchState(  # noqa: N802 -- gRPC method name
        self,
        request: raft_pb2.FetchStateRequest,
        context: grpc.aio.ServicerContext[raft_pb2.FetchStateRequest, raft_pb2.StateChunk],
    ) -> AsyncIterator[raft_pb2.StateChunk]:
        if request.cluster_id != self.transport.cluster_id:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"cluster {request.cluster_id}, this is cluster {self.transport.cluster_id}",
            )
        async for chunk in self.fetch_state(request.min_index, request.group):
            yield raft_pb2.StateChunk(data=chunk)
