"""Prometheus metrics of one node, served over HTTP.

Owns: a per-node ``CollectorRegistry`` (several nodes may share a test process) with the Raft
gauges (term, role, commit / applied / last index, voters and learners, and on the leader each
follower's lag), write-path figures (entries per fsync, fsync latency, readies), RocksDB's
memory and compaction state (memtables, block cache, level-0 files, pending compaction bytes:
what a node's memory is made of besides Python), the process's own figures (resident memory,
CPU) and client request latencies by method and status. Must never: be read by the Raft loop
for decisions; it only observes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from quorumlog.node.replication.driver import WriteStats
from quorumlog.node.replication.raft_node import RaftNode
from quorumlog.node.storage.raft_store import RocksStorage

ROLE_VALUES = {"follower": 0, "candidate": 1, "leader": 2, "pre_candidate": 3}


class _NodeCollector(Collector):
    """Figures of the node ``node()`` returns (None before it runs: nothing to report)."""

    def __init__(self, node: Callable[[], RaftNode | None], name: str) -> None:
        self._node = node
        self._name = name

    def collect(self) -> Iterable[Metric]:
        node = self._node()
        return [] if node is None else self._collect(node)

    def _collect(self, node: RaftNode) -> list[Metric]:
        raise NotImplementedError


#: A hosted group as the metrics see it: (shard label, RaftNode). The label is the data
#: shard's number, "meta" for the meta group of a sharded cluster ("0" when it is the only
#: shard).
LabelledGroup = tuple[str, RaftNode]


class _RaftCollector(Collector):
    """Every hosted group's Raft figures, one sample per group, labelled node, shard and
    group (the families are those of one group before sharding, with two labels more)."""

    def __init__(self, groups: Callable[[], list[LabelledGroup]], name: str) -> None:
        self._groups = groups
        self._name = name

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for shard, node in self._groups():
            for family in self._collect(shard, node):
                merged = families.setdefault(family.name, family)
                if merged is not family:
                    merged.samples.extend(family.samples)
        return list(families.values())

    def _collect(self, shard: str, node: RaftNode) -> list[Metric]:
        status = node.status()  # one consistent reading; the core itself is never touched
        labels = ["node", "shard", "group"]
        values = [self._name, shard, str(node.group)]

        def gauge(metric: str, help_text: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(metric, help_text, labels=labels)
            family.add_metric(values, value)
            return family

        def counter(metric: str, help_text: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(metric, help_text, labels=labels)
            family.add_metric(values, value)
            return family

        metrics = node.metrics
        syncs = max(metrics.synced_writes, 1)
        conf = status.conf_state
        lag = GaugeMetricFamily(
            "quorumlog_raft_follower_lag_entries",
            "leader only: entries each follower is behind the leader's last index",
            labels=["node", "follower", "shard", "group"],
        )
        last = status.last_index
        role = str(status.role)
        for peer_id, progress in sorted(status.progress.items()):  # the leader's only
            if peer_id != status.id:
                lag.add_metric([self._name, f"n{peer_id}", shard, str(node.group)],
                               max(0, last - progress.match))
        return [
            lag,
            gauge("quorumlog_raft_voters", "voters in the configuration", len(conf.voters)),
            gauge("quorumlog_raft_learners", "learners in the configuration",
                  len(conf.learners)),
            gauge("quorumlog_raft_term", "current Raft term", status.term),
            gauge("quorumlog_raft_role", "0 follower, 1 candidate, 2 leader, 3 pre-candidate",
                  ROLE_VALUES.get(role, -1)),
            gauge("quorumlog_raft_is_leader", "1 on the leader", 1 if role == "leader" else 0),
            gauge("quorumlog_raft_commit_index", "commit index", status.commit),
            gauge("quorumlog_raft_applied_index", "applied index", status.applied),
            gauge("quorumlog_raft_last_index", "last log index", status.last_index),
            gauge("quorumlog_raft_first_index", "first retained log index", status.first_index),
            counter("quorumlog_raft_readies", "Ready batches handled", metrics.readies),
            counter("quorumlog_raft_fsyncs", "synced log writes", metrics.synced_writes),
            counter("quorumlog_raft_entries_persisted", "log entries written",
                    metrics.entries_persisted),
            counter("quorumlog_raft_entries_applied", "entries applied", metrics.entries_applied),
            counter("quorumlog_raft_proposals", "Raft entries proposed", metrics.proposals),
            counter("quorumlog_commands_proposed", "client commands proposed",
                    metrics.commands_proposed),
            counter("quorumlog_raft_messages_sent", "Raft messages sent", metrics.messages_sent),
            counter("quorumlog_raft_ticks_skipped",
                    "ticks skipped while the group was quiescent (idle)",
                    metrics.ticks_skipped),
            counter("quorumlog_raft_append_messages_sent", "AppendEntries messages sent",
                    metrics.append_messages_sent),
            counter("quorumlog_raft_append_entries_sent",
                    "log entries carried by AppendEntries messages sent",
                    metrics.append_entries_sent),
            counter("quorumlog_raft_append_empty_messages_sent",
                    "AppendEntries messages sent without entries (commit updates, probes)",
                    metrics.append_empty_sent),
            counter("quorumlog_raft_fsync_seconds", "time in synced writes",
                    metrics.fsync_seconds),
            gauge("quorumlog_raft_entries_per_fsync", "mean entries per synced write",
                  metrics.entries_persisted / syncs),
        ]


# (metric, RocksDB property, help)
ROCKSDB_GAUGES = (
    ("quorumlog_rocksdb_memtable_bytes", "rocksdb.cur-size-all-mem-tables",
     "bytes in RocksDB memtables (active and waiting to flush)"),
    ("quorumlog_rocksdb_block_cache_bytes", "rocksdb.block-cache-usage",
     "bytes in the RocksDB block cache"),
    ("quorumlog_rocksdb_block_cache_pinned_bytes", "rocksdb.block-cache-pinned-usage",
     "bytes pinned in the RocksDB block cache"),
    ("quorumlog_rocksdb_level0_files", "rocksdb.num-files-at-level0",
     "SST files at level 0 (many: compaction is behind)"),
    ("quorumlog_rocksdb_pending_compaction_bytes", "rocksdb.estimate-pending-compaction-bytes",
     "bytes RocksDB estimates it still has to compact"),
)


class _RocksCollector(_NodeCollector):
    """RocksDB's own figures, read as properties (thread-safe in RocksDB) at scrape time."""

    def _collect(self, node: RaftNode) -> list[Metric]:
        families: list[Metric] = []
        storage = node.storage
        if not isinstance(storage, RocksStorage):
            return families  # a log store without RocksDB (tests' in-memory store)
        for metric, prop, help_text in ROCKSDB_GAUGES:
            try:
                value = storage.db.property_int_value(prop)
            except Exception:  # closed while shutting down: report nothing
                return []
            if value is None:
                continue
            family = GaugeMetricFamily(metric, help_text, labels=["node"])
            family.add_metric([self._name], value)
            families.append(family)
        return families


