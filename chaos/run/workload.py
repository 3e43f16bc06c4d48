"""The chaos run's workload: producers, linearizable readers and consumers (those in
``quorumlog.chaos.run.consumers``), every operation recorded.

Owns: the worker tasks (one operation in flight per worker), their seeded choices (session,
values, read offsets), routing through the client-port proxies (following the leader id a
node names in its refusal, never its real address, so client faults stay in the path), the
per-operation retry loop with one deadline, classifying its outcome (``ok``; ``fail`` only
when no attempt can have written anything; ``info`` otherwise), the history records of every
invocation and completion (``quorumlog.chaos.run.history`` format), and live counters for the
progress line. Must never: inject faults, judge the history, or run unbounded: every loop
stops at its worker's operation cap or when the run asks it to stop.

Sharded clusters (``shards`` > 1): the session names are chosen so that every shard gets at
least ``MIN_SESSIONS_PER_SHARD`` of them (``quorumlog.proto.sharding.shard_of``, the hash the
nodes use), every session operation is recorded with its ``shard``, and each worker keeps one
target per shard (plus one for cluster-wide calls), each following that shard's leader hints.
With one shard the names, the choices and the routing are exactly those of an unsharded run.

Producers use idempotent appends: producer id ``p<k>`` and a per-session sequence; a value is
unique per producer write (``p<k>-<n>``), and an operation whose outcome is unknown is retried
by the worker's next operation with the same values and sequence (up to ``info_retries``
times), so the node's deduplication is exercised across leader changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, TypeVar

from quorumlog.chaos.run.envelopes import SCHEDULED, envelope_for, observed_record
from quorumlog.chaos.run.history import HistoryWriter, Outcome, ProcessId
from quorumlog.client import errors
from quorumlog.client._grpc import NodeConnection
from quorumlog.proto import quorumlog_pb2 as pb
from quorumlog.proto.sharding import shard_of

T = TypeVar("T")
AttemptKind = Literal["refused", "unknown", "final"]
RouteKey = int | None  # a data shard, or None: cluster-wide calls (and every call, 1 shard)
MIN_SESSIONS_PER_SHARD = 3  # a sharded run writes at least this many sessions per shard
RESEND_CHOICES = 200  # a producer re-sends one of its last this many acknowledged values


@dataclass(frozen=True)
class WorkloadConfig:
    producers: int = 4
    readers: int = 2
    sessions: int = 8
    max_values: int = 3  # values per append, drawn 1..max_values
    op_deadline: float = 3.0  # seconds per operation, retries included
    attempt_timeout: float = 1.5  # seconds per attempt
    info_retries: int = 3  # retries of an unknown-outcome append before moving on
    read_window: int = 5  # a read starts this many offsets before the end it saw last
    read_limit: int = 20
    max_ops_per_worker: int = 2_000_000  # a hard bound on every worker loop
    # one producer write in this many re-sends a value the producer had acknowledged, with a
    # new producer sequence: only the message_id duplicate detection keeps it single (0: never)
    resend_every: int = 8
    # one producer write in this many is scheduled (``deliver_at_ms``) up to
    # ``schedule_ahead_ms`` ahead: its values read ``p<k>-<n>@<ms>`` (0: never)
    schedule_every: int = 6
    schedule_ahead_ms: int = 2_000
    # consumers (``quorumlog.chaos.run.consumers``): one group over every session
    consumers: int = 2
    group: str = "chaos"
    lease_ms: int = 4000  # short, so a lease lost in a fault lapses within the run
    lock_ms: int = 4000
    max_deliveries: int = 5
    receive_max: int = 20  # messages per receive, drawn 1..receive_max
    abandon_rate: float = 0.08  # per message: abandoned (redelivered first)
    dead_letter_rate: float = 0.01  # per message: dead-lettered
    zombie_rate: float = 0.04  # per batch: a deliberately stale settle after a takeover
    batches_per_lease: int = 4  # then renew or release (rotating through sessions)
    shards: int = 1  # the cluster's data shards (``--shards``)

    def session_name(self, index: int) -> str:
        return f"s{index}"

    @cached_property
    def session_names(self) -> tuple[str, ...]:
        """The sessions written. One shard: s0 .. s<sessions-1>. Sharded: the first names
        s0, s1, ... that fill every shard with ``max(MIN_SESSIONS_PER_SHARD,
        ceil(sessions / shards))`` sessions each, so every shard gets several."""
        if self.shards <= 1:
            return tuple(self.session_name(index) for index in range(self.sessions))
        per_shard = max(MIN_SESSIONS_PER_SHARD, -(-self.sessions // self.shards))
        filled: dict[int, list[str]] = {shard: [] for shard in range(self.shards)}
        index = 0
        while any(len(names) < per_shard for names in filled.values()):
            name = self.session_name(index)
            names = filled[shard_of(name, self.shards)]
            if len(names) < per_shard:
                names.append(name)
            index += 1
        return tuple(sorted((name for names in filled.values() for name in names),
                            key=lambda name: int(name[1:])))

    def shard_of(self, session: str) -> int | None:
        """The shard of ``session`` in a sharded run; None with one shard."""
        return shard_of(session, self.shards) if self.shards > 1 else None

    def route_key(self, session: str | None) -> RouteKey:
        return None if session is None else self.shard_of(session)


@dataclass
class Counters:
    invoked: int = 0
    ok: int = 0
    fail: int = 0
    info: int = 0
    acked: int = 0  # ok appends
    last_ok: float = 0.0
    retried_unknown: int = 0  # ok operations with an attempt of unknown outcome before
    deduplicated: int = 0  # ok appends the node answered as a duplicate of an earlier try

    def count(self, outcome: Outcome, op: str, time: float) -> None:
        if outcome == "ok":
            self.ok += 1
            self.last_ok = time
            if op == "append":
                self.acked += 1
        elif outcome == "fail":
            self.fail += 1
        else:
            self.info += 1


class Recorder:
    """The one history writer of a run, with its clock and the live counters."""

    def __init__(self, writer: HistoryWriter, clock: Callable[[], float]) -> None:
        self.writer = writer
        self.clock = clock
        self.counters = Counters()

    def invoke(self, process: ProcessId, op: str, **fields: object) -> None:
        self.counters.invoked += 1
        self.writer.invoke(process, op, self.clock(), **fields)

    def complete(self, outcome: Outcome, process: ProcessId, op: str, **fields: object) -> None:
        now = self.clock()
        self.counters.count(outcome, op, now)
        self.writer.complete(outcome, process, op, now, **fields)


def classify(error: errors.QuorumLogError) -> AttemptKind:
    """``refused``: this attempt certainly changed nothing, try elsewhere; ``final``: the
    request is wrong and changed nothing, stop; ``unknown``: it may have been applied."""
    if isinstance(error, errors.Unavailable):
        message = error.message
        if message.startswith("node ") and "outcome unknown" not in message:
            return "refused"  # a node refusing as non-leader, before proposing anything
        if "failed to connect" in message.lower():
            return "refused"  # the call never left this client
        return "unknown"
    if isinstance(error, errors.InvalidArgument | errors.NotFound | errors.OutOfRange
                  | errors.ResourceExhausted | errors.FailedPrecondition):
        return "final"
    return "unknown"


class Route:
    """One worker's connections to every node's client proxy and its current target: one per
    routing key (a data shard, or None for cluster-wide calls and every call with one
    shard), each following the leader hints of the calls made with that key."""

    def __init__(self, addresses: dict[str, str], rng: random.Random) -> None:
        self.addresses = dict(addresses)
        self.names = sorted(addresses)
        self.rng = rng
        self.targets: dict[RouteKey, str] = {None: rng.choice(self.names)}
        self._connections: dict[str, NodeConnection] = {}

    @property
    def target(self) -> str:
        return self.targets[None]

    def target_for(self, key: RouteKey) -> str:
        target = self.targets.get(key)
        if target is None:
            target = self.targets[key] = self.rng.choice(self.names)
        return target

    def connection(self, name: str) -> NodeConnection:
        connection = self._connections.get(name)
        if connection is None:
            connection = NodeConnection(self.addresses[name])
            self._connections[name] = connection
        return connection

    def after_error(self, failed: str, error: errors.QuorumLogError,
                    key: RouteKey = None) -> None:
        leader = error.leader_id
        if leader in self.addresses and leader != failed:
            self.targets[key] = leader
        else:
            self.targets[key] = self.names[(self.names.index(failed) + 1) % len(self.names)]

    async def close(self) -> None:
        for connection in self._connections.values():
            with contextlib.suppress(Exception):
                await connection.close()
        self._connections.clear()


@dataclass
class Attempts:
    """What one operation's attempts came to."""

    outcome: Outcome
    error: str | None = None
    unknown: bool = False  # some attempt may have been applied


