"""``quorumlog bench-core``: how fast the pure Raft core commits, with no I/O at all.

Owns: a minimal driver for 3 (or N) ``RawNode`` instances over ``MemoryStorage`` in one
process, two workloads (batched proposals; one proposal at a time, waiting for commit) and a
memory check (resident set size as the log grows while snapshots compact it). Must never:
run unbounded (every loop stops at a count and a deadline) or be imported by the core.

The driver is deliberately thin (persist = list append, apply = count) so the figures measure
the core rather than a test harness.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import asdict, dataclass

from quorumlog.raft import Config, Message, RawNode, StateRole, bootstrap_memory_storage
from quorumlog.raft.storage import MemoryStorage

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc), 0 where unavailable."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except OSError:
        return 0


class CoreCluster:
    """N RawNodes wired directly: messages are delivered in rounds, FIFO, never lost."""

    def __init__(self, size: int, seed: int, snapshot_every: int, max_inflight: int) -> None:
        voters = tuple(range(1, size + 1))
        self.storages: dict[int, MemoryStorage] = {}
        self.nodes: dict[int, RawNode] = {}
        self.applied: dict[int, int] = {}
        self.snapshot_every = snapshot_every
        for node_id in voters:
            storage = bootstrap_memory_storage(voters)
            self.storages[node_id] = storage
            config = Config(
                id=node_id,
                rng=random.Random(seed * 31 + node_id),
                applied=1,
                max_inflight_msgs=max_inflight,
            )
            self.nodes[node_id] = RawNode(config, storage)
            self.applied[node_id] = 1
        self.inbox: list[Message] = []

    def round(self) -> int:
        """Handle every node's Ready once, then deliver everything sent; returns messages."""
        outbox: list[Message] = []
        for node_id, node in self.nodes.items():
            if not node.has_ready():
                continue
            storage = self.storages[node_id]
            rd = node.ready()
            outbox.extend(rd.messages)
            if rd.snapshot is not None:
                storage.apply_snapshot(rd.snapshot)
            if rd.entries:
                storage.append(rd.entries)
            if rd.hard_state is not None:
                storage.set_hard_state(rd.hard_state)
            outbox.extend(rd.persisted_messages)
            if rd.committed_entries:
                self.applied[node_id] = rd.committed_entries[-1].index
            node.advance(rd)
            self._maybe_compact(node_id, node, storage)
        nodes = self.nodes
        for message in outbox:
            nodes[message.to].step(message)
        return len(outbox)

    def _maybe_compact(self, node_id: int, node: RawNode, storage: MemoryStorage) -> None:
        if self.snapshot_every <= 0:
            return
        applied = self.applied[node_id]
        if applied - storage.snapshot().metadata.index < self.snapshot_every:
            return
        storage.create_snapshot(applied, node.raft.conf_state(), b"")
        # Keep a short tail so a slightly lagging follower still catches up from the log.
        keep = applied - self.snapshot_every // 2
        if keep > storage.first_index():
            storage.compact(keep)

    def elect(self, node_id: int) -> RawNode:
        leader = self.nodes[node_id]
        leader.campaign()
        for _ in range(100):
            self.round()
            if leader.raft.role == StateRole.LEADER and leader.raft.log.committed > 1:
                return leader
        raise RuntimeError("no leader elected")


@dataclass
class BatchedResult:
    entries: int
    seconds: float
    entries_per_second: float
    batch: int


@dataclass
class SequentialResult:
    round_trips: int
    seconds: float
    round_trips_per_second: float
    mean_rounds: float


@dataclass
class MemoryResult:
    entries: int
    rss_mb_samples: list[float]
    growth_mb: float
    log_entries_retained: int


