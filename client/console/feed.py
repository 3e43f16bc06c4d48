"""The overview's live feed: a poller that looks at the cluster every second.

Owns: polling every node's status (the public ClusterStatus call: the addresses the console
was given and every member their answers name) and scraping the metrics
endpoint each node names in it (``metrics_address``), turning the counters' differences into
samples (append calls per second, their mean latency, committed Raft entries per second),
noticing leader changes of the meta group and of every shard, and keeping the last
``HISTORY`` samples and ``CHANGES`` changes in memory. Must never: act on the cluster, block
the event loop (a scrape runs in a thread with a timeout), or fail the console when a node or
its metrics are unreachable (that is shown, not raised).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from quorumlog.client import errors, node_metrics
from quorumlog.client.async_client import AsyncClient
from quorumlog.client.results import ClusterStatus, NodeReport

log = logging.getLogger("quorumlog.console.feed")

HISTORY = 300  # samples kept (5 minutes at the default interval)
CHANGES = 50  # leader changes kept
SCRAPE_TIMEOUT_S = 2.0
#: the calls that append (each AppendStream request is observed as one call); their latency
#: is the time to commit and apply the batch
APPEND_METHODS = frozenset({"Append", "AppendBatch", "AppendStream"})
LATENCY = "quorumlog_request_seconds"


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # unix seconds
    append_calls_per_s: float | None  # None: no metrics endpoint answered
    latency_ms: float | None  # mean append call latency over the interval
    entries_per_s: float  # Raft entries committed per second, over all groups


@dataclass(frozen=True, slots=True)
class LeaderChange:
    t: float
    group: str  # "meta" or "shard N" (a cluster of one group: "cluster")
    old: str
    new: str  # "" when no leader is known now
    term: int


@dataclass(frozen=True, slots=True)
class AppendTotals:
    calls: float
    seconds: float


@dataclass
class FeedState:
    status: ClusterStatus | None = None
    polled_at: float = 0.0
    error: str = ""
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=HISTORY))
    changes: deque[LeaderChange] = field(default_factory=lambda: deque(maxlen=CHANGES))
    metrics_seen: dict[str, str] = field(default_factory=dict)  # node id -> metrics address


def append_totals(text: str) -> AppendTotals:
    """The sums of successful append calls and of their seconds in a metrics page."""
    calls = seconds = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != LATENCY:
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels.get("method") not in APPEND_METHODS or labels.get("code") != "OK":
                continue
            if sample.name == LATENCY + "_count":
                calls += sample.value
            elif sample.name == LATENCY + "_sum":
                seconds += sample.value
    return AppendTotals(calls, seconds)


def leaders_of(status: ClusterStatus) -> dict[str, tuple[str, int]]:
    """Each group's leader and term as the reachable nodes report it (highest term wins)."""
    found: dict[str, tuple[str, int]] = {}

    def see(group: str, leader: str, term: int) -> None:
        known = found.get(group)
        if known is None or term > known[1] or (term == known[1] and leader and not known[0]):
            found[group] = (leader, term)

    for report in status.reachable:
        node = report.status
        assert node is not None
        if node.shards:
            see("meta", node.leader, node.term)
            for shard in node.shards:
                if shard.role:  # only a replica knows the shard's term
                    see(f"shard {shard.shard}", shard.leader, shard.term)
        else:
            see("cluster", node.leader, node.term)
    return found


def committed_entries(status: ClusterStatus) -> int:
    """The sum over groups of the highest commit index any reachable node reports."""
    best: dict[str, int] = {}
    for report in status.reachable:
        node = report.status
        assert node is not None
        groups = [("meta", node.commit_index)] + [
            (f"shard {shard.shard}", shard.commit_index) for shard in node.shards if shard.role
        ]
        for group, index in groups:
            best[group] = max(best.get(group, 0), index)
    return sum(best.values())


