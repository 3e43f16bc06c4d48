"""Peer links inside one event loop: the in-memory twin of ``PeerTransport``.

Owns: a ``MemoryNetwork`` of nodes in one process and one asyncio loop, each with a
``MemoryTransport`` offering what the node wiring uses of ``PeerTransport`` — ``send`` (the
``RaftNode``'s ``send``), ``peers`` and ``last_heard`` (the ``NodePort``'s ``PeerBook``),
``set_peers``, ``peer_address``, ``start`` / ``stop`` — plus ``fetch_state`` (the
``RaftNode``'s ``FetchState``: a peer's exported state, as the ``FetchState`` RPC streams it);
and the switches tests use to break links: ``cut`` / ``heal`` one direction, ``partition`` a
node from the others, ``heal_node``, ``heal_all``. Messages travel as on the wire (encoded to
the peer protocol's batch and decoded on arrival, so the receiver never shares an object with the
sender), each on a later turn of the loop and in order per link; a message on a cut link is
dropped and its sender told the peer is unreachable, as a failed gRPC stream does.
Must never: block, deliver inline (a node's Ready handling must not re-enter another node), or
deliver across a cut link — also not a message that was in flight when the link was cut.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from quorumlog.node.replication.codec import (
    NO_BEAT,
    Beat,
    GroupMessage,
    add_beat,
    beat_of,
    decode_batch,
    encode_batch,
)
from quorumlog.node.replication.quiescence import PeerBeats
from quorumlog.node.replication.transport import PeerInfo
from quorumlog.proto import raft_pb2
from quorumlog.raft import Message
from quorumlog.raft.types import NodeId

log = logging.getLogger("quorumlog.node.memory_transport")

ExportState = Callable[[int, int], AsyncIterator[bytes]]  # (min_index, group)


class LinkDown(ConnectionError):
    """The link to a peer is cut (or the peer is not running)."""


class MemoryNetwork:
    """The nodes of one in-process cluster and which directed links between them work."""

    def __init__(self, cluster_id: int = 1) -> None:
        self.cluster_id = cluster_id
        self.transports: dict[NodeId, MemoryTransport] = {}
        self._cut: set[tuple[NodeId, NodeId]] = set()  # (from, to) links that drop
        self.delivered = 0  # messages handed to a receiver
        self.dropped = 0  # messages lost on a cut link or to a stopped node

    def transport(
        self,
        *,
        self_id: NodeId,
        self_name: str,
        client_address: str,
        peers: dict[NodeId, PeerInfo],
        on_messages: Callable[[list[GroupMessage]], None],
        on_unreachable: Callable[[NodeId], None],
        export_state: ExportState,
    ) -> MemoryTransport:
        """This node's end; it replaces any earlier transport of the same id (a restart)."""
        transport = MemoryTransport(
            self, self_id=self_id, self_name=self_name, client_address=client_address,
            peers=peers, on_messages=on_messages, on_unreachable=on_unreachable,
            export_state=export_state,
        )
        self.transports[self_id] = transport
        return transport

    # -- switches ------------------------------------------------------------------------------
    def cut(self, frm: NodeId, to: NodeId) -> None:
        """Drop everything ``frm`` sends to ``to`` (one direction) until healed."""
        self._cut.add((frm, to))

    def heal(self, frm: NodeId, to: NodeId) -> None:
        self._cut.discard((frm, to))

    def partition(self, node_id: NodeId) -> None:
        """Cut ``node_id`` off from every other node, both ways."""
        for other in self.transports:
            if other != node_id:
                self.cut(node_id, other)
                self.cut(other, node_id)

    def heal_node(self, node_id: NodeId) -> None:
        """Undo every cut to or from ``node_id``."""
        self._cut = {link for link in self._cut if node_id not in link}

    def heal_all(self) -> None:
        self._cut.clear()

    def link_up(self, frm: NodeId, to: NodeId) -> bool:
        sender, receiver = self.transports.get(frm), self.transports.get(to)
        return (
            sender is not None and sender.running and receiver is not None
            and receiver.running and (frm, to) not in self._cut
        )

    # -- delivery -----------------------------------------------------------------------------
    def _arrive(self, frm: NodeId, to: NodeId, batch: raft_pb2.MessageBatch) -> None:
        receiver = self.transports.get(to)
        if receiver is None or not self.link_up(frm, to):
            self.dropped += len(batch.messages)
            return
        messages = decode_batch(batch, self.cluster_id)
        receiver.learn(frm, batch.sender_name, batch.client_address)
        receiver.heard_from(frm, beat_of(batch))
        self.delivered += len(messages)
        receiver.on_messages(messages)


