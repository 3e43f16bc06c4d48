"""``quorumlog sim --groups G``: the deterministic simulator for many Raft groups per node.

Owns: one ``MultiSimulation`` per seed in which a meta group (group 0) and ``G - 1`` data
shards run on the same 4 or 5 simulated nodes, as the real node hosts them
(``node/replication/groups.py``, ``node/storage/engine.py``):

- **one storage engine per node** (``NodeDisk``): every group's entries, hard state, snapshots
  and compactions go through one write path; a write is visible to its group's reads at once
  and durable only at the node's next fsync (``NodeDisk.sync``), which covers every group's
  writes made so far (group commit across groups: a node round takes the Readies of all its
  groups, writes them, then syncs once). A crash drops every group's unsynced writes at once,
  and every group restarts from its last synced state. Votes and append acknowledgements
  (``Ready.persisted_messages``) leave only after the fsync that covers them.
- **one link per node pair**: whatever any group sends from one node to another during a step
  leaves as one batch (heartbeats of groups ticked together travel together); a batch is
  delivered, dropped, duplicated or reordered as a whole, and a partition cuts every group's
  traffic between the two nodes at once. A message for a group the receiving node does not
  host (yet, or any more) is dropped, as the real node's router does.
- **one shared ticker per node**: a tick ticks every group the node hosts.
- **a replica move** mid-run in one group (a data shard when there is one): a learner on a
  node that does not host the group yet, caught up, promoted, then an old voter removed and
  its replica destroyed, one membership change at a time through the core, while proposals
  continue. After the last fault heals the move must finish.

One ``random.Random(seed)`` decides everything (profile, placement of the move, phases,
actions, drops, crash points); every core's election timer is seeded from the seed, the
group and the node. Each group has its own ``quorumlog.raft.invariants.InvariantChecker``
fed after every step (election safety, log matching, leader completeness, state machine
safety, monotonic terms and commits, durable-before-send, durable-log); the client's
acknowledged values (applied somewhere) are checked per group against every later leader
(``acknowledged-lost``), so an acknowledged proposal that a crash took away is caught. After
the run every fault heals and each group must elect a leader and apply every value the client
had accepted, within ``heal_ticks`` ticks.

``broken`` selects a deliberately wrong node for the tests that prove the checker bites:
``"early-acks"`` sends ``persisted_messages`` when the Ready is written, before its fsync;
``"unsynced-group"`` leaves the highest data group out of every node's fsync.

Must never: read a clock, draw unseeded randomness, do I/O, or touch a core's internals
beyond reading state for the checker (running many seeds in processes and timing them is
``quorumlog.client.cli.cmd_sim``'s).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from quorumlog.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    NodeId,
    Raft,
    RaftError,
    RawNode,
    Ready,
    Snapshot,
    StateRole,
    bootstrap_memory_storage,
)
from quorumlog.raft.errors import Compacted, SnapshotTemporarilyUnavailable
from quorumlog.raft.invariants import InvariantChecker, InvariantViolation
from quorumlog.raft.storage import MemoryStorage
from quorumlog.raft.testing.memcluster import StateMachine, default_config

DEFAULT_GROUPS = 4  # the meta group and three data shards
DEFAULT_STEPS = 1200
DEFAULT_SEEDS = 100
DEFAULT_HEAL_TICKS = 400
META_GROUP = 0
REPLICATION_FACTOR = 3
HEAL_MESSAGES_PER_TICK = 250  # per group, as in the single-group simulator
CALM_REORDER_WINDOW = 4  # while calm, one of the oldest few batches in flight arrives next
CALM_TICKS = 0.15  # while calm, clocks tick this much less often relative to messages
PROMOTE_LAG = 4  # a learner this close to the leader's last index counts as caught up
BROKEN_VARIANTS = ("early-acks", "unsynced-group")

_Write = Callable[[MemoryStorage], object]


@dataclass(frozen=True)
class MultiProfile:
    """How hostile one seed is (drawn from the seed), as ``sim.Profile`` for one group."""

    nodes: int
    election_tick: int
    heartbeat_tick: int
    max_entries_per_msg: int
    max_inflight_msgs: int
    snapshot_chunk_bytes: int
    snapshot_threshold: int  # 0: never compact
    snapshot_keep: int
    drop: float  # probability a batch (every group's messages on one link) is lost
    duplicate: float  # probability a delivered batch is delivered again later
    round_crash: float  # probability a node round with writes crashes the node midway
    crash_outbox_loss: float  # probability each unsent batch of a crashed node is lost
    calm_steps: int
    burst_steps: int
    calm_faults: float
    hold_sync: float  # probability a node round leaves its fsync to the node's next round
    move_start: float  # fraction of the run after which the replica move begins
    w_deliver: float
    w_round: float
    w_tick: float
    w_propose: float
    w_crash: float
    w_restart: float
    w_partition: float
    w_heal: float
    w_transfer: float
    w_move: float
    lazy_commit: bool = False  # set on odd seeds, as in the single-group simulator

    @staticmethod
    def draw(rng: random.Random) -> MultiProfile:
        def pick(*choices: float) -> float:
            return choices[rng.randrange(len(choices))]

        return MultiProfile(
            nodes=int(pick(4, 4, 5)),
            election_tick=int(pick(4, 6, 10)),
            heartbeat_tick=int(pick(1, 1, 2)),
            max_entries_per_msg=int(pick(1, 2, 4, 64)),
            max_inflight_msgs=int(pick(1, 2, 8, 256)),
            snapshot_chunk_bytes=int(pick(8, 24, 1 << 20)),
            snapshot_threshold=int(pick(0, 3, 5, 20)),
            snapshot_keep=int(pick(0, 0, 1, 4)),
            drop=pick(0.0, 0.02, 0.1, 0.2),
            duplicate=pick(0.0, 0.02, 0.1),
            round_crash=pick(0.0, 0.01, 0.03, 0.08),
            crash_outbox_loss=pick(0.0, 0.5, 1.0),
            calm_steps=int(pick(100, 200, 400)),
            burst_steps=int(pick(40, 100, 200)),
            calm_faults=pick(0.0, 0.0, 0.05, 0.2),
            hold_sync=pick(0.0, 0.3, 0.6, 0.9),
            move_start=pick(0.05, 0.15, 0.25),
            w_deliver=50.0,
            w_round=pick(25.0, 40.0),
            w_tick=pick(3.0, 5.0, 8.0),
            w_propose=pick(5.0, 10.0, 20.0),
            w_crash=pick(0.2, 0.5, 1.0, 2.0),
            w_restart=pick(1.0, 3.0),
            w_partition=pick(0.0, 0.2, 0.6),
            w_heal=pick(0.3, 1.0),
            w_transfer=pick(0.0, 0.2, 0.6),
            w_move=pick(4.0, 8.0),
        )


@dataclass
class MultiCounters:
    steps: int = 0
    ticks: int = 0
    batches: int = 0  # link batches put on the wire
    batches_delivered: int = 0
    delivered: int = 0  # messages stepped into a core
    dropped: int = 0  # batches lost (drops, cut links)
    duplicated: int = 0
    unhosted: int = 0  # messages for a group the receiving node does not host
    readies: int = 0
    syncs: int = 0  # node-level fsyncs
    synced_groups: int = 0  # groups whose writes those fsyncs made durable, summed
    shared_syncs: int = 0  # fsyncs that covered more than one group's writes
    held_syncs: int = 0  # rounds that left their fsync to a later round
    crashes: int = 0
    round_crashes: int = 0
    lost_writes: int = 0  # unsynced writes a crash dropped (every group's at once)
    restarts: int = 0
    partitions: int = 0
    heals: int = 0
    transfers: int = 0
    proposals: int = 0
    proposals_dropped: int = 0
    redirects: int = 0
    retries: int = 0
    conf_changes: int = 0
    conf_refused: int = 0
    moves_done: int = 0
    moves_done_in_run: int = 0  # finished before the last fault step (the rest: while healing)
    compactions: int = 0
    bursts: int = 0


@dataclass
class MultiSeedResult:
    seed: int
    steps: int
    groups: int
    nodes: int = 0
    violation: str | None = None  # invariant name
    group: int | None = None  # the group whose checker (or core) refused
    message: str | None = None
    at_step: int | None = None
    liveness_failure: str | None = None
    elections: int = 0  # summed over groups
    committed: int = 0  # distinct client values applied, summed over groups
    heal_ticks: int = 0
    move: str = ""  # e.g. "g2: n4 in, n1 out, done at step 812"
    counters: MultiCounters = field(default_factory=MultiCounters)

    @property
    def failed(self) -> bool:
        return self.violation is not None or self.liveness_failure is not None


class _Violation(Exception):
    def __init__(self, invariant: str, message: str) -> None:
        super().__init__(message)
        self.invariant = invariant
        self.message = message


def _clone(storage: MemoryStorage) -> MemoryStorage:
    """A copy sharing the (never mutated) entries, snapshot and hard state objects."""
    copy = MemoryStorage()
    copy.hard_state = storage.hard_state
    copy._snapshot = storage._snapshot
    copy._entries = list(storage._entries)
    return copy


class NodeDisk:
    """One node's storage engine: every hosted group's storage behind one write-ahead path.

    ``live[g]`` is what group ``g``'s core reads (every write so far); ``durable[g]`` is what
    survives a crash (every write up to the last ``sync``). ``write`` changes ``live`` at once
    and queues the same change in the node's one write-ahead log; ``sync`` (the fsync) replays
    every queued write of every group onto ``durable``; ``lose_unsynced`` (a crash) drops the
    queue and resets each touched group's ``live`` to its durable state.
    """

    def __init__(self) -> None:
        self.live: dict[int, MemoryStorage] = {}
        self.durable: dict[int, MemoryStorage] = {}
        self.wal: list[tuple[int, _Write]] = []
        self.never_synced: int | None = None  # the "unsynced-group" broken variant

    def create(self, group: int, storage: MemoryStorage) -> None:
        """A group's replica comes to this node (creating its namespace is synced)."""
        self.durable[group] = storage
        self.live[group] = _clone(storage)

    def destroy(self, group: int) -> None:
        del self.live[group]
        del self.durable[group]
        self.wal = [(owner, write) for owner, write in self.wal if owner != group]

    def write(self, group: int, change: _Write) -> None:
        change(self.live[group])
        self.wal.append((group, change))

    def sync(self) -> set[int]:
        """The fsync: every group's writes so far become durable; returns those groups."""
        covered: set[int] = set()
        kept: list[tuple[int, _Write]] = []
        for group, change in self.wal:
            if group == self.never_synced:
                kept.append((group, change))
                continue
            change(self.durable[group])
            covered.add(group)
        self.wal = kept
        return covered

    def lose_unsynced(self) -> int:
        """A crash: every group's unsynced writes are gone at once; returns how many."""
        lost = len(self.wal)
        for group in {group for group, _ in self.wal}:
            self.live[group] = _clone(self.durable[group])
        self.wal = []
        return lost