class _SyncCollector(Collector):
    """The writes shared by a node's groups (``GroupDriver``: one per round of all groups
    ready together)."""

    def __init__(self, barrier: Callable[[], WriteStats | None], name: str) -> None:
        self._barrier = barrier
        self._name = name

    def collect(self) -> Iterable[Metric]:
        barrier = self._barrier()
        if barrier is None:
            return []
        figures = (
            ("quorumlog_node_group_fsyncs", "fsyncs shared by the node's groups",
             barrier.fsyncs),
            ("quorumlog_node_group_fsync_waiters", "group writes those fsyncs covered",
             barrier.fsync_waiters),
            ("quorumlog_node_group_fsync_seconds", "time in those fsyncs",
             barrier.fsync_seconds),
        )
        families: list[Metric] = []
        for metric, help_text, value in figures:
            family = CounterMetricFamily(metric, help_text, labels=["node"])
            family.add_metric([self._name], value)
            families.append(family)
        return families


@dataclass(frozen=True)
class StorageFigures:
    """The node's disk and storage-health figures (``NodeServer.storage_figures``)."""

    free_bytes: int
    reserve_bytes: int
    writes_refused: bool
    votes_dropped: int  # votes of wiped replicas not counted (the incarnation rule)
    scrub_passes: int
    scrub_keys: int  # keys read back by the last clean pass