def run_batched(
    entries: int, batch: int, size: int, seconds: float, window: int = 8
) -> BatchedResult:
    """Keep ``window`` batches in flight; count entries the leader has applied."""
    cluster = CoreCluster(3, seed=1, snapshot_every=50_000, max_inflight=256)
    leader = cluster.elect(1)
    payloads = [os.urandom(size) for _ in range(batch)]
    start_applied = cluster.applied[1]
    target = start_applied + entries
    proposed = leader.raft.log.last_index()
    started = time.perf_counter()
    deadline = started + seconds
    while cluster.applied[1] < target and time.perf_counter() < deadline:
        while proposed - cluster.applied[1] < window * batch and proposed < target:
            _, _, proposed = leader.propose_batch(payloads)
        cluster.round()
    elapsed = time.perf_counter() - started
    done = cluster.applied[1] - start_applied
    return BatchedResult(done, elapsed, done / elapsed, batch)


def run_sequential(count: int, size: int, seconds: float) -> SequentialResult:
    """Propose one entry, run rounds until the leader commits it, repeat."""
    cluster = CoreCluster(3, seed=2, snapshot_every=50_000, max_inflight=256)
    leader = cluster.elect(1)
    payload = os.urandom(size)
    rounds = 0
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    log = leader.raft.log
    while done < count and time.perf_counter() < deadline:
        _, index = leader.propose(payload)
        while log.committed < index:
            cluster.round()
            rounds += 1
        done += 1
    # Let the last commit reach followers so nothing is left half-done.
    for _ in range(5):
        cluster.round()
    elapsed = time.perf_counter() - started
    return SequentialResult(done, elapsed, done / elapsed, rounds / max(done, 1))


def run_memory(entries: int, size: int, seconds: float, samples: int = 5) -> MemoryResult:
    """Commit ``entries`` with compaction on; sample RSS after each fifth of the work."""
    cluster = CoreCluster(3, seed=3, snapshot_every=20_000, max_inflight=256)
    leader = cluster.elect(1)
    batch = 64
    payload = [os.urandom(size) for _ in range(batch)]
    marks = [entries * (k + 1) // samples for k in range(samples)]
    rss: list[float] = []
    started_applied = cluster.applied[1]
    proposed = leader.raft.log.last_index()
    deadline = time.perf_counter() + seconds
    for mark in marks:
        target = started_applied + mark
        while cluster.applied[1] < target and time.perf_counter() < deadline:
            while proposed - cluster.applied[1] < 8 * batch and proposed < target:
                _, _, proposed = leader.propose_batch(payload)
            cluster.round()
        rss.append(rss_bytes() / 1e6)
    retained = sum(
        storage.last_index() - storage.first_index() + 1 for storage in cluster.storages.values()
    )
    return MemoryResult(
        cluster.applied[1] - started_applied, [round(v, 1) for v in rss],
        round(rss[-1] - rss[0], 1), retained,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--entries", type=int, default=300_000, help="entries for batched run")
    parser.add_argument("--batch", type=int, default=64, help="proposals per batch")
    parser.add_argument("--size", type=int, default=100, help="bytes per entry")
    parser.add_argument("--sequential", type=int, default=20_000, help="one-at-a-time count")
    parser.add_argument("--memory-entries", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=60.0, help="time cap per workload")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    batched = run_batched(args.entries, args.batch, args.size, args.seconds)
    sequential = run_sequential(args.sequential, args.size, args.seconds)
    memory = run_memory(args.memory_entries, args.size, args.seconds)
    if args.json:
        print(
            json.dumps(
                {
                    "batched": asdict(batched),
                    "sequential": asdict(sequential),
                    "memory": asdict(memory),
                }
            )
        )
        return 0
    print(
        f"batched    {batched.entries:>9,} entries of {args.size} B in batches of "
        f"{batched.batch}: {batched.entries_per_second:>10,.0f} committed entries/s"
    )
    print(
        f"sequential {sequential.round_trips:>9,} propose-to-commit round trips: "
        f"{sequential.round_trips_per_second:>10,.0f} /s ({sequential.mean_rounds:.1f} rounds each)"
    )
    print(
        f"memory     {memory.entries:>9,} entries with compaction: RSS MB at each fifth "
        f"{memory.rss_mb_samples} (growth {memory.growth_mb} MB, "
        f"{memory.log_entries_retained:,} log entries retained over 3 nodes)"
    )
    return 0