def _append(entries: list[Entry]) -> _Write:
    return lambda storage: storage.append(entries)


def _hard_state(hard_state: HardState) -> _Write:
    return lambda storage: storage.set_hard_state(hard_state)


def _install(snapshot: Snapshot) -> _Write:
    return lambda storage: storage.apply_snapshot(snapshot)


def _compact(index: int, conf_state: ConfState, data: bytes, compact_to: int) -> _Write:
    def change(storage: MemoryStorage) -> None:
        storage.create_snapshot(index, conf_state, data)
        if compact_to > storage.first_index() - 1:
            storage.compact(compact_to)

    return change


@dataclass
class Replica:
    """One group's replica on one node: its core, state machine and outstanding Ready."""

    group: int
    node_id: NodeId
    raw: RawNode | None = None
    sm: StateMachine = field(default_factory=StateMachine)
    held: Ready | None = None  # taken and written, waiting for the node's fsync
    generation: int = 0


@dataclass
class Batch:
    """Everything one node sent another during one step, over their one link."""

    frm: NodeId
    to: NodeId
    messages: list[tuple[int, Message]]


@dataclass
class Move:
    """Moving a replica of ``group`` to ``target``: learner, caught up, voter, old voter out."""

    group: int
    target: NodeId
    start_step: int
    source: NodeId | None = None
    done_step: int | None = None

    def describe(self) -> str:
        out = f"n{self.source}" if self.source is not None else "nobody yet"
        state = f"done at step {self.done_step}" if self.done_step is not None else "unfinished"
        return f"g{self.group}: n{self.target} in, {out} out, {state}"