class ClusterFeed:
    """Polls with ``client`` every ``interval`` seconds while :meth:`run` runs."""

    def __init__(self, client: AsyncClient, interval: float = 1.0,
                 deadline: float = 2.0) -> None:
        self.client = client
        self.interval = interval
        self.deadline = deadline
        self.state = FeedState()
        self._leaders: dict[str, tuple[str, int]] = {}
        self._totals: dict[str, AppendTotals] = {}  # by node id
        self._entries: int | None = None
        self._ready = asyncio.Event()

    async def wait_first(self, timeout: float) -> None:
        """Until the first poll ended (or ``timeout``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)

    async def run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # shown on the overview, never fatal
                self.state.error = f"{type(error).__name__}: {error}"
                log.warning("poll failed: %s", self.state.error)
            self._ready.set()
            await asyncio.sleep(self.interval)

    async def poll_once(self) -> None:
        status = await self.with_members(
            await self.client.cluster_status(deadline=self.deadline))
        now = time.time()
        previous_at = self.state.polled_at
        self.state.status, self.state.polled_at = status, now
        self.state.error = "" if status.reachable else "no node answered"
        self._note_leaders(status, now)
        totals = await self._scrape_all(status)
        entries = committed_entries(status)
        if previous_at and self._entries is not None:
            elapsed = max(1e-3, now - previous_at)
            self.state.samples.append(self._sample(now, elapsed, totals, entries))
        self._entries = entries
        if totals:
            self._totals = totals

    async def with_members(self, status: ClusterStatus) -> ClusterStatus:
        """``status`` and the members it names that were not asked (a node added since the
        console started, or one the console was not told of), each probed once."""
        asked = {report.address for report in status.nodes}
        asked |= {report.status.address for report in status.reachable if report.status}
        missing = sorted({
            member.client_address
            for report in status.reachable if report.status is not None
            for member in report.status.members
            if member.client_address and member.client_address not in asked
        })

        async def probe(address: str) -> NodeReport:
            try:
                return NodeReport(address, await self.client.node_status(
                    address, deadline=self.deadline), None)
            except errors.QuorumLogError as error:
                return NodeReport(address, None, error)

        if not missing:
            return status
        extra = await asyncio.gather(*(probe(address) for address in missing))
        return ClusterStatus([*status.nodes, *extra])

    def _sample(self, now: float, elapsed: float, totals: dict[str, AppendTotals],
                entries: int) -> Sample:
        calls_rate: float | None = None
        latency: float | None = None
        common = [node for node in totals if node in self._totals]
        if common:
            calls = sum(max(0.0, totals[n].calls - self._totals[n].calls) for n in common)
            seconds = sum(max(0.0, totals[n].seconds - self._totals[n].seconds) for n in common)
            calls_rate = calls / elapsed
            latency = seconds / calls * 1000.0 if calls else None
        entries_rate = max(0, entries - (self._entries or 0)) / elapsed
        return Sample(now, calls_rate, latency, entries_rate)

    def _note_leaders(self, status: ClusterStatus, now: float) -> None:
        for group, (leader, term) in sorted(leaders_of(status).items()):
            known = self._leaders.get(group)
            if known is not None and known[0] != leader and term >= known[1]:
                self.state.changes.appendleft(LeaderChange(now, group, known[0], leader, term))
            if known is None or term >= known[1]:
                self._leaders[group] = (leader, term)

    async def _scrape_all(self, status: ClusterStatus) -> dict[str, AppendTotals]:
        targets = {
            report.status.id: report.status.metrics_address
            for report in status.reachable
            if report.status is not None and report.status.metrics_address
        }
        self.state.metrics_seen = dict(targets)

        async def one(address: str) -> AppendTotals | None:
            try:
                return append_totals(await asyncio.to_thread(
                    node_metrics.fetch, address, SCRAPE_TIMEOUT_S))
            except (OSError, ValueError) as error:  # URLError is an OSError
                log.debug("metrics of %s: %s", address, error)
                return None

        answers = await asyncio.gather(*(one(address) for address in targets.values()))
        return {node: found for node, found in zip(targets, answers, strict=True)
                if found is not None}

    def snapshot(self) -> dict[str, Any]:
        """The chart's and the changes' data, as the overview's JSON endpoint serves it."""
        return {
            "polled_at": self.state.polled_at,
            "error": self.state.error,
            "metrics_nodes": sorted(self.state.metrics_seen),
            "samples": [
                {"t": s.t, "append_calls_per_s": s.append_calls_per_s,
                 "latency_ms": s.latency_ms, "entries_per_s": s.entries_per_s}
                for s in self.state.samples
            ],
            "leader_changes": [
                {"t": c.t, "group": c.group, "old": c.old, "new": c.new, "term": c.term}
                for c in self.state.changes
            ],
        }