class Worker:
    def __init__(self, process: ProcessId, recorder: Recorder, addresses: dict[str, str],
                 config: WorkloadConfig, seed: int) -> None:
        self.process = process
        self.recorder = recorder
        self.config = config
        self.rng = random.Random(f"quorumlog-chaos-worker-{seed}-{process}")
        self.route = Route(addresses, self.rng)
        self.ops = 0

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set() and self.ops < self.config.max_ops_per_worker:
                self.ops += 1
                await self.step()
        finally:
            await self.route.close()

    async def step(self) -> None:
        raise NotImplementedError

    async def attempt(self, call: Callable[[NodeConnection, float], Awaitable[T]], *,
                      retry_unknown: bool = True,
                      key: RouteKey = None) -> tuple[T | None, Attempts]:
        """Try ``call`` on the target node of routing key ``key`` until success, a final
        error or the deadline (``retry_unknown`` false: or the first attempt of unknown
        outcome)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.config.op_deadline
        unknown = False
        last_error = "deadline passed before any attempt"
        backoff = 0.05
        tried: set[str] = set()
        while (remaining := end - loop.time()) > 0:
            target = self.route.target_for(key)
            try:
                result = await call(self.route.connection(target),
                                    min(self.config.attempt_timeout, remaining))
            except errors.QuorumLogError as error:
                kind = classify(error)
                last_error = f"{target}: {error.code}: {error.message}"[:300]
                if kind == "final":
                    return None, Attempts("info" if unknown else "fail", last_error)
                unknown = unknown or kind == "unknown"
                tried.add(target)
                self.route.after_error(target, error, key)
                if unknown and not retry_unknown:
                    return None, Attempts("info", last_error, unknown)
                if self.route.target_for(key) in tried and len(tried) >= len(self.route.names):
                    tried.clear()
                    pause = min(backoff * (0.5 + self.rng.random()), max(0.0, end - loop.time()))
                    await asyncio.sleep(pause)  # retry backoff, bounded by the deadline
                    backoff = min(backoff * 2, 0.5)
                continue
            return result, Attempts("ok", unknown=unknown)
        return None, Attempts("info" if unknown else "fail", last_error, unknown)


@dataclass
class _PendingWrite:
    session: str
    values: list[str]
    sequence: int
    tries: int = 0
    resend: bool = False  # values acknowledged before, sent again under a new sequence


class Producer(Worker):
    def __init__(self, process: int, recorder: Recorder, addresses: dict[str, str],
                 config: WorkloadConfig, seed: int) -> None:
        super().__init__(process, recorder, addresses, config, seed)
        self.producer = f"p{process}"
        self.sequences: dict[str, int] = {}
        self.written = 0
        self.pending: _PendingWrite | None = None
        self.acknowledged: list[tuple[str, str]] = []  # (session, value), recent last

    def _next_write(self) -> _PendingWrite:
        if self.pending is not None and self.pending.tries <= self.config.info_retries:
            return self.pending
        every = self.config.resend_every
        if every and self.acknowledged and self.rng.randrange(every) == 0:
            # A value written and acknowledged in the last minutes (well within the session's
            # 10-minute duplicate window): a new sequence, the same message_id.
            session, value = self.acknowledged[self.rng.randrange(len(self.acknowledged))]
            sequence = self.sequences.get(session, 0)
            self.sequences[session] = sequence + 1
            return _PendingWrite(session, [value], sequence, resend=True)
        names = self.config.session_names
        session = names[self.rng.randrange(len(names))]
        count = self.rng.randint(1, self.config.max_values)
        values = [f"{self.producer}-{self.written + i}" for i in range(count)]
        every = self.config.schedule_every
        if every and self.rng.randrange(every) == 0:
            # The leader's clock decides; the nodes run on this machine's clock.
            at = int(time.time() * 1000) + self.rng.randint(1, self.config.schedule_ahead_ms)
            values = [f"{value}{SCHEDULED}{at}" for value in values]
        self.written += count
        sequence = self.sequences.get(session, 0)
        self.sequences[session] = sequence + count  # used or abandoned, never reused
        return _PendingWrite(session, values, sequence)

    async def step(self) -> None:
        write = self._next_write()
        write.tries += 1
        request = pb.AppendRequest(session=write.session,
                                   messages=[value.encode() for value in write.values],
                                   envelopes=[envelope_for(value) for value in write.values],
                                   producer_id=self.producer, sequence=write.sequence)
        self.recorder.invoke(self.process, "append", session=write.session,
                             values=write.values, producer=self.producer,
                             sequence=write.sequence, shard=self.config.shard_of(write.session))
        response, attempts = await self.attempt(
            lambda node, timeout: node.append(request, timeout),
            key=self.config.route_key(write.session))
        counters = self.recorder.counters
        counters.retried_unknown += response is not None and attempts.unknown
        counters.deduplicated += response is not None and response.duplicate
        if response is not None and response.offsets:
            # Some value was a duplicate by message_id: every value's offset (the original's).
            self.pending = None
            self._acknowledged(write)
            self.recorder.complete("ok", self.process, "append", offsets=list(response.offsets))
            return
        if response is not None and response.count == len(write.values):
            self.pending = None
            offsets = [response.first_offset + i for i in range(response.count)]
            self._acknowledged(write)
            self.recorder.complete("ok", self.process, "append", offsets=offsets)
            return
        if response is not None:
            # A duplicate of a write so old its offsets are forgotten: written, offsets unknown.
            self.pending = None
            self.recorder.complete("info", self.process, "append",
                                   error="duplicate with unknown offsets")
            return
        self.pending = write if attempts.outcome == "info" else None
        self.recorder.complete(attempts.outcome, self.process, "append", error=attempts.error)


    def _acknowledged(self, write: _PendingWrite) -> None:
        if not write.resend:
            self.acknowledged.extend((write.session, value) for value in write.values)
            del self.acknowledged[:-RESEND_CHOICES]


class Reader(Worker):
    def __init__(self, process: int, recorder: Recorder, addresses: dict[str, str],
                 config: WorkloadConfig, seed: int) -> None:
        super().__init__(process, recorder, addresses, config, seed)
        self.seen_end: dict[str, int] = {}

    async def step(self) -> None:
        names = self.config.session_names
        session = names[self.rng.randrange(len(names))]
        start = max(0, self.seen_end.get(session, 0) - self.config.read_window)
        request = pb.ReadRequest(session=session, from_offset=start,
                                 max_count=self.config.read_limit,
                                 consistency=pb.LINEARIZABLE)
        self.recorder.invoke(self.process, "read", session=session, from_offset=start,
                             consistency="linearizable", shard=self.config.shard_of(session))

        async def read(node: NodeConnection, timeout: float) -> pb.ReadResponse:
            try:
                return await node.read(request, timeout)
            except errors.NotFound:
                return pb.ReadResponse(session=session, end_offset=0)  # nothing written yet

        response, attempts = await self.attempt(read, key=self.config.route_key(session))
        if response is None:
            # Reads change nothing: a read that never returned simply did not happen.
            self.recorder.complete("fail", self.process, "read", error=attempts.error)
            return
        records = [[record.offset, observed_record(record)]
                   for record in response.records]
        self.seen_end[session] = max(self.seen_end.get(session, 0), response.end_offset)
        self.recorder.complete("ok", self.process, "read", records=records,
                               end_offset=response.end_offset)


@dataclass
class Workload:
    """Every worker of a run; consumers come from ``quorumlog.chaos.run.consumers``."""

    recorder: Recorder
    addresses: dict[str, str]  # node -> client proxy address
    config: WorkloadConfig
    seed: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def sessions(self) -> list[str]:
        return list(self.config.session_names)

    def start(self) -> None:
        from quorumlog.chaos.run.consumers import Consumer  # noqa: PLC0415 -- it builds on Worker

        loop = asyncio.get_running_loop()
        workers: list[Worker] = [
            Producer(index, self.recorder, self.addresses, self.config, self.seed)
            for index in range(self.config.producers)]
        workers += [Reader(self.config.producers + index, self.recorder, self.addresses,
                           self.config, self.seed) for index in range(self.config.readers)]
        first = self.config.producers + self.config.readers
        workers += [Consumer(first + index, self.recorder, self.addresses, self.config,
                             self.seed) for index in range(self.config.consumers)]
        self.tasks = [loop.create_task(worker.run(self.stop), name=f"chaos-worker-{index}")
                      for index, worker in enumerate(workers)]

    async def finish(self) -> None:
        """Ask every worker to stop after its current operation; cancel stragglers."""
        self.stop.set()
        if not self.tasks:
            return
        _, late = await asyncio.wait(self.tasks, timeout=self.config.op_deadline + 5.0)
        for task in late:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
