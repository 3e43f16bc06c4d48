"""``quorumlog sim``: a deterministic simulator that tries hard to break the Raft core.

Owns: one ``Simulation`` per seed over an in-memory cluster (``MemCluster``'s nodes, disks
and network), its own Ready handling (so a node can crash between any two steps of it), the
fault schedule, the client (proposals with unique values, ReadIndex reads, retries after the
faults heal), the liveness check, and the command line (``add_arguments``/``run``).

One ``random.Random(seed)`` decides everything: the seed's fault profile, the phase schedule,
which action each step takes (tick, deliver an in-flight message, work on a Ready, propose,
read, crash, restart, partition, heal, membership change, leadership transfer), drops and
duplicates, and the crash point inside a Ready. The cores' own election-timeout generators are
seeded from the seed too, so a seed replays exactly. ``quorumlog.raft.invariants`` runs after
every step; the first violation ends the seed.

Phases: a seed alternates calm stretches (faults scaled down by the profile's ``calm_faults``,
often to none; messages arrive nearly in order; clocks tick rarely relative to messages) with
fault bursts (every fault at full weight, any message may overtake any other); each burst ends
with a heal (network whole, crashed nodes restarted).

The client follows leader hints: it sends to the node it believes leads (learned from whoever
accepted its last request, or from the leader a refusing node names, to which it redirects at
once) and sometimes to a random node. Each ReadIndex attempt has a fresh context checked
against everything acknowledged before it; a read left unanswered is retried.

Readies are pipelined as on the real node: after ``ready()`` the messages leave at once, but
persisting (then sending ``persisted_messages``) and applying (then ``advance()``) may each
wait for later steps while the node keeps stepping messages, ticks and proposals; a crash
meanwhile loses the unpersisted Ready. Only one Ready per node is outstanding.

After the last step every fault heals: the network is whole, crashed nodes restart, and the
client keeps re-proposing values it never saw committed to whichever node leads, then re-asks
every unanswered read. Within ``heal_ticks`` ticks a leader must exist and have applied every
value the client ever had accepted, and every read must be answered, or the seed is a
liveness failure.

Must never: read a clock or draw unseeded randomness inside a simulation (the wall clock is
read only to report how long a whole run took), or touch the core's internals beyond
reading state for the checker.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from quorumlog.raft import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    Message,
    NodeId,
    Raft,
    RaftError,
    Ready,
    StateRole,
)
from quorumlog.raft.invariants import InvariantChecker, InvariantViolation
from quorumlog.raft.testing.memcluster import MemCluster, MemNode

DEFAULT_STEPS = 3000
DEFAULT_SEEDS = 100
DEFAULT_HEAL_TICKS = 400
# Messages the heal phase may deliver per heal tick on average before it counts as a message
# storm (a healthy cluster needs a few dozen).
HEAL_MESSAGES_PER_TICK = 250
CALM_REORDER_WINDOW = 4  # while calm, one of the oldest few messages in flight arrives next
CALM_TICKS = 0.15  # while calm, clocks tick this much less often relative to messages
READ_RETRY_STEPS = 60  # a client retries a read left unanswered for this many steps
MAX_NODES = 8  # founding members plus the ones membership changes may add


@dataclass(frozen=True)
class Profile:
    """How hostile one seed is; drawn from the seed so different seeds stress different things.

    A seed alternates calm phases (faults scaled down by ``calm_faults``, often to nothing)
    with fault bursts (every fault at full weight); each burst ends with a heal (the network
    is whole again and crashed nodes restart), as real clusters alternate calm and trouble.
    """

    size: int
    election_tick: int
    heartbeat_tick: int
    max_entries_per_msg: int
    max_inflight_msgs: int
    snapshot_chunk_bytes: int
    snapshot_threshold: int  # 0: never compact
    snapshot_keep: int
    drop: float  # probability a delivered message is lost instead
    duplicate: float  # probability a delivered message is delivered again later
    ready_crash: float  # probability a Ready with something to persist crashes the node midway
    new_leader_crash: float  # probability a node crashes in the Ready announcing it leads
    crash_outbox_loss: float  # probability each undelivered message from a crashed node is lost
    # phases
    calm_steps: int  # a calm phase lasts between this and twice this many steps
    burst_steps: int  # a fault burst lasts between this and twice this many steps
    calm_faults: float  # fault weights and probabilities are scaled by this while calm
    # the application's Ready pipeline
    hold_ready: float  # probability a Ready stays outstanding while the node keeps stepping
    # action weights
    w_deliver: float
    w_ready: float
    w_tick: float
    w_propose: float
    w_read: float
    w_crash: float
    w_restart: float
    w_partition: float
    w_heal: float
    w_membership: float
    w_transfer: float
    # Config.lazy_commit, as the real node runs it: not drawn (that would shift every seed's
    # random stream); Simulation sets it on odd seeds. Lazy leaders flush every tick.
    lazy_commit: bool = False

    @staticmethod
    def draw(rng: random.Random) -> Profile:
        def pick(*choices: float) -> float:
            return choices[rng.randrange(len(choices))]

        election_tick = int(pick(4, 6, 10))
        return Profile(
            size=int(pick(3, 3, 5)),
            election_tick=election_tick,
            heartbeat_tick=int(pick(1, 1, 2)),
            max_entries_per_msg=int(pick(1, 2, 4, 64)),
            max_inflight_msgs=int(pick(1, 2, 8, 256)),
            snapshot_chunk_bytes=int(pick(8, 24, 1 << 20)),
            snapshot_threshold=int(pick(0, 2, 3, 5, 20)),
            snapshot_keep=int(pick(0, 0, 1, 4)),
            drop=pick(0.0, 0.02, 0.1, 0.25),
            duplicate=pick(0.0, 0.02, 0.1),
            ready_crash=pick(0.0, 0.01, 0.03, 0.08),
            new_leader_crash=pick(0.0, 0.0, 0.1, 0.3),
            crash_outbox_loss=pick(0.0, 0.5, 1.0),
            calm_steps=int(pick(150, 300, 600)),
            burst_steps=int(pick(50, 150, 300)),
            calm_faults=pick(0.0, 0.0, 0.05, 0.2),
            hold_ready=pick(0.0, 0.3, 0.6, 0.9),
            w_deliver=50.0,
            w_ready=pick(25.0, 40.0),
            w_tick=pick(3.0, 5.0, 8.0),
            w_propose=pick(5.0, 10.0, 20.0),
            w_read=pick(1.0, 2.0, 4.0),
            w_crash=pick(0.2, 0.5, 1.0, 2.0, 3.0),
            w_restart=pick(1.0, 3.0),
            w_partition=pick(0.0, 0.2, 0.6),
            w_heal=pick(0.3, 1.0),
            w_membership=pick(0.0, 0.2, 0.6),
            w_transfer=pick(0.0, 0.2, 0.6),
        )


@dataclass
class Counters:
    steps: int = 0
    ticks: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    readies: int = 0
    crashes: int = 0
    ready_crashes: int = 0
    restarts: int = 0
    partitions: int = 0
    heals: int = 0
    conf_changes: int = 0
    conf_refused: int = 0
    transfers: int = 0
    proposals: int = 0
    proposals_dropped: int = 0
    redirects: int = 0
    reads: int = 0  # distinct client reads
    read_attempts: int = 0  # ReadIndex requests, retries included
    reads_dropped: int = 0
    reads_served: int = 0  # requests served (and checked for staleness)
    reads_completed: int = 0  # distinct client reads that got an answer
    bursts: int = 0
    held_readies: int = 0  # Readies that stayed outstanding while the node kept stepping
    held_crashes: int = 0  # crashes that lost an outstanding Ready's persistence
    compactions: int = 0
    retries: int = 0


@dataclass
class SeedResult:
    seed: int
    steps: int
    violation: str | None = None  # invariant name
    message: str | None = None
    at_step: int | None = None
    liveness_failure: str | None = None
    elections: int = 0
    committed: int = 0
    heal_ticks: int = 0
    counters: Counters = field(default_factory=Counters)

    @property
    def failed(self) -> bool:
        return self.violation is not None or self.liveness_failure is not None


@dataclass
class _Held:
    """A Ready handed out by ``ready()`` whose cycle has not reached ``advance()`` yet."""

    rd: Ready
    crash_at: int  # -1, or 2 / 3: the node crashes after persisting / after acknowledging
    persisted: bool = False


class _Violation(Exception):
    """Ends a seed: the checker or the core itself refused what happened."""

    def __init__(self, invariant: str, message: str) -> None:
        super().__init__(message)
        self.invariant = invariant
        self.message = message


class Simulation:
    """One seed: ``run()`` returns its ``SeedResult``; nothing else is shared between seeds."""

    def __init__(
        self,
        seed: int,
        steps: int,
        *,
        heal_ticks: int = DEFAULT_HEAL_TICKS,
        trace: Callable[[str], None] | None = None,
        profile: Profile | None = None,
        check_sends: bool = True,
    ) -> None:
        self.seed = seed
        self.steps = steps
        self.heal_ticks = heal_ticks
        self.trace = trace
        self.rng = random.Random(seed)
        drawn = Profile.draw(self.rng)  # drawn even when overridden: the stream stays the same
        if profile is None:
            profile = dataclasses.replace(drawn, lazy_commit=seed % 2 == 1)
        self.profile = profile
        self.cluster = MemCluster(
            range(1, profile.size + 1),
            seed=seed,
            record=False,
            election_tick=profile.election_tick,
            heartbeat_tick=profile.heartbeat_tick,
            max_entries_per_msg=profile.max_entries_per_msg,
            max_inflight_msgs=profile.max_inflight_msgs,
            snapshot_chunk_bytes=profile.snapshot_chunk_bytes,
            lazy_commit=profile.lazy_commit,
        )
        self.nodes = self.cluster.nodes
        self.in_flight = self.cluster.network.in_flight
        self.cut = self.cluster.network.cut_links
        self.next_node_id = profile.size + 1
        self.checker = InvariantChecker(check_sends=check_sends)
        self.counters = Counters()
        self.next_value = 0
        self.accepted: dict[bytes, None] = {}  # values some leader accepted, in order
        self.unacked: dict[bytes, None] = {}  # accepted values no one has applied yet
        self.value_index: dict[bytes, int] = {}  # value -> first index it was applied at
        self.next_read = 0
        self.pending_reads: dict[int, int] = {}  # client read -> step of its latest attempt
        self.read_of: dict[bytes, int] = {}  # request context -> client read
        self.hint: NodeId | None = None  # the node the client believes leads
        self.held: dict[NodeId, _Held] = {}  # Readies handed out and not yet advanced
        self.step_no = 0
        self.heal_budget = 0
        for node_id, node in self.nodes.items():
            self.checker.node_started(node_id, node.node().raft, node.disk.hard_state)
        calm = profile.calm_faults
        self._burst_actions = self._weigh(1.0, profile)
        self._calm_actions = self._weigh(calm, profile)
        self.calm = True
        self.phase_end = self._phase_length(calm=True)
        self.fault_scale = calm

    def _weigh(
        self, faults: float, profile: Profile
    ) -> tuple[list[tuple[float, Callable[[], None]]], float]:
        """The action table of a phase whose faults are scaled by ``faults``."""
        actions: list[tuple[float, Callable[[], None]]] = [
            (profile.w_deliver, self._deliver_one),
            (profile.w_ready, self._ready_one),
            (profile.w_tick * (CALM_TICKS if faults < 1.0 else 1.0), self._tick),
            (profile.w_propose, self._propose),
            (profile.w_read, self._read),
            (profile.w_crash * faults, self._crash),
            (profile.w_restart, self._restart),
            (profile.w_partition * faults, self._partition),
            (profile.w_heal, self._heal_network),
            (profile.w_membership, self._membership),
            (profile.w_transfer, self._transfer),
        ]
        actions = [(weight, action) for weight, action in actions if weight > 0]
        return actions, sum(weight for weight, _ in actions)

    def _phase_length(self, calm: bool) -> int:
        base = self.profile.calm_steps if calm else self.profile.burst_steps
        return self.step_no + base + self.rng.randrange(base + 1)

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> SeedResult:
        result = SeedResult(self.seed, self.steps, counters=self.counters)
        try:
            try:
                for step_no in range(self.steps):
                    self.step_no = step_no
                    self._step()
                self.step_no = self.steps
                result.liveness_failure, result.heal_ticks = self._heal_and_wait()
                self.checker.check_all(self._live_rafts())
            except InvariantViolation as violation:
                raise _Violation(violation.invariant, violation.detail) from violation
            except (AssertionError, RaftError) as error:
                raise _Violation("core-error", f"{type(error).__name__}: {error}") from error
        except _Violation as violation:
            result.violation = violation.invariant
            result.message = violation.message
            result.at_step = self.step_no
            result.liveness_failure = None
        result.elections = len(self.checker.leaders)
        result.committed = len(self.value_index)
        self.counters.reads_served = self.checker.reads_served
        self.counters.steps = self.step_no
        return result

    def _log(self, text: str) -> None:
        if self.trace is not None:
            self.trace(f"[{self.step_no}] {text}")

    def _step(self) -> None:
        if self.step_no >= self.phase_end:
            self._next_phase()
        rng = self.rng
        actions, total = self._calm_actions if self.calm else self._burst_actions
        point = rng.random() * total
        for weight, action in actions:
            point -= weight
            if point < 0:
                action()
                return
        actions[-1][1]()

    def _next_phase(self) -> None:
        """Calm gives way to a fault burst; a burst ends by healing everything."""
        self.calm = not self.calm
        if self.calm:
            self._log("burst over: heal")
            self._heal_network()
            for node_id, node in list(self.nodes.items()):
                if node.raw is None:
                    self._restart_node(node_id)
            self.fault_scale = self.profile.calm_faults
        else:
            self._log("fault burst")
            self.counters.bursts += 1
            self.fault_scale = 1.0
        self.phase_end = self._phase_length(self.calm)

    def _live_rafts(self) -> Iterator[tuple[NodeId, Raft]]:
        for node_id, node in self.nodes.items():
            if node.raw is not None:
                yield node_id, node.raw.raft

    def _alive(self) -> list[NodeId]:
        return [node_id for node_id, node in self.nodes.items() if node.raw is not None]

    def _leaders(self) -> list[NodeId]:
        return [
            node_id
            for node_id, node in self.nodes.items()
            if node.raw is not None and node.raw.raft.role == StateRole.LEADER
        ]

    def _leader(self) -> NodeId | None:
        """The live leader of the highest term, if any."""
        best: NodeId | None = None
        best_term = -1
        for node_id in self._leaders():
            term = self.nodes[node_id].node().raft.term
            if term > best_term:
                best, best_term = node_id, term
        return best

    def _observe(self, node_id: NodeId) -> None:
        raw = self.nodes[node_id].raw
        if raw is not None:
            self.checker.observe(node_id, raw.raft)

    # -- actions -------------------------------------------------------------------------------
    def _deliver_one(self) -> None:
        in_flight = self.in_flight
        if not in_flight:
            # Nothing on the wire: the disks finish their work before the clock moves on.
            self._ready_one(idle=True)
            return
        rng = self.rng
        if self.calm:  # a calm network delivers roughly in order, reordering a little
            message = in_flight.pop(rng.randrange(min(len(in_flight), CALM_REORDER_WINDOW)))
        else:  # any message in flight may overtake any other
            position = rng.randrange(len(in_flight))
            message = in_flight[position]
            in_flight[position] = in_flight[-1]
            in_flight.pop()
        profile = self.profile
        scale = self.fault_scale
        if (message.frm, message.to) in self.cut or rng.random() < profile.drop * scale:
            self.counters.dropped += 1
            return
        if rng.random() < profile.duplicate * scale:
            self.counters.duplicated += 1
            in_flight.append(message)
        self._deliver(message)

    def _deliver(self, message: Message) -> None:
        node = self.nodes.get(message.to)
        if node is None or node.raw is None:
            return
        self.counters.delivered += 1
        try:
            node.raw.step(message)
        except RaftError as error:  # e.g. a forwarded read reaching a node that lost leadership
            if type(error).__name__ not in ("ProposalDropped", "ConfChangeRefused"):
                raise
        self.checker.observe(message.to, node.raw.raft)

    def _ready_one(self, idle: bool = False) -> None:
        held = self.held
        candidates = [
            node_id
            for node_id, node in self.nodes.items()
            if node.raw is not None and (node_id in held or node.raw.has_ready())
        ]
        if not candidates:
            self._deliver_one() if self.in_flight and not idle else self._tick()
            return
        node_id = candidates[self.rng.randrange(len(candidates))]
        if node_id in held:
            self._continue_ready(node_id, faults=True)
        else:
            self._handle_ready(node_id, faults=True)

    def _handle_ready(self, node_id: NodeId, faults: bool) -> None:
        """Take a Ready and send what needs nothing durable. With ``faults`` the node may crash
        at any point of the cycle, and the rest of the cycle (persisting, acknowledging,
        applying, ``advance``) may stay outstanding across later steps in which the node keeps
        taking messages, ticks and proposals, as the real node does while its disk writes."""
        node = self.nodes[node_id]
        raw = node.node()
        rd = raw.ready()
        self.counters.readies += 1
        crash_at = -1
        if faults:
            rng = self.rng
            scale = self.fault_scale
            if (
                rd.soft_state is not None
                and rd.soft_state.role == StateRole.LEADER
                and rng.random() < self.profile.new_leader_crash * scale
            ):
                crash_at = rng.randrange(2)  # a leader dies before replicating anything
            elif (
                rd.entries or rd.hard_state is not None or rd.snapshot is not None
            ) and rng.random() < self.profile.ready_crash * scale:
                crash_at = rng.randrange(4)
        disk = node.disk
        if crash_at == 0:
            self._crash_node(node_id, "before sending or persisting anything")
            return
        self.checker.observe_sent(node_id, rd.messages, disk.hard_state, disk.last_index())
        self.cluster.network.send(rd.messages)
        if crash_at == 1:
            self._crash_node(node_id, "after sending, before persisting", lose_outbox=False)
            return
        self.held[node_id] = _Held(rd, crash_at)
        if faults and self.rng.random() < self.profile.hold_ready:
            self.counters.held_readies += 1
            self._log(f"n{node_id} holds a Ready of {len(rd.entries)} entries")
            return
        self._continue_ready(node_id, faults=False)

    def _continue_ready(self, node_id: NodeId, faults: bool) -> None:
        """Finish the outstanding Ready of ``node_id``: persist it and send what needed that,
        then apply and ``advance``; with ``faults`` the apply may wait for another step."""
        held = self.held[node_id]
        if not held.persisted:
            if not self._persist_held(node_id, held):
                return
            if faults and self.rng.random() < self.profile.hold_ready * 0.5:
                return
        self._apply_held(node_id, held)

    def _persist_held(self, node_id: NodeId, held: _Held) -> bool:
        node = self.nodes[node_id]
        rd = held.rd
        disk = node.disk
        checker = self.checker
        node.persist(rd)
        if rd.hard_state is not None or rd.snapshot is not None:
            checker.observe_durable(node_id, disk.hard_state)
        if held.crash_at == 2:
            self._crash_node(node_id, "after persisting, before sending acks", lose_outbox=False)
            return False
        checker.observe_sent(node_id, rd.persisted_messages, disk.hard_state, disk.last_index())
        self.cluster.network.send(rd.persisted_messages)
        held.persisted = True
        if held.crash_at == 3:
            self._crash_node(node_id, "before applying", lose_outbox=False)
            return False
        return True

    def _apply_held(self, node_id: NodeId, held: _Held) -> None:
        node = self.nodes[node_id]
        raw = node.node()
        rd = held.rd
        checker = self.checker
        if rd.committed_entries:
            checker.observe_applied(node_id, rd.committed_entries, raw.raft.log.committed)
        node.apply(rd)
        if rd.committed_entries or rd.snapshot is not None:
            checker.observe_state(node_id, node.sm.applied_index, node.sm.digest)
            self._acknowledge(rd.committed_entries)
        del self.held[node_id]
        raw.advance(rd)
        checker.observe(node_id, raw.raft)
        checker.observe_stable(node_id, raw.raft, node.disk.last_index())
        self._serve_reads(node_id, node)
        profile = self.profile
        if profile.snapshot_threshold and node.maybe_compact(
            profile.snapshot_threshold, profile.snapshot_keep
        ):
            self.counters.compactions += 1

    def _acknowledge(self, entries: Sequence[Entry]) -> None:
        """The client hears "committed" the first time any node applies its value."""
        unacked = self.unacked
        for entry in entries:
            data = entry.data
            if entry.type != EntryType.NORMAL or data not in unacked:
                continue
            del unacked[data]
            self.value_index[data] = entry.index
            self.checker.acknowledge(entry.index, entry.term, data)

    def _serve_reads(self, node_id: NodeId, node: MemNode) -> None:
        if not node.read_states:
            return
        applied = node.sm.applied_index
        waiting = []
        for read_state in node.read_states:
            if read_state.index <= applied:
                context = read_state.request_ctx
                self.checker.read_served(node_id, context, read_state.index)
                read = self.read_of.pop(context, None)
                if read is not None and self.pending_reads.pop(read, None) is not None:
                    self.counters.reads_completed += 1
            else:
                waiting.append(read_state)
        node.read_states = waiting

    def _tick(self) -> None:
        rng = self.rng
        alive = self._alive()
        if not alive:
            self._restart()
            return
        self.counters.ticks += 1
        # Mostly every clock advances together; sometimes one runs ahead (clock drift).
        targets = alive if rng.random() < 0.8 else [alive[rng.randrange(len(alive))]]
        for node_id in targets:
            raw = self.nodes[node_id].node()
            raw.tick()
            raw.flush_commit()  # the node's commit-flush timer, at tick granularity
            self.checker.observe(node_id, raw.raft)

    # -- the client ------------------------------------------------------------------------
    def _client_target(self) -> NodeId | None:
        """Where the client sends a request: mostly the node it believes leads (learned from
        earlier answers), sometimes any live node."""
        alive = self._alive()
        if not alive:
            return None
        rng = self.rng
        hint = self.hint
        if hint is not None and rng.random() < 0.9:
            node = self.nodes.get(hint)
            if node is not None and node.raw is not None:
                return hint
        return alive[rng.randrange(len(alive))]

    def _redirect(self, refused_by: NodeId) -> NodeId | None:
        """A refusal names the leader the refusing node knows of; the client follows it."""
        node = self.nodes[refused_by]
        leader = node.raw.raft.leader_id if node.raw is not None else 0
        target = self.nodes.get(leader)
        if leader == refused_by or target is None or target.raw is None:
            self.hint = None
            return None
        self.hint = leader
        return leader

    def _propose(self) -> None:
        target = self._client_target()
        if target is None:
            return
        rng = self.rng
        count = 1 if rng.random() < 0.7 else 1 + rng.randrange(4)
        values = []
        for _ in range(count):
            self.next_value += 1
            values.append(b"v%d" % self.next_value)
        if self._submit(target, values):
            self.hint = target
            return
        redirect = self._redirect(target)
        if redirect is not None:
            self.counters.redirects += 1
            if self._submit(redirect, values):
                self.hint = redirect

    def _submit(self, node_id: NodeId, values: list[bytes]) -> bool:
        raw = self.nodes[node_id].node()
        self.counters.proposals += len(values)
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
            self.checker.observe(node_id, raw.raft)
        for value in values:
            self.accepted[value] = None
            if value not in self.value_index:
                self.unacked[value] = None
        self._log(f"n{node_id} accepted {len(values)} value(s)")
        return True

    def _read(self) -> None:
        """A new ReadIndex read, or a retry of the oldest one still unanswered after a while
        (the answer may have been lost with a message, a crash or a deposed leader)."""
        target = self._client_target()
        if target is None:
            return
        read = None
        if self.pending_reads:
            oldest = next(iter(self.pending_reads))
            if self.step_no - self.pending_reads[oldest] > READ_RETRY_STEPS:
                read = oldest
                del self.pending_reads[oldest]
        if read is None:
            self.next_read += 1
            read = self.next_read
            self.counters.reads += 1
        self.pending_reads[read] = self.step_no
        if self._read_at(target, read):
            return
        redirect = self._redirect(target)
        if redirect is not None:
            self.counters.redirects += 1
            self._read_at(redirect, read)

    def _read_at(self, node_id: NodeId, read: int) -> bool:
        """One attempt of client read ``read``: a fresh context, checked from now on."""
        self.counters.read_attempts += 1
        context = b"r%d.%d" % (read, self.counters.read_attempts)
        self.read_of[context] = read
        self.checker.read_invoked(context)
        raw = self.nodes[node_id].node()
        try:
            raw.read_index(context)
        except RaftError as error:
            if type(error).__name__ != "ProposalDropped":
                raise
            self.counters.reads_dropped += 1
            return False
        finally:
            self.checker.observe(node_id, raw.raft)
        return True

    def _crash(self) -> None:
        alive = self._alive()
        if not alive:
            return
        # Leaders are the interesting victims: half the crashes go to the current one.
        leader = self._leader()
        if leader is not None and self.rng.random() < 0.5:
            self._crash_node(leader, "")
        else:
            self._crash_node(alive[self.rng.randrange(len(alive))], "")

    def _crash_node(self, node_id: NodeId, when: str, lose_outbox: bool = True) -> None:
        self.counters.crashes += 1
        if when:
            self.counters.ready_crashes += 1
        self._log(f"n{node_id} crashed {when}".rstrip())
        self.nodes[node_id].crash()
        if self.held.pop(node_id, None) is not None and not when:
            self.counters.held_crashes += 1
        # Messages on their way to a crashed process are lost, and so are some it sent that
        # had not left its socket buffers yet (unless the crash comes right after a send that
        # is meant to be on the wire). Filtered in place: the list is the network's.
        loss = self.profile.crash_outbox_loss if lose_outbox else 0.0
        rng = self.rng
        self.in_flight[:] = [
            message
            for message in self.in_flight
            if message.to != node_id and not (message.frm == node_id and rng.random() < loss)
        ]
        self.checker.node_crashed(node_id)

    def _restart(self) -> None:
        down = [node_id for node_id, node in self.nodes.items() if node.raw is None]
        if not down:
            self._tick()
            return
        self._restart_node(down[self.rng.randrange(len(down))])

    def _restart_node(self, node_id: NodeId) -> None:
        self.counters.restarts += 1
        self.cluster.restart(node_id)
        node = self.nodes[node_id]
        self._log(f"n{node_id} restarted at term {node.disk.hard_state.term}")
        self.checker.node_started(node_id, node.node().raft, node.disk.hard_state)

    def _partition(self) -> None:
        rng = self.rng
        ids = list(self.nodes)
        network = self.cluster.network
        self.counters.partitions += 1
        kind = rng.randrange(4)
        if kind == 0:  # symmetric split into two sides
            side = {node_id for node_id in ids if rng.random() < 0.5}
            network.partition([side, set(ids) - side])
            self._log(f"partition {sorted(side)} | {sorted(set(ids) - side)}")
        elif kind == 1:  # isolate one node both ways, most often the leader
            leader = self._leader()
            victim = leader if leader is not None and rng.random() < 0.7 else ids[
                rng.randrange(len(ids))
            ]
            network.isolate(victim, ids)
            self._log(f"isolate n{victim}")
        elif kind == 2:  # asymmetric: a node can send but not receive (or the reverse)
            victim = ids[rng.randrange(len(ids))]
            inbound = rng.random() < 0.5
            for other in ids:
                if other != victim:
                    network.cut(other, victim) if inbound else network.cut(victim, other)
            self._log(f"n{victim} deaf" if inbound else f"n{victim} mute")
        else:  # one directed link
            frm, to = ids[rng.randrange(len(ids))], ids[rng.randrange(len(ids))]
            if frm != to:
                network.cut(frm, to)
                self._log(f"cut n{frm} -> n{to}")

    def _heal_network(self) -> None:
        if self.cut:
            self.counters.heals += 1
            self._log("heal network")
        self.cluster.network.heal()

    def _membership(self) -> None:
        leader = self._leader()
        if leader is None:
            return
        rng = self.rng
        raft = self.nodes[leader].node().raft
        choice = rng.randrange(3)
        if choice == 0 and len(self.nodes) < MAX_NODES:
            change = ConfChange(ConfChangeType.ADD_LEARNER, self.next_node_id)
        elif choice == 1 and raft.learners:
            learners = sorted(raft.learners)
            change = ConfChange(ConfChangeType.ADD_NODE, learners[rng.randrange(len(learners))])
        elif choice == 2 and (len(raft.voters) > 3 or raft.learners):
            # Voters are removed only while more than three remain, so the cluster keeps
            # tolerating a failure; learners can always go.
            removable = raft.voters | raft.learners if len(raft.voters) > 3 else raft.learners
            members = sorted(removable)
            change = ConfChange(ConfChangeType.REMOVE_NODE, members[rng.randrange(len(members))])
        else:
            return
        raw = self.nodes[leader].node()
        try:
            raw.propose_conf_change(change)
        except RaftError as error:
            if type(error).__name__ not in ("ProposalDropped", "ConfChangeRefused"):
                raise
            self.counters.conf_refused += 1
            return
        finally:
            self.checker.observe(leader, raw.raft)
        self.counters.conf_changes += 1
        self._log(f"n{leader} proposed {change.type.name} n{change.node_id}")
        if change.type == ConfChangeType.ADD_LEARNER and change.node_id == self.next_node_id:
            self.next_node_id += 1
            self.cluster.add_empty_node(change.node_id)
            new = self.nodes[change.node_id]
            self.checker.node_started(change.node_id, new.node().raft, new.disk.hard_state)

    def _transfer(self) -> None:
        leader = self._leader()
        if leader is None:
            return
        raw = self.nodes[leader].node()
        voters = sorted(raw.raft.voters - {leader})
        if not voters:
            return
        target = voters[self.rng.randrange(len(voters))]
        self.counters.transfers += 1
        self._log(f"n{leader} transfers leadership to n{target}")
        raw.transfer_leader(target)
        self.checker.observe(leader, raw.raft)

    # -- after the last fault ------------------------------------------------------------------
    def _heal_and_wait(self) -> tuple[str | None, int]:
        """Heal everything, then give the cluster ``heal_ticks`` ticks to catch up."""
        self._log("final heal")
        self.cluster.network.heal()
        for node_id, node in list(self.nodes.items()):
            if node.raw is None:
                self._restart_node(node_id)
        last_leader: NodeId | None = None
        retry_every = self.profile.election_tick
        self.heal_budget = self.counters.delivered + HEAL_MESSAGES_PER_TICK * self.heal_ticks
        for tick in range(self.heal_ticks):
            if self.counters.delivered > self.heal_budget:
                return (
                    f"message storm: more than {HEAL_MESSAGES_PER_TICK * self.heal_ticks} "
                    f"messages within {tick} ticks after the last fault healed",
                    tick,
                )
            self.step_no = self.steps + tick
            for node_id in self._alive():
                raw = self.nodes[node_id].node()
                raw.tick()
                raw.flush_commit()
                self.checker.observe(node_id, raw.raft)
            self._stabilize()
            leader = self._leader()
            if leader is None:
                continue
            missing = self._missing_on(leader)
            if not missing and not self.pending_reads:
                return None, tick + 1
            if leader != last_leader or tick % retry_every == 0:
                last_leader = leader
                if missing:
                    self.counters.retries += len(missing)
                    self._submit(leader, missing)
                else:  # every value is in: each unanswered read is asked again
                    for read in list(self.pending_reads):
                        self.pending_reads[read] = self.step_no
                        self._read_at(leader, read)
                self._stabilize()
        leader = self._leader()
        if leader is None:
            return f"no leader {self.heal_ticks} ticks after the last fault healed", self.heal_ticks
        missing = self._missing_on(leader)
        if not missing:
            return (
                f"{len(self.pending_reads)} read(s) still unanswered {self.heal_ticks} ticks "
                "after the last fault healed",
                self.heal_ticks,
            )
        return (
            f"leader n{leader} still lacks {len(missing)} value(s) (first {missing[0]!r}) "
            f"{self.heal_ticks} ticks after the last fault healed",
            self.heal_ticks,
        )

    def _missing_on(self, leader: NodeId) -> list[bytes]:
        applied = self.nodes[leader].sm.applied_index
        index_of = self.value_index
        return [
            value
            for value in self.accepted
            if value not in index_of or index_of[value] > applied
        ]

    def _stabilize(self, max_rounds: int = 200) -> None:
        """Run every Ready and deliver every message, oldest first, until the cluster is idle."""
        for _ in range(max_rounds):
            busy = False
            for node_id, node in list(self.nodes.items()):
                held = self.held.get(node_id)
                if held is not None:
                    held.crash_at = -1  # no more faults
                    self._continue_ready(node_id, faults=False)
                    busy = True
                while node.raw is not None and node.raw.has_ready():
                    self._handle_ready(node_id, faults=False)
                    busy = True
            if self.in_flight:
                busy = True
                messages = list(self.in_flight)
                self.in_flight.clear()
                for message in messages:
                    self._deliver(message)
                if self.counters.delivered > self.heal_budget:
                    return
            if not busy:
                return


# -- one seed ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunOptions:
    steps: int = DEFAULT_STEPS
    heal_ticks: int = DEFAULT_HEAL_TICKS


def run_seed(seed: int, options: RunOptions = RunOptions()) -> SeedResult:
    return Simulation(seed, options.steps, heal_ticks=options.heal_ticks).run()


__all__ = [
    "DEFAULT_HEAL_TICKS",
    "DEFAULT_SEEDS",
    "DEFAULT_STEPS",
    "Profile",
    "RunOptions",
    "SeedResult",
    "Simulation",
    "run_seed",
]