class _StorageCollector(Collector):
    def __init__(self, figures: Callable[[], StorageFigures | None], name: str) -> None:
        self._figures = figures
        self._name = name

    def collect(self) -> Iterable[Metric]:
        figures = self._figures()
        if figures is None:
            return []
        families: list[Metric] = []
        for kind, metric, help_text, value in (
            (GaugeMetricFamily, "quorumlog_disk_free_bytes",
             "free bytes on the data directory's disk (last sample)", figures.free_bytes),
            (GaugeMetricFamily, "quorumlog_disk_reserve_bytes",
             "free bytes kept: below them writes are refused", figures.reserve_bytes),
            (GaugeMetricFamily, "quorumlog_disk_writes_refused",
             "1 while writes are refused for a full disk", float(figures.writes_refused)),
            (CounterMetricFamily, "quorumlog_incarnation_votes_dropped",
             "votes not counted: their sender's incarnation is not the admitted one",
             figures.votes_dropped),
            (CounterMetricFamily, "quorumlog_scrub_passes",
             "scrub passes that read every stored key back clean", figures.scrub_passes),
            (GaugeMetricFamily, "quorumlog_scrub_keys",
             "keys the last clean scrub pass read back", figures.scrub_keys),
        ):
            family = kind(metric, help_text, labels=["node"])
            family.add_metric([self._name], value)
            families.append(family)
        return families


class NodeMetricsExporter:
    def __init__(
        self, name: str, node: Callable[[], RaftNode | None],
        groups: Callable[[], list[LabelledGroup]] | None = None,
        barrier: Callable[[], WriteStats | None] = lambda: None,
        storage: Callable[[], StorageFigures | None] = lambda: None,
    ) -> None:
        """``node``: the meta group's driver (RocksDB figures); ``groups``: every hosted
        group with its shard label (default: ``node`` as shard "0")."""
        self.registry = CollectorRegistry()

        def only_node() -> list[LabelledGroup]:
            raft = node()
            return [] if raft is None else [("0", raft)]

        self.registry.register(_RaftCollector(groups or only_node, name))
        self.registry.register(_RocksCollector(node, name))
        self.registry.register(_SyncCollector(barrier, name))
        self.registry.register(_StorageCollector(storage, name))
        # process_resident_memory_bytes, process_cpu_seconds_total, ... of this process
        ProcessCollector(registry=self.registry)
        self.request_seconds = Histogram(
            "quorumlog_request_seconds",
            "client request latency",
            ["method", "code"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
        )
        self._server: object | None = None

    def serve(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._server = start_http_server(int(port), addr=host, registry=self.registry)

    def stop(self) -> None:
        server = self._server
        if server is not None:
            shutdown = getattr(server[0] if isinstance(server, tuple) else server, "shutdown",
                               None)
            if callable(shutdown):
                shutdown()
        self._server = None


class LatencyInterceptor(grpc.aio.ServerInterceptor):
    """Observes every unary client call's latency by method and final status code."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = str(handler_call_details.method).rsplit("/", 1)[-1]
        inner = handler.unary_unary
        histogram = self.histogram

        async def observed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code = "OK"
            try:
                return await inner(request, context)  # type: ignore[arg-type]
            except BaseException:
                status = context.code()
                code = status.name if isinstance(status, grpc.StatusCode) else "UNKNOWN"
                raise
            finally:
                histogram.labels(method, code).observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
