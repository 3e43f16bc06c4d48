"""The chaos run's nemesis: injects each scheduled fault, holds it, heals it, waits to recover.

Owns: turning a :class:`~quorumlog.chaos.run.faults.FaultPlan` into actions on the network
(``quorumlog.chaos.run.network``) and the node processes (``quorumlog.chaos.run.processes``),
resolving its targets at run time (the leader, a follower, a pair) from the monitor, writing
the fault's ``start`` / ``end`` events to the history, healing in a ``finally`` (so a fault
never outlives its step), waiting (with deadlines) for a leader and an acknowledged operation
after the heal, and a :class:`FaultRecord` per fault with notes (e.g. whether the leader
compacted past a blackholed follower and the follower then installed a snapshot).

Sharded clusters: the faults aimed at "the leader" (isolate, asymmetric, kill, pause, pause
then kill, client timeout) hit the node leading the most data shards (from the monitor's
``ClusterStatus`` polls; ties: the smallest name), so one fault moves several shards'
leaders at once; a recovery also waits until every shard has a leader again; each record
notes the shards its target led and the leaders per node after; ``compaction`` blackholes a
follower until some shard's leader reports it further behind than the leader's compaction
keeps (``COMPACTION_LAG``), then heals and waits until every shard has caught it up. Must
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
from quorumlog.chaos.run.storage_faults import StorageFaults
from quorumlog.chaos.run.workload import Recorder
from quorumlog.client.errors import AlreadyExists, FailedPrecondition, QuorumLogError
from quorumlog.client.sdk import AsyncClient

LEADER_TIMEOUT = 30.0  # seconds to wait for a leader before a fault
RECOVER_TIMEOUT = 30.0  # seconds to wait for a leader and an acknowledged op after a heal
SETTLE_SECONDS = 1.0  # quiet time between a recovery and the next fault
CATCH_UP_TIMEOUT = 30.0
MEMBERSHIP_DEADLINE = 30.0  # seconds for one remove / add call, retries included
ADD_BACK_PAUSE = 0.2  # seconds between re-add attempts refused for a pending change
# A follower this many entries behind a shard's leader is behind its compaction point: the
# run's nodes snapshot every 200 entries and keep 20 (``runner.NODE_ARGS``).
COMPACTION_LAG = 220
CAUGHT_UP_LAG = 50  # entries: a follower this close to a shard's leader has caught up
LEADER_KINDS = ("isolate_leader", "kill_leader", "pause_leader", "pause_then_kill",
                "client_timeout", "kill_two", "asymmetric")


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
    # sharded runs: data shards each node led when the fault started / after the recovery
    shard_leaders_before: dict[str, int] | None = None
    shard_leaders_after: dict[str, int] | None = None

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "number": self.number, "fault": self.kind, "target": self.target,
            "start": self.start, "end": self.end, "params": dict(self.params),
            "leader_before": self.leader_before, "leader_after": self.leader_after,
            "recovered_in_s": self.recovered_in, "notes": list(self.notes)}
        if self.shard_leaders_before is not None:
            data["shard_leaders_before"] = dict(self.shard_leaders_before)
            data["shard_leaders_after"] = dict(self.shard_leaders_after or {})
        return data


class Nemesis:
    def __init__(self, network: ChaosNetwork, nodes: ChaosNodes, monitor: ClusterMonitor,
                 recorder: Recorder, log: Callable[[str], None], *,
                 storage: StorageFaults | None = None) -> None:
        self.storage = storage  # the storage faults (None: the nodes' disks are plain)
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

    @property
    def sharded(self) -> bool:
        return self.monitor.shard_count > 1

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
        busiest = self.monitor.busiest() if self.sharded else None
        leader_or_any = busiest or leader or candidates_pick(self.nodes.names, plan.pick)
        followers = [name for name in self.nodes.names if name != leader_or_any]
        if busiest is not None and len(followers) > 1:
            # sharded: "a follower" also spares the meta group's leader when it can
            followers = [name for name in followers if name != leader] or followers
        action = getattr(self, f"_fault_{plan.kind}")
        target = self._target(plan, leader_or_any, followers)
        record = FaultRecord(plan.number, plan.kind, target, self.clock(),
                             leader_before=leader, params=dict(plan.params))
        if leader is None:
            record.notes.append("no leader when the fault started")
        if self.sharded:
            record.shard_leaders_before = self.monitor.leader_counts()
            led = sorted(shard for shard, name in self.monitor.shard_leaders().items()
                         if name == leader_or_any)
            if plan.kind in LEADER_KINDS:
                record.notes.append(f"{leader_or_any} led shards {led} of "
                                    f"{self.monitor.shard_count} (the most)")
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
        if kind in ("power_loss", "disk_full"):
            scope = plan.params.get("scope", 1)
            return leader if scope == 0 else (
                candidates_pick(followers, plan.pick) if scope == 1 else "all")
        if kind == "fsync_error":
            return leader if plan.pick % 2 == 0 else candidates_pick(followers, plan.pick)
        if kind == "bitrot":
            return candidates_pick(followers, plan.pick)
        if kind in ("latency", "bandwidth", "slicer"):
            return "peer links"
        if kind == "client_reset":
            return "client links"
        return "all"

    async def _hold(self, seconds: float) -> None:
        await asyncio.sleep(seconds)  # the fault's scheduled duration, not a wait for an event

    async def hold_for(self, seconds: float) -> None:
        """Hold a fault ``seconds`` (the storage faults' hold)."""
        await self._hold(seconds)

    async def _net(self, call: Callable[[], None]) -> None:
        await asyncio.to_thread(call)

    async def _heal_all(self) -> None:
        await self._net(self.network.heal)
        if self.storage is not None:
            await self.storage.clear()
        for name in self.nodes.names:
            if self.nodes.paused(name):
                self.nodes.resume(name)
            if not self.nodes.alive(name):
                self.nodes.start(name)

    async def _recover(self, record: FaultRecord) -> None:
        healed = record.end if record.end is not None else self.clock()

        def recovered() -> bool:
            return (self.monitor.leader is not None and self.monitor.shards_led()
                    and self.recorder.counters.last_ok > healed)

        if await self.monitor.wait_for(recovered, RECOVER_TIMEOUT):
            record.recovered_in = self.clock() - healed
        record.leader_after = self.monitor.leader
        if self.sharded:
            record.shard_leaders_after = self.monitor.leader_counts()
            if not self.monitor.shards_led():
                unled = sorted(set(range(self.monitor.shard_count))
                               - set(self.monitor.shard_leaders()))
                record.notes.append(f"shards without a leader after the recovery: {unled}")
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
        if self.sharded:
            await self._shard_compaction(plan, record, target)
            return
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

    def _lags(self, target: str) -> dict[int, int]:
        """Data shard -> ``target``'s lag as the shard's leader reports it (shards whose
        leader is ``target`` or unknown left out)."""
        lags: dict[int, int] = {}
        leaders = self.monitor.shard_leaders()
        for shard, name in leaders.items():
            status = self.monitor.statuses.get(name)
            if status is None or name == target:
                continue
            for view in status.shards:
                if view.shard != shard:
                    continue
                for progress in view.followers:
                    if progress.id == target:
                        lags[shard] = progress.lag
        return lags

    async def _shard_compaction(self, plan: FaultPlan, record: FaultRecord,
                                target: str) -> None:
        """Blackhole ``target`` until some shard's leader has it ``COMPACTION_LAG`` entries
        behind (past that leader's compaction point), heal, wait until every shard caught
        it up (through a snapshot where it was past the compaction point). It starts caught
        up, so a lag left by an earlier fault does not pass for this one's."""

        def level() -> bool:
            lags = self._lags(target)
            return bool(lags) and all(lag <= CAUGHT_UP_LAG for lag in lags.values())

        if not await self.monitor.wait_for(level, CATCH_UP_TIMEOUT):
            record.notes.append(f"{target} was still behind before the fault: lags "
                                f"{self._lags(target)}")
        await self._net(lambda: self.network.blackhole(self.network.links_of(target)))
        behind: list[tuple[int, int]] = []

        def compacted_past() -> bool:
            behind[:] = sorted((shard, lag) for shard, lag in self._lags(target).items()
                               if lag > COMPACTION_LAG)
            return bool(behind)

        if not await self.monitor.wait_for(compacted_past, plan.hold):
            record.notes.append(f"no shard left {target} more than {COMPACTION_LAG} entries "
                                f"behind within {plan.hold:.0f}s")
            return
        record.notes.append(f"{target} fell past the compaction point of shard(s) "
                            + ", ".join(f"{shard} (lag {lag})" for shard, lag in behind))
        await self._net(self.network.heal)

        def caught_up() -> bool:
            lags = self._lags(target)
            return (self.monitor.shards_led() and all(shard in lags for shard, _ in behind)
                    and all(lag <= CAUGHT_UP_LAG for lag in lags.values()))

        if await self.monitor.wait_for(caught_up, CATCH_UP_TIMEOUT):
            record.notes.append(f"{target} caught up on every shard (lag <= {CAUGHT_UP_LAG})")
        else:
            record.notes.append(f"{target} did not catch up within {CATCH_UP_TIMEOUT:.0f}s: "
                                f"lags {self._lags(target)}")

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

    # -- storage faults (quorumlog.chaos.run.storage_faults) ----------------------------------
    def _storage(self) -> StorageFaults:
        if self.storage is None:
            raise RuntimeError("a storage fault needs the nodes' fault filesystems")
        return self.storage

    async def _fault_power_loss(self, plan: FaultPlan, record: FaultRecord, leader: str) -> None:
        await self._storage().power_loss(plan, record)

    async def _fault_fsync_error(self, plan: FaultPlan, record: FaultRecord, leader: str) -> None:
        await self._storage().fsync_error(plan, record)

    async def _fault_disk_full(self, plan: FaultPlan, record: FaultRecord, leader: str) -> None:
        await self._storage().disk_full(plan, record)

    async def _fault_bitrot(self, plan: FaultPlan, record: FaultRecord, leader: str) -> None:
        await self._storage().bitrot(plan, record)

    # -- the final phase ---------------------------------------------------------------------
    async def restart_all(self) -> FaultRecord:
        """Heal everything, then stop every node cleanly and start them all again."""
        await self._heal_all()
        record = FaultRecord(len(self.records) + 1, FINAL_FAULT, "all", self.clock(),
                             leader_before=self.monitor.leader)
        if self.sharded:
            record.shard_leaders_before = self.monitor.leader_counts()
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
    if plan.kind in ("fsync_error", "bitrot"):
        hold += 4.0  # the node stops (or is stopped) and starts again within the fault
    return hold + 4.0
