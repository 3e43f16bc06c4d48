"""An in-memory cluster of Raft cores with a controllable network, for tests and simulation.

Owns: a set of ``RawNode`` instances, each with a "disk" (``MemoryStorage`` that only ever
holds what a Ready handed out and the node persisted), a tiny deterministic state machine,
and a network of in-flight messages that can be dropped, cut (directed or symmetric) and
reordered by the caller. Every Ready handling step is a separate method so a simulator can
crash a node between any two of them. Must never: read a clock, sleep, use threads or
unseeded randomness; all choices belong to the caller.

The state machine is a hash chain over applied entries (constant memory) plus, when
``record`` is set, the full list of applied (index, term, data) for invariant checks.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from quorumlog.raft import (
    NONE,
    ConfChange,
    Config,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    NodeId,
    RawNode,
    ReadState,
    Ready,
    Snapshot,
    StateRole,
    bootstrap_memory_storage,
)
from quorumlog.raft.errors import Compacted, SnapshotTemporarilyUnavailable
from quorumlog.raft.storage import MemoryStorage

_SNAP_HEADER = struct.Struct(">QQ")


@dataclass
class StateMachine:
    """Deterministic application state: how many entries were applied and their digest."""

    applied_index: int = 0
    count: int = 0
    digest: bytes = b"\x00" * 32
    record: bool = False
    history: list[tuple[int, int, bytes]] = field(default_factory=list)

    def apply(self, entry: Entry) -> None:
        if entry.index <= self.applied_index:
            raise AssertionError(f"re-applied {entry.index} (applied {self.applied_index})")
        if entry.index != self.applied_index + 1 and self.applied_index != 0:
            raise AssertionError(f"applied {entry.index} after {self.applied_index}: a gap")
        self.applied_index = entry.index
        if entry.type == EntryType.NORMAL and entry.data:
            self.count += 1
            self.digest = hashlib.blake2b(self.digest + entry.data, digest_size=32).digest()
        if self.record:
            self.history.append((entry.index, entry.term, entry.data))

    def snapshot_data(self) -> bytes:
        return _SNAP_HEADER.pack(self.applied_index, self.count) + self.digest

    def restore(self, snapshot: Snapshot) -> None:
        if snapshot.data:
            _, count = _SNAP_HEADER.unpack_from(snapshot.data)
            self.count = count
            self.digest = snapshot.data[_SNAP_HEADER.size :]
        else:
            self.count = 0
            self.digest = b"\x00" * 32
        self.applied_index = snapshot.metadata.index
        if self.record:
            self.history = []


@dataclass
class MemNode:
    id: NodeId
    disk: MemoryStorage
    config_factory: Callable[[NodeId, int], Config]
    record: bool = False
    raw: RawNode | None = None
    sm: StateMachine = field(default_factory=StateMachine)
    read_states: list[ReadState] = field(default_factory=list)
    applied_entries_total: int = 0

    @property
    def alive(self) -> bool:
        return self.raw is not None

    def start(self) -> None:
        """(Re)start from what the disk holds; unpersisted state is gone."""
        snapshot = self.disk.snapshot()
        self.sm = StateMachine(record=self.record)
        self.sm.restore(snapshot)
        self.raw = RawNode(self.config_factory(self.id, snapshot.metadata.index), self.disk)
        self.read_states = []

    def crash(self) -> None:
        self.raw = None

    def node(self) -> RawNode:
        if self.raw is None:
            raise RuntimeError(f"n{self.id} is down")
        return self.raw

    # -- the Ready handling steps, separately callable ------------------------------------------
    def persist(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.disk.apply_snapshot(rd.snapshot)
        if rd.entries:
            self.disk.append(rd.entries)
        if rd.hard_state is not None:
            self.disk.set_hard_state(rd.hard_state)

    def apply(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.sm.restore(rd.snapshot)
        for entry in rd.committed_entries:
            self.sm.apply(entry)
        self.applied_entries_total += len(rd.committed_entries)
        self.read_states.extend(rd.read_states)

    def maybe_compact(self, threshold: int, keep: int = 0) -> bool:
        """Snapshot the state machine and compact the log once ``threshold`` entries applied."""
        if threshold <= 0:
            return False
        snap_index = self.disk.snapshot().metadata.index
        applied = self.sm.applied_index
        if applied - snap_index < threshold:
            return False
        raw = self.node()
        conf = raw.raft.conf_state() if raw.raft.log.applied == applied else None
        if conf is None:
            return False
        try:
            self.disk.create_snapshot(applied, conf, self.sm.snapshot_data())
        except SnapshotTemporarilyUnavailable:
            return False
        compact_to = applied - keep
        if compact_to > self.disk.first_index() - 1:
            try:
                self.disk.compact(compact_to)
            except Compacted:
                return False
        return True


class Network:
    """Messages in flight plus the rules that decide which links work."""

    def __init__(self) -> None:
        self.in_flight: list[Message] = []
        self.cut_links: set[tuple[NodeId, NodeId]] = set()
        self.delivered = 0
        self.dropped = 0

    def send(self, messages: Iterable[Message]) -> None:
        for message in messages:
            if (message.frm, message.to) in self.cut_links:
                self.dropped += 1
            else:
                self.in_flight.append(message)

    def cut(self, frm: NodeId, to: NodeId) -> None:
        self.cut_links.add((frm, to))

    def cut_both(self, a: NodeId, b: NodeId) -> None:
        self.cut(a, b)
        self.cut(b, a)

    def isolate(self, node_id: NodeId, all_ids: Iterable[NodeId]) -> None:
        for other in all_ids:
            if other != node_id:
                self.cut_both(node_id, other)

    def partition(self, groups: list[set[NodeId]]) -> None:
        for group in groups:
            for other_group in groups:
                if other_group is group:
                    continue
                for a in group:
                    for b in other_group:
                        self.cut(a, b)

    def heal(self) -> None:
        self.cut_links.clear()

    def allows(self, frm: NodeId, to: NodeId) -> bool:
        return (frm, to) not in self.cut_links


def default_config(
    node_id: NodeId,
    applied: int,
    seed: int = 0,
    **overrides: object,
) -> Config:
    rng = random.Random(seed * 1_000_003 + node_id)
    config = Config(id=node_id, rng=rng, applied=applied)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


class MemCluster:
    """A whole cluster in memory. ``stabilize()`` runs it to quiescence with no faults."""

    def __init__(
        self,
        ids: Iterable[NodeId],
        seed: int = 0,
        record: bool = True,
        snapshot_threshold: int = 0,
        logger: Callable[[str], None] | None = None,
        **config_overrides: object,
    ) -> None:
        self.seed = seed
        self.record = record
        self.snapshot_threshold = snapshot_threshold
        self.network = Network()
        self.logger = logger
        self.config_overrides = dict(config_overrides)
        self.restarts: dict[NodeId, int] = {}
        self.nodes: dict[NodeId, MemNode] = {}
        voters = tuple(sorted(ids))
        for node_id in voters:
            self._add(node_id, bootstrap_memory_storage(voters))

    def _config(self, node_id: NodeId, applied: int) -> Config:
        generation = self.restarts.get(node_id, 0)
        overrides = dict(self.config_overrides)
        if self.logger is not None:
            overrides.setdefault("logger", self.logger)
        return default_config(node_id, applied, self.seed * 7919 + generation, **overrides)

    def _add(self, node_id: NodeId, disk: MemoryStorage) -> MemNode:
        node = MemNode(node_id, disk, self._config, record=self.record)
        node.start()
        self.nodes[node_id] = node
        return node

    def add_empty_node(self, node_id: NodeId) -> MemNode:
        """A brand-new machine: empty disk, knows nothing; joins once added by the leader."""
        return self._add(node_id, MemoryStorage(ConfState()))

    # -- driving -----------------------------------------------------------------------------
    def node(self, node_id: NodeId) -> RawNode:
        return self.nodes[node_id].node()

    def alive_ids(self) -> list[NodeId]:
        return [node_id for node_id, node in self.nodes.items() if node.alive]

    def leader(self) -> NodeId:
        """The live leader with the highest term, or NONE."""
        best, best_term = NONE, -1
        for node_id in self.alive_ids():
            raft = self.node(node_id).raft
            if raft.role == StateRole.LEADER and raft.term > best_term:
                best, best_term = node_id, raft.term
        return best

    def tick(self, node_id: NodeId) -> None:
        if self.nodes[node_id].alive:
            self.node(node_id).tick()

    def process_ready(self, node_id: NodeId) -> bool:
        """Run one full Ready cycle on ``node_id`` in the contract's order."""
        node = self.nodes[node_id]
        if not node.alive:
            return False
        raw = node.node()
        if not raw.has_ready():
            return False
        rd = raw.ready()
        self.network.send(rd.messages)
        node.persist(rd)
        self.network.send(rd.persisted_messages)
        node.apply(rd)
        raw.advance(rd)
        node.maybe_compact(self.snapshot_threshold)
        return True

    def deliver(self, message: Message) -> None:
        target = self.nodes.get(message.to)
        self.network.delivered += 1
        if target is None or not target.alive:
            return
        target.node().step(message)

    def deliver_all(self, drop: Callable[[Message], bool] | None = None) -> int:
        messages, self.network.in_flight = self.network.in_flight, []
        for message in messages:
            if drop is not None and drop(message):
                self.network.dropped += 1
                continue
            self.deliver(message)
        return len(messages)

    def stabilize(self, max_rounds: int = 10_000) -> None:
        for _ in range(max_rounds):
            busy = False
            for node_id in list(self.nodes):
                while self.process_ready(node_id):
                    busy = True
            if self.deliver_all():
                busy = True
            if not busy:
                return
        raise RuntimeError(f"cluster did not stabilize within {max_rounds} rounds")

    def crash(self, node_id: NodeId) -> None:
        self.nodes[node_id].crash()
        self.network.in_flight = [m for m in self.network.in_flight if m.to != node_id]

    def restart(self, node_id: NodeId) -> None:
        self.restarts[node_id] = self.restarts.get(node_id, 0) + 1
        self.nodes[node_id].start()

    def elect(self, node_id: NodeId) -> None:
        """Campaign ``node_id`` and run to quiescence; asserts it won."""
        self.node(node_id).campaign()
        self.stabilize()
        if self.leader() != node_id:
            raise AssertionError(f"n{node_id} did not win the election")

    def propose(self, node_id: NodeId, data: bytes) -> tuple[int, int]:
        return self.node(node_id).propose(data)

    def propose_conf_change(self, node_id: NodeId, change: ConfChange) -> tuple[int, int]:
        return self.node(node_id).propose_conf_change(change)

    def is_message_type(self, message: Message, *types: MessageType) -> bool:
        return message.type in types