class MultiSimulation:
    """One seed of many groups on shared nodes: ``run()`` returns its ``MultiSeedResult``."""

    def __init__(
        self,
        seed: int,
        steps: int,
        *,
        groups: int = DEFAULT_GROUPS,
        heal_ticks: int = DEFAULT_HEAL_TICKS,
        trace: Callable[[str], None] | None = None,
        check_sends: bool = True,
        broken: str | None = None,
    ) -> None:
        if groups < 1:
            raise ValueError("groups must be at least 1")
        if broken is not None and broken not in BROKEN_VARIANTS:
            raise ValueError(f"unknown broken variant {broken!r}")
        self.seed = seed
        self.steps = steps
        self.group_count = groups
        self.heal_ticks = heal_ticks
        self.trace = trace
        self.broken = broken
        self.rng = rng = random.Random(seed)
        self.profile = profile = dataclasses.replace(
            MultiProfile.draw(rng), lazy_commit=seed % 2 == 1
        )
        self.node_ids = list(range(1, profile.nodes + 1))
        self.disks = {node_id: NodeDisk() for node_id in self.node_ids}
        self.down: set[NodeId] = set()
        self.replicas: dict[int, dict[NodeId, Replica]] = {}  # group -> node -> replica
        self.hosted: dict[NodeId, dict[int, Replica]] = {n: {} for n in self.node_ids}
        self.checkers: dict[int, InvariantChecker] = {}
        self.counters = MultiCounters()
        self.step_no = 0
        self.current_group: int | None = None  # for naming the group of a violation
        # the network: per-link outboxes filled during a step, batches in flight
        self.outbox: dict[tuple[NodeId, NodeId], list[tuple[int, Message]]] = {}
        self.in_flight: list[Batch] = []
        self.cut: set[tuple[NodeId, NodeId]] = set()
        # the client, per group
        self.next_value = 0
        self.accepted: dict[int, dict[bytes, None]] = {}
        self.unacked: dict[int, dict[bytes, None]] = {}
        self.value_index: dict[int, dict[bytes, int]] = {}
        self.hint: dict[int, NodeId | None] = {}
        for group in range(groups):
            self.checkers[group] = InvariantChecker(check_sends=check_sends)
            self.replicas[group] = {}
            self.accepted[group] = {}
            self.unacked[group] = {}
            self.value_index[group] = {}
            self.hint[group] = None
            members = tuple(self._placement(group))
            for node_id in members:
                self.disks[node_id].create(group, bootstrap_memory_storage(members))
                self._add_replica(group, node_id)
        if broken == "unsynced-group":
            for disk in self.disks.values():
                disk.never_synced = groups - 1
        move_group = 1 + rng.randrange(groups - 1) if groups > 1 else META_GROUP
        free = [n for n in self.node_ids if n not in self.replicas[move_group]]
        self.move = Move(
            move_group,
            free[rng.randrange(len(free))],
            int(steps * profile.move_start),
        )
        self._burst_actions = self._weigh(1.0)
        self._calm_actions = self._weigh(profile.calm_faults)
        self.calm = True
        self.fault_scale = profile.calm_faults
        self.phase_end = self._phase_length(calm=True)
        self.heal_budget = 0

    def _placement(self, group: int) -> list[NodeId]:
        """The meta group on the first three nodes; shard ``g`` on three nodes from ``g - 1``
        on, rotating (the real placement rule's shape: no two replicas on one node)."""
        count = len(self.node_ids)
        start = 0 if group == META_GROUP else (group - 1) % count
        size = min(REPLICATION_FACTOR, count)
        return [self.node_ids[(start + offset) % count] for offset in range(size)]

    def _weigh(self, faults: float) -> tuple[list[tuple[float, Callable[[], None]]], float]:
        profile = self.profile
        actions: list[tuple[float, Callable[[], None]]] = [
            (profile.w_deliver, self._deliver_one),
            (profile.w_round, self._round_one),
            (profile.w_tick * (CALM_TICKS if faults < 1.0 else 1.0), self._tick),
            (profile.w_propose, self._propose),
            (profile.w_crash * faults, self._crash),
            (profile.w_restart, self._restart),
            (profile.w_partition * faults, self._partition),
            (profile.w_heal, self._heal_network),
            (profile.w_transfer, self._transfer),
            (profile.w_move, self._advance_move),
        ]
        actions = [(weight, action) for weight, action in actions if weight > 0]
        return actions, sum(weight for weight, _ in actions)

    def _phase_length(self, calm: bool) -> int:
        base = self.profile.calm_steps if calm else self.profile.burst_steps
        return self.step_no + base + self.rng.randrange(base + 1)

    def _log(self, text: str) -> None:
        if self.trace is not None:
            self.trace(f"[{self.step_no}] {text}")

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> MultiSeedResult:
        result = MultiSeedResult(
            self.seed, self.steps, self.group_count, len(self.node_ids), counters=self.counters
        )
        try:
            try:
                for step_no in range(self.steps):
                    self.step_no = step_no
                    self._step()
                    self._flush_links()
                self.step_no = self.steps
                result.liveness_failure, result.heal_ticks = self._heal_and_wait()
                for group, checker in self.checkers.items():
                    self.current_group = group
                    checker.check_all(self._live_rafts(group))
            except InvariantViolation as violation:
                raise _Violation(violation.invariant, violation.detail) from violation
            except (AssertionError, RaftError) as error:
                raise _Violation("core-error", f"{type(error).__name__}: {error}") from error
        except _Violation as violation:
            result.violation = violation.invariant
            result.group = self.current_group
            result.message = violation.message
            result.at_step = self.step_no
            result.liveness_failure = None
        result.elections = sum(len(checker.leaders) for checker in self.checkers.values())
        result.committed = sum(len(values) for values in self.value_index.values())
        result.move = self.move.describe()
        self.counters.steps = self.step_no
        return result

    def _step(self) -> None:
        if self.step_no >= self.phase_end:
            self._next_phase()
        actions, total = self._calm_actions if self.calm else self._burst_actions
        point = self.rng.random() * total
        for weight, action in actions:
            point -= weight
            if point < 0:
                action()
                return
        actions[-1][1]()

    def _next_phase(self) -> None:
        self.calm = not self.calm
        if self.calm:
            self._log("burst over: heal")
            self._heal_network()
            for node_id in sorted(self.down):
                self._restart_node(node_id)
            self.fault_scale = self.profile.calm_faults
        else:
            self._log("fault burst")
            self.counters.bursts += 1
            self.fault_scale = 1.0
        self.phase_end = self._phase_length(self.calm)

    # -- replicas and groups -----------------------------------------------------------------
    def _add_replica(self, group: int, node_id: NodeId) -> Replica:
        replica = Replica(group, node_id)
        self.replicas[group][node_id] = replica
        self.hosted[node_id][group] = replica
        if node_id not in self.down:
            self._start(replica)
        return replica

    def _start(self, replica: Replica) -> None:
        """(Re)start a replica from what its node's disk holds for its group."""
        group, node_id = replica.group, replica.node_id
        storage = self.disks[node_id].live[group]
        snapshot = storage.snapshot()
        replica.sm = StateMachine()
        replica.sm.restore(snapshot)
        profile = self.profile
        config = default_config(
            node_id,
            snapshot.metadata.index,
            ((self.seed * 7919 + replica.generation) * 131 + group) * 17,
            election_tick=profile.election_tick,
            heartbeat_tick=profile.heartbeat_tick,
            max_entries_per_msg=profile.max_entries_per_msg,
            max_inflight_msgs=profile.max_inflight_msgs,
            snapshot_chunk_bytes=profile.snapshot_chunk_bytes,
            lazy_commit=profile.lazy_commit,
        )
        replica.raw = RawNode(config, storage)
        replica.held = None
        self.current_group = group
        self.checkers[group].node_started(node_id, replica.raw.raft, storage.hard_state)

    def _hosted(self, node_id: NodeId) -> list[Replica]:
        """The replicas ``node_id`` hosts (founding groups in order, then moved-in ones)."""
        return list(self.hosted[node_id].values())

    def _live_rafts(self, group: int) -> Iterator[tuple[NodeId, Raft]]:
        for node_id, replica in self.replicas[group].items():
            if replica.raw is not None:
                yield node_id, replica.raw.raft

    def _alive(self) -> list[NodeId]:
        return [node_id for node_id in self.node_ids if node_id not in self.down]

    def _leader(self, group: int) -> Replica | None:
        """The live leader of ``group`` with the highest term, if any."""
        best: Replica | None = None
        best_term = -1
        for replica in self.replicas[group].values():
            raw = replica.raw
            if raw is not None and raw.raft.role == StateRole.LEADER and raw.raft.term > best_term:
                best, best_term = replica, raw.raft.term
        return best

    def _observe(self, replica: Replica) -> None:
        if replica.raw is not None:
            self.current_group = replica.group
            self.checkers[replica.group].observe(replica.node_id, replica.raw.raft)

    # -- the network ---------------------------------------------------------------------------
    def _send(self, frm: NodeId, group: int, messages: Sequence[Message]) -> None:
        outbox = self.outbox
        for message in messages:
            outbox.setdefault((frm, message.to), []).append((group, message))

    def _flush_links(self) -> None:
        """End of a step: each link carries what every group queued on it as one batch."""
        if not self.outbox:
            return
        for (frm, to), messages in self.outbox.items():
            if (frm, to) in self.cut:
                self.counters.dropped += 1
                continue
            self.counters.batches += 1
            self.in_flight.append(Batch(frm, to, messages))
        self.outbox = {}

    def _deliver_one(self) -> None:
        in_flight = self.in_flight
        if not in_flight:
            self._round_one(idle=True)
            return
        rng = self.rng
        if self.calm:
            batch = in_flight.pop(rng.randrange(min(len(in_flight), CALM_REORDER_WINDOW)))
        else:
            position = rng.randrange(len(in_flight))
            batch = in_flight[position]
            in_flight[position] = in_flight[-1]
            in_flight.pop()
        scale = self.fault_scale
        if (batch.frm, batch.to) in self.cut or rng.random() < self.profile.drop * scale:
            self.counters.dropped += 1
            return
        if rng.random() < self.profile.duplicate * scale:
            self.counters.duplicated += 1
            in_flight.append(batch)
        self._deliver(batch)

    def _deliver(self, batch: Batch) -> None:
        if batch.to in self.down:
            return
        counters = self.counters
        counters.batches_delivered += 1
        for group, message in batch.messages:
            replica = self.replicas[group].get(batch.to)
            if replica is None or replica.raw is None:
                counters.unhosted += 1  # Raft resends once the group is hosted
                continue
            counters.delivered += 1
            self.current_group = group
            try:
                replica.raw.step(message)
            except RaftError as error:
                if type(error).__name__ not in ("ProposalDropped", "ConfChangeRefused"):
                    raise
            self._observe(replica)

    def _partition(self) -> None:
        rng = self.rng
        ids = self.node_ids
        self.counters.partitions += 1
        kind = rng.randrange(3)
        if kind == 0:  # two sides
            side = {node_id for node_id in ids if rng.random() < 0.5}
            for a in side:
                for b in set(ids) - side:
                    self.cut.update(((a, b), (b, a)))
            self._log(f"partition {sorted(side)} | {sorted(set(ids) - side)}")
        elif kind == 1:  # isolate one node, most often one that leads something
            leaders = [r.node_id for g in self.replicas if (r := self._leader(g)) is not None]
            pool = leaders if leaders and rng.random() < 0.7 else ids
            victim = pool[rng.randrange(len(pool))]
            for other in ids:
                if other != victim:
                    self.cut.update(((victim, other), (other, victim)))
            self._log(f"isolate n{victim}")
        else:  # one directed link
            frm, to = ids[rng.randrange(len(ids))], ids[rng.randrange(len(ids))]
            if frm != to:
                self.cut.add((frm, to))
                self._log(f"cut n{frm} -> n{to}")

    def _heal_network(self) -> None:
        if self.cut:
            self.counters.heals += 1
            self._log("heal network")
        self.cut.clear()

    # -- a node's round: every group's Ready, one fsync, then acks and applies ------------------
    def _round_one(self, idle: bool = False) -> None:
        candidates = [
            node_id
            for node_id in self._alive()
            if any(
                replica.held is not None or (replica.raw is not None and replica.raw.has_ready())
                for replica in self.hosted[node_id].values()
            )
        ]
        if not candidates:
            self._deliver_one() if self.in_flight and not idle else self._tick()
            return
        self._round(candidates[self.rng.randrange(len(candidates))], faults=True)

    def _round(self, node_id: NodeId, faults: bool) -> bool:
        """Take and write the Ready of every group on ``node_id`` that has one, then (unless
        the fsync is left to a later round) sync once for all of them and finish each. With
        ``faults`` the node may crash before the fsync, after it, or between two groups."""
        disk = self.disks[node_id]
        busy = False
        # An fsync left for later is under way: this round finishes it (covering whatever the
        # groups write meanwhile) rather than leaving it again.
        syncing = bool(disk.wal)
        for replica in self._hosted(node_id):
            raw = replica.raw
            if raw is None or replica.held is not None or not raw.has_ready():
                continue
            busy = True
            self._take_ready(disk, replica, raw)
        waiting = [replica for replica in self._hosted(node_id) if replica.held is not None]
        if not waiting and not disk.wal:
            return busy
        crash_at = -1
        rng = self.rng
        if faults and disk.wal and rng.random() < self.profile.round_crash * self.fault_scale:
            crash_at = rng.randrange(1 + len(waiting))
        if crash_at == 0:
            self._crash_node(node_id, "before its fsync")
            return True
        if faults and not syncing and rng.random() < self.profile.hold_sync:
            self.counters.held_syncs += 1
            return True
        covered = self._sync(node_id)
        for position, replica in enumerate(waiting):
            if crash_at == position + 1:
                self._crash_node(node_id, f"after its fsync, {position} group(s) acknowledged")
                return True
            self._finish_ready(disk, replica)
        return busy or bool(waiting) or bool(covered)

    def _take_ready(self, disk: NodeDisk, replica: Replica, raw: RawNode) -> None:
        group, node_id = replica.group, replica.node_id
        self.current_group = group
        checker = self.checkers[group]
        rd = raw.ready()
        self.counters.readies += 1
        durable = disk.durable[group]
        checker.observe_sent(node_id, rd.messages, durable.hard_state, durable.last_index())
        self._send(node_id, group, rd.messages)
        wrote = False
        if rd.snapshot is not None:
            disk.write(group, _install(rd.snapshot))
            wrote = True
        if rd.entries:
            disk.write(group, _append(rd.entries))
            wrote = True
        if rd.hard_state is not None:
            disk.write(group, _hard_state(rd.hard_state))
            wrote = True
        replica.held = rd
        if self.broken == "early-acks":
            checker.observe_sent(
                node_id, rd.persisted_messages, durable.hard_state, durable.last_index()
            )
            self._send(node_id, group, rd.persisted_messages)
            rd.persisted_messages = []
        if not wrote:
            # Nothing to make durable: what its acknowledgements vouch for was synced before.
            self._finish_ready(disk, replica)

    def _sync(self, node_id: NodeId) -> set[int]:
        disk = self.disks[node_id]
        covered = disk.sync()
        counters = self.counters
        counters.syncs += 1
        counters.synced_groups += len(covered)
        if len(covered) > 1:
            counters.shared_syncs += 1
        for group in sorted(covered):
            self.current_group = group
            self.checkers[group].observe_durable(node_id, disk.durable[group].hard_state)
        return covered

    def _finish_ready(self, disk: NodeDisk, replica: Replica) -> None:
        """After the fsync covering its writes: acknowledge, apply, ``advance``."""
        rd = replica.held
        raw = replica.raw
        if rd is None or raw is None:
            return
        group, node_id = replica.group, replica.node_id
        self.current_group = group
        checker = self.checkers[group]
        durable = disk.durable[group]
        checker.observe_sent(
            node_id, rd.persisted_messages, durable.hard_state, durable.last_index()
        )
        self._send(node_id, group, rd.persisted_messages)
        if rd.committed_entries:
            checker.observe_applied(node_id, rd.committed_entries, raw.raft.log.committed)
        sm = replica.sm
        if rd.snapshot is not None:
            sm.restore(rd.snapshot)
        for entry in rd.committed_entries:
            sm.apply(entry)
        if rd.committed_entries or rd.snapshot is not None:
            checker.observe_state(node_id, sm.applied_index, sm.digest)
            self._acknowledge(group, rd.committed_entries)
        replica.held = None
        raw.advance(rd)
        checker.observe(node_id, raw.raft)
        checker.observe_stable(node_id, raw.raft, durable.last_index())
        self._maybe_compact(disk, replica, raw)

    def _maybe_compact(self, disk: NodeDisk, replica: Replica, raw: RawNode) -> None:
        """Snapshot the state machine and compact the group's log, through the node's write
        path (durable at the next fsync, like every other write)."""
        profile = self.profile
        if not profile.snapshot_threshold:
            return
        storage = disk.live[replica.group]
        applied = replica.sm.applied_index
        if applied - storage.snapshot().metadata.index < profile.snapshot_threshold:
            return
        if raw.raft.log.applied != applied or applied > storage.last_index():
            return
        change = _compact(
            applied, raw.raft.conf_state(), replica.sm.snapshot_data(),
            applied - profile.snapshot_keep,
        )
        try:
            disk.write(replica.group, change)
        except (Compacted, SnapshotTemporarilyUnavailable):
            return
        self.counters.compactions += 1

    def _acknowledge(self, group: int, entries: Sequence[Entry]) -> None:
        """The client hears "committed" the first time any replica applies its value."""
        unacked = self.unacked[group]
        for entry in entries:
            data = entry.data
            if entry.type != EntryType.NORMAL or data not in unacked:
                continue
            del unacked[data]
            self.value_index[group][data] = entry.index
            self.checkers[group].acknowledge(entry.index, entry.term, data)

    # -- clocks, crashes ---------------------------------------------------------------------
    def _tick(self) -> None:
        rng = self.rng
        alive = self._alive()
        if not alive:
            self._restart()
            return
        self.counters.ticks += 1
        targets = alive if rng.random() < 0.8 else [alive[rng.randrange(len(alive))]]
        for node_id in targets:
            self._tick_node(node_id)

    def _tick_node(self, node_id: NodeId) -> None:
        """The node's one ticker ticks every group it hosts."""
        for replica in self._hosted(node_id):
            raw = replica.raw
            if raw is not None:
                raw.tick()
                raw.flush_commit()
                self._observe(replica)

    def _crash(self) -> None:
        alive = self._alive()
        if not alive:
            return
        rng = self.rng
        # Nodes leading groups are the interesting victims.
        leaders = [r.node_id for g in self.replicas if (r := self._leader(g)) is not None]
        pool = leaders if leaders and rng.random() < 0.5 else alive
        self._crash_node(pool[rng.randrange(len(pool))], "")

    def _crash_node(self, node_id: NodeId, when: str) -> None:
        counters = self.counters
        counters.crashes += 1
        if when:
            counters.round_crashes += 1
        lost = self.disks[node_id].lose_unsynced()
        counters.lost_writes += lost
        self._log(f"n{node_id} crashed{' ' + when if when else ''}, {lost} unsynced writes lost")
        self.down.add(node_id)
        for replica in self._hosted(node_id):
            replica.raw = None
            replica.held = None
            self.current_group = replica.group
            self.checkers[replica.group].node_crashed(node_id)
        rng = self.rng
        loss = self.profile.crash_outbox_loss
        for link in sorted(self.outbox):
            if link[0] == node_id and rng.random() < loss:
                del self.outbox[link]
        self.in_flight[:] = [
            batch
            for batch in self.in_flight
            if batch.to != node_id and not (batch.frm == node_id and rng.random() < loss)
        ]

    def _restart(self) -> None:
        if not self.down:
            self._tick()
            return
        down = sorted(self.down)
        self._restart_node(down[self.rng.randrange(len(down))])

    def _restart_node(self, node_id: NodeId) -> None:
        self.counters.restarts += 1
        self.down.discard(node_id)
        for replica in self._hosted(node_id):
            replica.generation += 1
            self._start(replica)
        self._log(f"n{node_id} restarted")

    # -- the client ----------------------------------------------------------------------------
    def _client_target(self, group: int) -> Replica | None:
        members = [r for r in self.replicas[group].values() if r.raw is not None]
        if not members:
            return None
        hint = self.hint[group]
        if hint is not None and self.rng.random() < 0.9:
            replica = self.replicas[group].get(hint)
            if replica is not None and replica.raw is not None:
                return replica
        return members[self.rng.randrange(len(members))]

    def _propose(self) -> None:
        rng = self.rng
        group = rng.randrange(self.group_count)
        target = self._client_target(group)
        if target is None:
            return
        count = 1 if rng.random() < 0.7 else 1 + rng.randrange(4)
        values = []
        for _ in range(count):
            self.next_value += 1
            values.append(b"g%d.v%d" % (group, self.next_value))
        if self._submit(target, values):
            return
        raw = target.raw
        leader = raw.raft.leader_id if raw is not None else 0
        redirect = self.replicas[group].get(leader)
        if leader == target.node_id or redirect is None or redirect.raw is None:
            self.hint[group] = None
            return
        self.counters.redirects += 1
        self._submit(redirect, values)

    def _submit(self, replica: Replica, values: list[bytes]) -> bool:
        raw = replica.raw
        if raw is None:
            return False
        group = replica.group
        self.counters.proposals += len(values)
        self.current_group = group
        try:
            if len(values) == 1:
                raw.propose(values[0])
            else:
                raw.propose_batch(values)
        except RaftError as error:
            if type(error).__name__ != "ProposalDropped":
                raise
            self.counters.proposals_dropped += len(values)
            return False
        finally:
            self._observe(replica)
        self.hint[group] = replica.node_id
        for value in values:
            self.accepted[group][value] = None
            if value not in self.value_index[group]:
                self.unacked[group][value] = None
        return True

    def _transfer(self) -> None:
        group = self.rng.randrange(self.group_count)
        leader = self._leader(group)
        if leader is None or leader.raw is None:
            return
        voters = sorted(leader.raw.raft.voters - {leader.node_id})
        if not voters:
            return
        target = voters[self.rng.randrange(len(voters))]
        self.counters.transfers += 1
        self._log(f"g{group}: n{leader.node_id} transfers leadership to n{target}")
        leader.raw.transfer_leader(target)
        self._observe(leader)

    # -- the replica move ----------------------------------------------------------------------
    def _advance_move(self) -> None:
        """One step of the move, decided from the group leader's applied configuration: add
        the target as a learner, promote it once caught up, remove an old voter, destroy its
        replica once the removal is applied. One membership change at a time."""
        move = self.move
        if move.done_step is not None or self.step_no < move.start_step:
            return
        group, target = move.group, move.target
        leader = self._leader(group)
        if leader is None or leader.raw is None:
            return
        raw = leader.raw
        raft = raw.raft
        if raft.pending_conf_index > raft.log.applied:
            return  # the previous change is not applied yet
        if target not in raft.voters and target not in raft.learners:
            if target not in self.replicas[group]:
                self.disks[target].create(group, MemoryStorage(ConfState()))
                self._add_replica(group, target)
                self._log(f"g{group}: empty replica created on n{target}")
            change = ConfChange(ConfChangeType.ADD_LEARNER, target)
        elif target in raft.learners:
            progress = raft.prs.get(target)
            if progress is None or raft.log.last_index() - progress.match > PROMOTE_LAG:
                return  # still catching up
            change = ConfChange(ConfChangeType.ADD_NODE, target)
        else:
            if move.source is None:
                others = sorted(raft.voters - {target, leader.node_id})
                if not others:
                    return
                move.source = others[self.rng.randrange(len(others))]
            source = move.source
            if source in raft.voters or source in raft.learners:
                if source == leader.node_id:
                    self.counters.transfers += 1
                    raw.transfer_leader(target)  # a leader is not asked to remove itself
                    self._observe(leader)
                    return
                change = ConfChange(ConfChangeType.REMOVE_NODE, source)
            else:
                self._destroy_replica(group, source)
                move.done_step = self.step_no
                self.counters.moves_done += 1
                if self.step_no < self.steps:
                    self.counters.moves_done_in_run += 1
                self._log(f"g{group}: move done ({move.describe()})")
                return
        self.current_group = group
        try:
            raw.propose_conf_change(change)
        except RaftError as error:
            if type(error).__name__ not in ("ProposalDropped", "ConfChangeRefused"):
                raise
            self.counters.conf_refused += 1
            return
        finally:
            self._observe(leader)
        self.counters.conf_changes += 1
        self._log(f"g{group}: n{leader.node_id} proposed {change.type.name} n{change.node_id}")

    def _destroy_replica(self, group: int, node_id: NodeId) -> None:
        """The removed voter's replica goes away with its storage (its removal is committed)."""
        replica = self.replicas[group].pop(node_id, None)
        if replica is None:
            return
        del self.hosted[node_id][group]
        self.disks[node_id].destroy(group)
        if replica.raw is not None:
            self.current_group = group
            self.checkers[group].node_crashed(node_id)
        if self.hint[group] == node_id:
            self.hint[group] = None

    # -- after the last fault ------------------------------------------------------------------
    def _heal_and_wait(self) -> tuple[str | None, int]:
        """Heal everything, then give every group ``heal_ticks`` ticks to catch up (and the
        move to finish)."""
        self._log("final heal")
        self.cut.clear()
        for node_id in sorted(self.down):
            self._restart_node(node_id)
        self.move.start_step = min(self.move.start_step, self.step_no)
        self.heal_budget = (
            self.counters.delivered
            + HEAL_MESSAGES_PER_TICK * self.heal_ticks * self.group_count
        )
        retry_every = self.profile.election_tick
        last_leader: dict[int, NodeId] = {}
        for tick in range(self.heal_ticks):
            if self.counters.delivered > self.heal_budget:
                return (f"message storm within {tick} ticks after the last fault healed", tick)
            self.step_no = self.steps + tick
            for node_id in self._alive():
                self._tick_node(node_id)
            self._stabilize()
            done = True
            for group in range(self.group_count):
                leader = self._leader(group)
                if leader is None:
                    done = False
                    continue
                missing = self._missing_on(leader)
                if not missing:
                    continue
                done = False
                if last_leader.get(group) != leader.node_id or tick % retry_every == 0:
                    last_leader[group] = leader.node_id
                    self.counters.retries += len(missing)
                    self._submit(leader, missing)
            if self.move.done_step is None:
                self._advance_move()
                done = done and self.move.done_step is not None
            self._stabilize()
            if done:
                return None, tick + 1
        for group in range(self.group_count):
            leader = self._leader(group)
            if leader is None:
                return f"g{group}: no leader {self.heal_ticks} ticks after the heal", (
                    self.heal_ticks
                )
            missing = self._missing_on(leader)
            if missing:
                return (
                    f"g{group}: leader n{leader.node_id} still lacks {len(missing)} value(s) "
                    f"(first {missing[0]!r}) {self.heal_ticks} ticks after the heal",
                    self.heal_ticks,
                )
        return f"replica move {self.move.describe()} {self.heal_ticks} ticks after the heal", (
            self.heal_ticks
        )

    def _missing_on(self, leader: Replica) -> list[bytes]:
        applied = leader.sm.applied_index
        index_of = self.value_index[leader.group]
        return [
            value
            for value in self.accepted[leader.group]
            if value not in index_of or index_of[value] > applied
        ]

    def _stabilize(self, max_rounds: int = 200) -> None:
        """Every node runs its rounds (fsync included) and every batch arrives, oldest first,
        until nothing moves."""
        for _ in range(max_rounds):
            busy = False
            for node_id in self._alive():
                while self._round(node_id, faults=False):
                    busy = True
            self._flush_links()
            if self.in_flight:
                busy = True
                batches, self.in_flight = self.in_flight, []
                for batch in batches:
                    self._deliver(batch)
                if self.counters.delivered > self.heal_budget:
                    return
            if not busy:
                return


# -- one seed ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MultiRunOptions:
    steps: int = DEFAULT_STEPS
    heal_ticks: int = DEFAULT_HEAL_TICKS
    groups: int = DEFAULT_GROUPS


def run_multi_seed(seed: int, options: MultiRunOptions = MultiRunOptions()) -> MultiSeedResult:
    return MultiSimulation(
        seed, options.steps, groups=options.groups, heal_ticks=options.heal_ticks
    ).run()


__all__ = [
    "BROKEN_VARIANTS",
    "DEFAULT_GROUPS",
    "DEFAULT_HEAL_TICKS",
    "DEFAULT_SEEDS",
    "DEFAULT_STEPS",
    "MultiProfile",
    "MultiRunOptions",
    "MultiSeedResult",
    "MultiSimulation",
    "NodeDisk",
    "run_multi_seed",
]
