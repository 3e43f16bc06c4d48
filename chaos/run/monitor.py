"""The chaos run's view of the cluster: every node's status, leaders seen, elections counted.

Owns: polling ``ClusterStatus`` on every node's *real* client port (never through a proxy, so
network faults do not blind it) on a fixed period, the latest status per node, the leader of
the highest term seen, the list of (term, leader, first seen) elections, and deadline-bounded
waits on those (a leader, convergence of every node's applied index). In a sharded cluster
also each data shard's leader (the replica reporting ``leader`` in the shard's highest term),
the shards each node leads, the node leading the most (the nemesis' target), every change of
a shard's leader (``shard_elections``; leader moves are the changes after the first), and
convergence per shard. Must never: change the
cluster or the network, or write the history; the figures it keeps are observations (an
election that started and ended between two polls is not counted).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from quorumlog.client import errors
from quorumlog.client._grpc import NodeConnection
from quorumlog.proto import quorumlog_pb2 as pb

POLL_SECONDS = 0.25
STATUS_TIMEOUT = 0.75


@dataclass(frozen=True)
class Election:
    term: int
    leader: str
    seen_at: float


@dataclass(frozen=True)
class ShardElection:
    shard: int
    term: int
    leader: str
    seen_at: float


class ClusterMonitor:
    def __init__(self, addresses: dict[str, str], clock: Callable[[], float]) -> None:
        self.addresses = dict(addresses)
        self.clock = clock
        self.statuses: dict[str, pb.NodeStatus | None] = {name: None for name in addresses}
        self.elections: list[Election] = []  # (term, leader) pairs in the order first seen
        self.shard_elections: list[ShardElection] = []  # per shard, in the order first seen
        self._shard_last: dict[int, tuple[int, str]] = {}
        self._connections: dict[str, NodeConnection] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll_forever(),
                                                            name="chaos-monitor")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for connection in self._connections.values():
            await connection.close()
        self._connections.clear()

    async def _poll_forever(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(POLL_SECONDS)  # the polling period, not a wait for an event

    async def status(self, name: str, timeout: float = STATUS_TIMEOUT) -> pb.NodeStatus | None:
        connection = self._connections.get(name)
        if connection is None:
            connection = NodeConnection(self.addresses[name])
            self._connections[name] = connection
        try:
            return await connection.cluster_status(timeout)
        except errors.QuorumLogError:
            return None

    async def poll(self) -> dict[str, pb.NodeStatus | None]:
        names = sorted(self.addresses)
        results = await asyncio.gather(*(self.status(name) for name in names))
        for name, status in zip(names, results, strict=True):
            self.statuses[name] = status
        leader = self.leader
        status = self.statuses.get(leader) if leader is not None else None
        last = self.elections[-1] if self.elections else None
        # A new (term, leader) pair is an election; comparing pairs, not terms, also counts
        # elections after nodes lost their state and reused terms (the canary).
        if status is not None and (last is None or (last.term, last.leader)
                                   != (status.term, status.id)):
            self.elections.append(Election(status.term, status.id, self.clock()))
        for shard, (term, name) in sorted(self.shard_terms().items()):
            if self._shard_last.get(shard) != (term, name):
                self._shard_last[shard] = (term, name)
                self.shard_elections.append(ShardElection(shard, term, name, self.clock()))
        return dict(self.statuses)

    # -- shards ----------------------------------------------------------------------------
    @property
    def shard_count(self) -> int:
        """The cluster's data shards as the nodes report them (1 until one answers)."""
        return max((status.shard_count for status in self.statuses.values()
                    if status is not None), default=1) or 1

    def shard_terms(self) -> dict[int, tuple[int, str]]:
        """Data shard -> (term, node) of the replica leading it in the highest term seen
        now; empty with one shard."""
        if self.shard_count <= 1:
            return {}
        found: dict[int, tuple[int, str]] = {}
        for status in self.statuses.values():
            if status is None:
                continue
            for shard in status.shards:
                if shard.role == "leader" and (shard.shard not in found
                                               or shard.term > found[shard.shard][0]):
                    found[shard.shard] = (shard.term, status.id)
        return found

    def shard_leaders(self) -> dict[int, str]:
        """Data shard -> the node leading it now (shards without a known leader left out)."""
        return {shard: name for shard, (_, name) in self.shard_terms().items()}

    def leader_counts(self) -> dict[str, int]:
        """Node -> data shards it leads now (every node listed, 0 included)."""
        counts = {name: 0 for name in sorted(self.addresses)}
        for name in self.shard_leaders().values():
            counts[name] = counts.get(name, 0) + 1
        return counts

    def busiest(self) -> str | None:
        """The node leading the most data shards (ties: the smallest name); None with one
        shard or when no shard has a leader."""
        counts = self.leader_counts()
        if not any(counts.values()):
            return None
        return min(counts, key=lambda name: (-counts[name], name))

    def shards_led(self) -> bool:
        """Every data shard has a leader (always true with one shard)."""
        return len(self.shard_leaders()) == self.shard_count if self.shard_count > 1 else True

    def leader_moves(self) -> dict[int, int]:
        """Data shard -> how often its leader moved to another node after first seen."""
        moves: dict[int, int] = {shard: 0 for shard in range(self.shard_count)}
        last: dict[int, str] = {}
        for election in self.shard_elections:
            if last.get(election.shard, election.leader) != election.leader:
                moves[election.shard] = moves.get(election.shard, 0) + 1
            last[election.shard] = election.leader
        return dict(sorted(moves.items()))

    def shard_election_counts(self) -> dict[int, int]:
        """Data shard -> new (term, leader) pairs seen after the first (elections)."""
        counts: dict[int, int] = {shard: 0 for shard in range(self.shard_count)}
        seen: set[int] = set()
        for election in self.shard_elections:
            if election.shard in seen:
                counts[election.shard] = counts.get(election.shard, 0) + 1
            seen.add(election.shard)
        return dict(sorted(counts.items()))

    def shards_converged(self) -> bool:
        """Per data shard: every replica reachable, one leader known by all, and every
        replica's applied index equal to one commit index (always true with one shard)."""
        if self.shard_count <= 1:
            return True
        reachable = [status for status in self.statuses.values() if status is not None]
        for shard in range(self.shard_count):
            views = [view for status in reachable for view in status.shards
                     if view.shard == shard and view.role]
            replicas = {name for status in reachable for view in status.shards
                        if view.shard == shard for name in view.replicas}
            hosting = {status.id for status in reachable for view in status.shards
                       if view.shard == shard and view.role}
            if not views or not replicas <= hosting:
                return False
            commits = {view.commit_index for view in views}
            applied = {view.applied_index for view in views}
            leaders = {view.leader for view in views}
            if len(commits) != 1 or applied != commits or len(leaders) != 1 or "" in leaders:
                return False
        return True

    @property
    def leader(self) -> str | None:
        """The node that reports itself leader in the highest term among reachable nodes."""
        leaders = [status for status in self.statuses.values()
                   if status is not None and status.role == "leader"]
        if not leaders:
            return None
        return max(leaders, key=lambda status: status.term).id

    @property
    def max_term(self) -> int:
        return max((status.term for status in self.statuses.values() if status is not None),
                   default=0)

    async def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Poll until ``condition()`` holds (True) or ``timeout`` seconds pass (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if condition():
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await self.poll()
            if condition():
                return True
            await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - loop.time())))

    async def wait_leader(self, timeout: float, exclude: tuple[str, ...] = ()) -> str | None:
        found: list[str] = []

        def has_leader() -> bool:
            leader = self.leader
            if leader is not None and leader not in exclude:
                found.append(leader)
                return True
            return False

        return found[-1] if await self.wait_for(has_leader, timeout) else None

    def converged(self) -> bool:
        """Every node reachable, one leader, and every applied index equal to its commit."""
        statuses = list(self.statuses.values())
        if any(status is None for status in statuses):
            return False
        reachable = [status for status in statuses if status is not None]
        commits = {status.commit_index for status in reachable}
        applied = {status.applied_index for status in reachable}
        leaders = {status.leader for status in reachable}
        return (len(commits) == 1 and applied == commits and len(leaders) == 1
                and "" not in leaders and self.shards_converged())