class MemoryTransport:
    """One node's end of a ``MemoryNetwork`` (see the module docstring)."""

    def __init__(
        self,
        network: MemoryNetwork,
        *,
        self_id: NodeId,
        self_name: str,
        client_address: str,
        peers: dict[NodeId, PeerInfo],
        on_messages: Callable[[list[GroupMessage]], None],
        on_unreachable: Callable[[NodeId], None],
        export_state: ExportState,
    ) -> None:
        self.network = network
        self.self_id = self_id
        self.self_name = self_name
        self.client_address = client_address
        self.peers = peers
        self.last_heard: dict[NodeId, float] = {}  # peer -> time.monotonic() of its last batch
        self.beats = PeerBeats(self.last_heard)  # what peers' beats said (quiescence)
        self.on_messages = on_messages
        self.on_unreachable = on_unreachable
        self.export_state = export_state
        self.running = False
        self.sent = 0

    def start(self) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False

    def send(self, messages: list[Message], group: int = 0) -> None:
        by_peer: dict[NodeId, list[GroupMessage]] = {}
        for message in messages:
            by_peer.setdefault(message.to, []).append((group, message))
        loop = asyncio.get_running_loop()
        network = self.network
        for peer_id, batch in by_peer.items():
            if peer_id not in self.peers:
                continue  # no link to a node we do not know (as PeerTransport)
            if not network.link_up(self.self_id, peer_id):
                network.dropped += len(batch)
                loop.call_soon(self.on_unreachable, peer_id)
                continue
            wire = encode_batch(network.cluster_id, self.self_id, batch)
            wire.client_address = self.client_address
            wire.sender_name = self.self_name
            self.sent += len(batch)
            loop.call_soon(network._arrive, self.self_id, peer_id, wire)

    async def fetch_state(
        self, peer: NodeId, min_index: int, group: int = 0
    ) -> AsyncIterator[bytes]:
        """``peer``'s exported state of ``group`` at ``min_index`` or later, chunk by chunk."""
        source = self.network.transports.get(peer)
        if source is None or not self.network.link_up(self.self_id, peer):
            raise LinkDown(f"n{peer} is not reachable from n{self.self_id}")
        async for chunk in source.export_state(min_index, group):
            if not self.network.link_up(self.self_id, peer):
                raise LinkDown(f"link to n{peer} cut during the state transfer")
            yield chunk

    # -- the address book (as PeerTransport's) -------------------------------------------------
    def learn(self, peer_id: NodeId, name: str, client_address: str) -> None:
        info = self.peers.get(peer_id)
        if info is not None and client_address:
            info.client_address = client_address
            if name:
                info.name = name

    def heard_from(self, peer_id: NodeId, beat: Beat | None = None) -> None:
        self.beats.heard(peer_id, beat)  # sets last_heard[peer_id]

    def beat(self, beats: dict[NodeId, Beat]) -> None:
        """A beat to every peer whose link is up (as ``PeerTransport.beat``)."""
        loop = asyncio.get_running_loop()
        for peer_id in self.peers:
            if peer_id == self.self_id or not self.network.link_up(self.self_id, peer_id):
                continue
            wire = encode_batch(self.network.cluster_id, self.self_id, [])
            wire.client_address = self.client_address
            wire.sender_name = self.self_name
            add_beat(wire, beats.get(peer_id, NO_BEAT))
            loop.call_soon(self.network._arrive, self.self_id, peer_id, wire)

    def set_peers(self, wanted: dict[NodeId, PeerInfo]) -> None:
        for peer_id, info in wanted.items():
            if peer_id == self.self_id:
                continue
            current = self.peers.get(peer_id)
            if current is None:
                self.peers[peer_id] = PeerInfo(info.name, info.peer_address, info.client_address)
                continue
            current.name = info.name or current.name
            current.client_address = info.client_address or current.client_address
            current.peer_address = info.peer_address
        for peer_id in [p for p in self.peers if p not in wanted and p != self.self_id]:
            del self.peers[peer_id]
            self.last_heard.pop(peer_id, None)
            self.beats.forget(peer_id)

    def peer_address(self, peer_id: NodeId) -> str | None:
        info = self.peers.get(peer_id)
        return info.peer_address if info else None


__all__ = ["LinkDown", "MemoryNetwork", "MemoryTransport"]
