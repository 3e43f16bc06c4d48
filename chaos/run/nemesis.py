"""The chaos run's nemesis: injects each scheduled fault, holds it, heals it, waits to recover.

Owns: turning a :class:`~quorumlog.chaos.run.faults.FaultPlan` into actions on the network
(``quorumlog.chaos.run.network``) and the node processes (``quorumlog.chaos.run.processes``),
resolving its targets at run time (the leader, a follower, a pair) from the monitor, writing
the fault's ``start`` / ``end`` events to the history, healing in a ``finally`` (so a fault
never outlives its step), waiting (with deadlines) for a leader and an acknowledged operation
after the heal, and a :class:`FaultRecord` per fault with notes (e.g. whether the leader
compacted past a blackholed follower and the follower then installed a snapshot). Must
never: judge the history, run a workload, or wait without a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from quorumlog.chaos.run.faults import FINAL_FAULT, FaultPlan, candidates_pick
from quorumlog.chaos.run.monitor import ClusterMonitor
from quorumlog.chaos.run.network import STREAMS, ChaosNetwork
from quorumlog.chaos.run.processes import ChaosNodes
from quorumlog.chaos.run.workload import Recorder
from quorumlog.client.errors import AlreadyExists, FailedPrecondition, QuorumLogError
from quorumlog.client.sdk import AsyncClient

LEADER_TIMEOUT = 30.0  # seconds to wait for a leader before a fault
RECOVER_TIMEOUT = 30.0  # seconds to wait for a leader and an acknowledged op after a heal
SETTLE_SECONDS = 1.0  # quiet time between a recovery and the next fault
CATCH_UP_TIMEOUT = 30.0
MEMBERSHIP_DEADLINE = 30.0  # seconds for one remove / add call, retries included
ADD_BACK_PAUSE = 0.2  # seconds between re-add attempts refused for a pending change


@dataclass
class FaultRecord:
    number: int
    kind: str
    target: str | None
    start: float
    end: float | None = None
    leader_before: str | None = None
    leader_after: str | None = None
    recovered_in: float | None = None  # heal -> leader and an acknowledged op; None: never
    notes: list[str] = field(default_factory=list)
    params: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"number": self.number, "fault": self.kind, "target": self.target,
                "start": self.start, "end": self.end, "params": dict(self.params),
                "leader_before": self.leader_before, "leader_after": self.leader_after,
                "recovered_in_s": self.recovered_in, "notes": list(self.notes)}


class Nemesis:
    def __init__(self, network: ChaosNetwork, nodes: ChaosNodes, monitor: ClusterMonitor,
                 recorder: Recorder, log: Callable[[str], None]) -> None:
        self.network = network
        self.nodes = nodes
        self.monitor = monitor
        self.recorder = recorder
        self.log = log
        self.records: list[FaultRecord] = []
        self.active: FaultRecord | None = None
        self.skipped: list[str] = []

    @property
    def clock(self) -> Callable[[], float]:
        return self.recorder.clock

    async def run(self, scheduler: Iterator[FaultPlan], end_at: float) -> None:
        """Inject plans from ``scheduler`` while the next one still fits before ``end_at``."""
        for plan in scheduler:
            if self.clock() + estimated_seconds(plan) > end_at:
                self.skipped.append(plan.kind)
                return
            await self.inject(plan)

    # -- one fault ---------------------------------------------------------------------------
    async def inject(self, plan: FaultPlan) -> FaultRecord:
        leader = await self.monitor.wait_leader(LEADER_TIMEOUT)
        leader_or_any = leader or candidates_pick(self.nodes.names, plan.pick)
        followers = [name for name in self.nodes.names if name != leader_or_any]
        action = getattr(self, f"_fault_{plan.kind}")
        target = self._target(plan, leader_or_any, followers)
        record = FaultRecord(plan.number, plan.kind, target, self.clock(),
                             leader_before=leader, params=dict(plan.params))
        if leader is None:
            record.notes.append("no leader when the fault started")
        self.active = record
        self.recorder.writer.fault(plan.kind, "start", record.start, target)
        self.log(f"fault {plan.describe()} on {target}: start")
        try:
            await action(plan, record, leader_or_any)
        finally:
            await self._heal_all()
            record.end = self.clock()
            self.recorder.writer.fault(plan.kind, "end", record.end, target)
            self.active = None
        await self._recover(record)
        self.records.append(record)
        self.log(f"fault #{plan.number} {plan.kind} healed; "
                 + (f"recovered in {record.recovered_in:.1f}s" if record.recovered_in is not None
                    else "NOT recovered") + (f" ({'; '.join(record.notes)})" if record.notes
                                             else ""))
        return record

    def _target(self, plan: FaultPlan, leader: str, followers: list[str]) -> str | None:
        kind = plan.kind
        if kind in ("isolate_leader", "kill_leader", "pause_leader", "pause_then_kill",
                    "client_timeout"):
            return leader
        if kind in ("isolate_follower", "compaction", "membership"):
            return candidates_pick(followers, plan.pick)
        if kind == "kill_two":
            return f"{leader},{candidates_pick(followers, plan.pick)}"
        if kind == "asymmetric":
            follower = candidates_pick(followers, plan.pick)
            pair = (leader, follower) if plan.pick % 2 == 0 else (follower, leader)
            return f"{pair[0]}->{pair[1]}"
        if kind in ("latency", "bandwidth", "slicer"):
            return "peer links"
        if kind == "client_reset":
            return "client links"
        return "all"

    async def _hold(self, seconds: float) -> None:
        await asyncio.sleep(seconds)  # the fault's scheduled duration, not a wait for an event

    async def _net(self, call: Callable[[], None]) -> None:
        await asyncio.to_thread(call)

    async def _heal_all(self) -> None:
        await self._net(self.network.heal)
        for name in self.nodes.names:
            if self.nodes.paused(name):
                self.nodes.resume(name)
            if not self.nodes.alive(name):
                self.nodes.start(name)

    async def _recover(self, record: FaultRecord) -> None:
        healed = record.end if record.end is not None else self.clock()

        def recovered() -> bool:
            return (self.monitor.leader is not None
                    and self.recorder.counters.last_ok > healed)

        if await self.monitor.wait_for(recovered, RECOVER_TIMEOUT):
            record.recovered_in = self.clock() - healed
        record.leader_after = self.monitor.leader
        await asyncio.sleep(SETTLE_SECONDS)  # quiet time between faults, not a wait

    # -- the faults (one method per kind: _fault_<kind>; targets resolved in _target) --------
    async def _cut_target(self, plan: FaultPlan, record: FaultRecord, leader: str) -> None:
        target = record.target or leader
        await self._net(lambda: self.network.cut(self.network.links_of(target)))
        await self._hold(plan.hold)

    _fault_isolate_leader = _fault_isolate_follower = _cut_target

    async def _fault_asymmetric(self, plan: FaultPlan, record: FaultRecord, leader: str) -> None:
        source, target = (record.target or "").split("->")
        await self._net(lambda: self.network.cut([(source, target)]))
        await self._hold(plan.hold)

    async def _peer_toxic(self, plan: FaultPlan, record: FaultRecord, leader: str) -> None:
        # A bandwidth limit on the direction that carries the appends is enough.
        streams = ("upstream",) if plan.kind == "bandwidth" else STREAMS
        await self._net(lambda: self.network.peer_toxic(plan.kind, plan.params, streams))
        await self._hold(plan.hold)

    _fault_latency = _fault_bandwidth = _fault_slicer = _peer_toxic

    async def _fault_client_reset(self, plan: FaultPlan, record: FaultRecord,
                                  leader: str) -> None:
        # Downstream: requests reach the node, replies are cut off -> unknown outcomes.
        await self._net(lambda: self.network.client_toxic(
            self.nodes.names, "reset_peer", plan.params, "downstream", toxicity=0.5))
        await self._hold(plan.hold)

    async def _fault_client_timeout(self, plan: FaultPlan, record: FaultRecord,
                                    leader: str) -> None:
        await self._net(lambda: self.network.client_toxic(
            [leader], "timeout", plan.params, "upstream"))
        await self._hold(plan.hold)

    async def _kill(self, names: list[str]) -> None:
        await asyncio.to_thread(self.nodes.kill, names)

    async def _kill_targets(self, plan: FaultPlan, record: FaultRecord, leader: str) -> None:
        target = record.target or leader
        await self._kill(self.nodes.names if target == "all" else target.split(","))
        await self._hold(plan.hold)

    _fault_kill_leader = _fault_kill_two = _fault_kill_all = _kill_targets

    async def _fault_pause_leader(self, plan: FaultPlan, record: FaultRecord,
                                  leader: str) -> None:
        self.nodes.pause(leader)
        await self._hold(plan.hold)

    async def _fault_pause_then_kill(self, plan: FaultPlan, record: FaultRecord,
                                     leader: str) -> None:
        self.nodes.pause(leader)
        await self._hold(plan.hold)
        await self._kill([leader])
        await self._hold(1.0)

    async def _fault_compaction(self, plan: FaultPlan, record: FaultRecord,
                                leader: str) -> None:
        target = record.target or leader
        await self.monitor.poll()
        before = self.monitor.statuses.get(target)
        if before is None:
            record.notes.append(f"{target} unreachable before the fault")
            await self._hold(3.0)
            return
        follower_last = before.last_index
        follower_snapshot = before.snapshot_index
        await self._net(lambda: self.network.blackhole(self.network.links_of(target)))

        def compacted_past() -> bool:
            leader_name = self.monitor.leader
            status = self.monitor.statuses.get(leader_name) if leader_name else None
            return status is not None and status.first_index > follower_last + 1

        if await self.monitor.wait_for(compacted_past, plan.hold):
            leader_name = self.monitor.leader or leader
            first = self.monitor.statuses[leader_name]
            first_index = first.first_index if first is not None else 0
            record.notes.append(f"leader {leader_name} compacted to first index {first_index}, "
                                f"past {target}'s last index {follower_last}")
        else:
            record.notes.append(f"leader did not compact past {target}'s last index "
                                f"{follower_last} within {plan.hold:.0f}s")
            return
        await self._net(self.network.heal)

        def caught_up() -> bool:
            status = self.monitor.statuses.get(target)
            leader_name = self.monitor.leader
            leader_status = self.monitor.statuses.get(leader_name) if leader_name else None
            return (status is not None and leader_status is not None
                    and status.snapshot_index > follower_last
                    and status.applied_index >= leader_status.first_index)

        if await self.monitor.wait_for(caught_up, CATCH_UP_TIMEOUT):
            after = self.monitor.statuses[target]
            snapshot_index = after.snapshot_index if after is not None else 0
            record.notes.append(f"{target} caught up through a snapshot (snapshot index "
                                f"{follower_snapshot} -> {snapshot_index})")
        else:
            record.notes.append(f"{target} did not catch up within {CATCH_UP_TIMEOUT:.0f}s")

    async def _fault_membership(self, plan: FaultPlan, record: FaultRecord,
                                leader: str) -> None:
        """Remove a follower from the configuration, hold, then add it back (learner first,
        promoted once caught up) at the same addresses. Admin calls go to the nodes' real
        client ports: this is the operator's hand, not the workload's traffic."""
        target = record.target or leader
        node = self.nodes.nodes[target]
        admin = AsyncClient([other.client_addr for other in self.nodes.nodes.values()],
                            deadline=MEMBERSHIP_DEADLINE)
        try:
            try:
                index = await admin.remove_node(target)
                record.notes.append(f"removed {target} at index {index}")
            except QuorumLogError as error:
                # Its outcome may be unknown (a leader change mid-call), or an earlier fault
                # left the node out: adding it back heals both.
                record.notes.append(f"remove failed: {type(error).__name__}: {error}")
            await self._hold(plan.hold)
            await add_back(admin, target, node.peer_addr, node.client_addr, record.notes)
        finally:
            await admin.close()

    # -- the final phase ---------------------------------------------------------------------
    async def restart_all(self) -> FaultRecord:
        """Heal everything, then stop every node cleanly and start them all again."""
        await self._heal_all()
        record = FaultRecord(len(self.records) + 1, FINAL_FAULT, "all", self.clock(),
                             leader_before=self.monitor.leader)
        self.active = record
        self.recorder.writer.fault(FINAL_FAULT, "start", record.start, "all")
        self.log("final: restart of all nodes")
        try:
            await asyncio.to_thread(self.nodes.terminate, self.nodes.names)
        finally:
            self.nodes.start_all()
            record.end = self.clock()
            self.recorder.writer.fault(FINAL_FAULT, "end", record.end, "all")
            self.active = None
        await self._recover(record)
        self.records.append(record)
        return record


async def add_back(admin: AsyncClient, target: str, peer_addr: str, client_addr: str,
                   notes: list[str], *, deadline: float = MEMBERSHIP_DEADLINE,
                   pause: float = ADD_BACK_PAUSE) -> bool:
    """Add ``target`` back as a voter; True once it is one. A refusal while the previous
    membership change is not applied yet (FAILED_PRECONDITION: a retried removal can leave a
    second change in flight) is retried until ``deadline`` seconds have passed; a node that is
    still a voter (ALREADY_EXISTS) never left."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        try:
            added = await admin.add_node(target, peer_addr, client_addr)
        except AlreadyExists as error:
            notes.append(f"{target} is still a member: {error}")
            return True
        except FailedPrecondition as error:
            if loop.time() + pause >= end:
                notes.append(f"re-adding {target} failed: FailedPrecondition: {error}")
                return False
            await asyncio.sleep(pause)  # pacing while the previous change is applied
            continue
        except QuorumLogError as error:
            notes.append(f"re-adding {target} failed: {type(error).__name__}: {error}")
            return False
        notes.append(
            f"re-added {target}: learner at {added.learner_index}, voter at "
            f"{added.voter_index}, caught up in {added.catch_up_seconds:.2f}s")
        return True


def estimated_seconds(plan: FaultPlan) -> float:
    """A fault's likely length with its recovery, to decide whether it still fits."""
    hold = min(plan.hold, 12.0) if plan.kind == "compaction" else plan.hold
    return hold + 4.0
