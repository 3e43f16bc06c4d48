"""One Raft group's replica on a node: its core, inputs and Ready phases
(docs/architecture.md#the-raft-loop).

Owns: the ``RawNode``, the input queues (peer messages, ticks, proposals, reads), the phases
of one Ready — send → persist (one atomic ``LogStore`` write, fsynced when ``must_sync``) →
acknowledgements → restore/apply → resolve waiting client calls by (term, index) → advance —
run in a row by a loop task of its own, or for every hosted group together by the host's
driver (``quorumlog.node.replication.driver``, after ``attach``), group commit of client
commands (everything pending becomes one Raft entry), linearizable read points, snapshot-based
log compaction and state restore from a peer. Must never: let anything but its one driving
task (its loop or the host's driver) touch the ``RawNode``, or send a vote or append
acknowledgement before the state it vouches for is durable.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from quorumlog.node.replication.applier import CommandError, StateMachine
from quorumlog.node.replication.membership import replay_conf_changes
from quorumlog.node.replication.state_transfer import import_state_from
from quorumlog.node.storage.engine import is_rocksdb_error
from quorumlog.node.storage.log_store import LogStore
from quorumlog.proto import commands_pb2
from quorumlog.raft import Config, Entry, Message, RawNode, Ready, StateRole, Status
from quorumlog.raft.errors import ConfChangeRefused, ProposalDropped, RaftError
from quorumlog.raft.types import NONE, ConfChange, ConfState, EntryType, MessageType, NodeId

log = logging.getLogger("quorumlog.node")

# Lazy commit (raft ``Config.lazy_commit``): a commit index that no append carried within this
# long goes to the followers in an append of its own. Under load every append carries it; a
# client writing one message at a time sends its next append sooner than this, so followers
# learn each commit without a message of its own. The window must be longer than one group
# commit round under load: at 2 ms, 64 concurrent appenders (one round of ~8 ms) paid an empty
# append (and two acknowledgements) per round, half of all appends; at 10 ms 6% are empty and
# 64/64 throughput rose 7,000 -> 8,060 msg/s (20 ms: 8,370, within noise). The price is a
# follower's applied state trailing the commit by up to this long when writes pause (follower
# reads are possibly stale by contract; heartbeats every tick carry it too).
COMMIT_FLUSH_SECONDS = 0.010

# Loop iterations a Ready's appends get to reach gRPC before the synced write stalls the loop.
SEND_HOPS = 3

# With ``snapshot_bytes`` set, a snapshot is also taken after that many bytes of entries, and
# the log kept behind it for slow followers is cut to about this many times that size.
KEEP_BYTES_FACTOR = 4
_BYTE_MARKS_KEPT = 65536  # (index, cumulative bytes) per persisted Ready, for compaction


class NotLeader(Exception):
    """This node cannot serve the call; ``leader_id`` is the leader it knows (or NONE)."""

    def __init__(self, leader_id: NodeId, message: str) -> None:
        super().__init__(message)
        self.leader_id = leader_id


class OutcomeUnknown(Exception):
    """Leadership changed while the command was in flight: it may or may not commit."""


class CommandFailed(Exception):
    """The replicated entry could not be applied as a command batch (changed nothing)."""

    def __init__(self, error: CommandError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class _Proposal:
    command: commands_pb2.Command
    size: int
    future: asyncio.Future[Any]


@dataclass
class _Waiting:
    term: int
    futures: list[asyncio.Future[Any]] = field(default_factory=list)


@dataclass
class NodeMetrics:
    """Counters the metrics exporter reads; plain numbers, updated by the loop."""

    readies: int = 0
    synced_writes: int = 0
    entries_persisted: int = 0
    entries_applied: int = 0
    proposals: int = 0
    commands_proposed: int = 0
    messages_sent: int = 0
    append_messages_sent: int = 0  # AppendEntries (APP) messages among messages_sent
    append_entries_sent: int = 0  # log entries carried by those APP messages
    append_empty_sent: int = 0  # APP messages among them that carry no entry (commit, probe)
    snapshots_restored: int = 0
    ticks_skipped: int = 0  # ticks the host skipped while the group was quiescent
    fsync_seconds: float = 0.0
    entries_per_sync: list[int] = field(default_factory=list)


FetchState = Callable[[NodeId, int], AsyncIterator[bytes]]


def _group_logger(group: int) -> Callable[[str], None]:
    """The core's log lines of a data group carry the group (``g3: n2 became leader ...``)."""

    def write(message: str) -> None:
        log.info("g%d: %s", group, message)

    return write


class RaftNode:
    def __init__(
        self,
        *,
        node_id: NodeId,
        storage: LogStore,
        state_machine: StateMachine,
        send: Callable[[list[Message]], None],
        fetch_state: FetchState,
        peer_ids: Callable[[], list[NodeId]],
        tick_seconds: float,
        election_tick: int,
        heartbeat_tick: int,
        snapshot_every: int,
        snapshot_keep: int,
        max_entry_bytes: int,
        snapshot_bytes: int | None = None,
        seed: int | None = None,
        unsafe_ack_before_fsync: bool = False,
        on_role_change: Callable[[StateRole, NodeId, int], None] | None = None,
        on_membership_applied: Callable[[], None] | None = None,
        group: int = 0,
    ) -> None:
        self.id = node_id
        # The Raft group this replica belongs to (0: the meta group). A node's groups are
        # hosted by ``quorumlog.node.replication.groups``, which ticks them and drives their
        # Readies together (``attach``); alone, the node runs its own loop and ticker.
        self.group = group
        self.own_ticker = True
        self._host_wake: Callable[[RaftNode], None] | None = None
        self._handoff: Callable[[RaftNode], None] | None = None  # see hand_over
        self._loop_task: asyncio.Task[None] | None = None
        self.storage = storage
        self.state_machine = state_machine
        self._send = send
        self._fetch_state = fetch_state
        self._peer_ids = peer_ids
        self.tick_seconds = tick_seconds
        self.snapshot_every = snapshot_every
        self.snapshot_keep = snapshot_keep
        # Big entries (batched appends) reach any byte size in few entries: without a byte
        # bound the whole log stayed, and a restart read all of it (replay_conf_changes reads
        # snapshot..applied): 10M messages, 13-49 s to serve again on a busy 2-core machine,
        # 2.8-7.7 s with this bound (benchmarks/large_state.py).
        self.snapshot_bytes = snapshot_bytes
        self._log_bytes = 0  # data bytes of entries persisted since this process started
        self._log_bytes_at_snapshot = 0
        self._byte_marks: collections.deque[tuple[int, int]] = collections.deque(
            maxlen=_BYTE_MARKS_KEPT)
        self.max_entry_bytes = max_entry_bytes
        self.unsafe_ack_before_fsync = unsafe_ack_before_fsync
        self.on_role_change = on_role_change
        snapshot_index = storage.snapshot().metadata.index
        applied = max(state_machine.applied_index(), snapshot_index)
        # A state machine behind the snapshot (crash during a restore) must be re-fetched.
        # The founding snapshot (index 1) stands for the empty state; any later snapshot
        # the state machine is behind of (crash during a restore) must be fetched again.
        self.needs_restore = state_machine.import_incomplete or (
            snapshot_index > 1 and state_machine.applied_index() < snapshot_index
        )
        applied = min(applied, storage.initial_state()[0].commit or snapshot_index)
        rng = random.Random(seed if seed is not None else random.SystemRandom().getrandbits(64))
        config = Config(
            id=node_id,
            rng=rng,
            applied=max(applied, snapshot_index),
            election_tick=election_tick,
            heartbeat_tick=heartbeat_tick,
            logger=log.info if group == 0 else _group_logger(group),
            lazy_commit=True,
        )
        self.raw = RawNode(config, storage)
        # Membership changes among entries the state machine already applied are not
        # delivered again: put them back into the core's configuration.
        replay_conf_changes(self.raw, storage, snapshot_index, self.raw.raft.log.applied)
        self.on_membership_applied = on_membership_applied
        self._conf_changes: list[tuple[ConfChange, asyncio.Future[tuple[int, int]]]] = []
        self.metrics = NodeMetrics()
        self._messages: list[Message] = []
        self._proposals: list[_Proposal] = []
        self._reads: list[tuple[bytes, asyncio.Future[int]]] = []
        self._unreachable: set[NodeId] = set()
        self._forget: set[NodeId] = set()
        self._transfer_to: NodeId = NONE
        self._ticks = 0
        self._wake = asyncio.Event()
        self._waiting: dict[int, _Waiting] = {}
        self._read_waiters: dict[bytes, asyncio.Future[int]] = {}
        self._applied_waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._waiter_seq = itertools.count()
        self._read_seq = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._failure: asyncio.Future[BaseException] | None = None
        self._stopping = False
        self._idle = asyncio.Event()  # no host driver round is between this node's phases
        self._idle.set()
        self._commit_timer: asyncio.TimerHandle | None = None
        self._flush_commit = False
        self.role = StateRole.FOLLOWER
        self.leader_id: NodeId = NONE

    # -- inputs (called from other tasks; they only queue) ---------------------------------
    def deliver(self, messages: list[Message]) -> None:
        self._messages.extend(messages)
        self._notify()

    def report_unreachable(self, peer_id: NodeId) -> None:
        self._unreachable.add(peer_id)
        self._notify()

    def submit(self, command: commands_pb2.Command, size: int) -> asyncio.Future[Any]:
        """Queue a command for replication; the future resolves with its apply result."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.role != StateRole.LEADER:
            future.set_exception(NotLeader(self.leader_id, "not the leader"))
            return future
        self._proposals.append(_Proposal(command, size, future))
        self._notify()
        return future

    def read_index(self) -> asyncio.Future[int]:
        """A linearizable read point (ReadIndex); serve once ``wait_applied`` returns."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if self.role != StateRole.LEADER:
            future.set_exception(NotLeader(self.leader_id, "not the leader"))
            return future
        context = b"r%d" % next(self._read_seq)
        self._reads.append((context, future))
        self._notify()
        return future

    def transfer_leader(self, to: NodeId) -> None:
        self._transfer_to = to
        self._notify()

    def forget_progress(self, peer: NodeId) -> None:
        """Leader: forget ``peer``'s progress (it came back with a new incarnation and an
        empty log; ``quorumlog.node.replication.incarnations``)."""
        self._forget.add(peer)
        self._notify()

    def propose_conf_change(self, change: ConfChange) -> asyncio.Future[tuple[int, int]]:
        """Queue one membership change; resolves with its (term, index) once appended, or
        fails with ``NotLeader`` / ``ConfChangeRefused`` (then nothing was appended)."""
        future: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        if self.role != StateRole.LEADER:
            future.set_exception(NotLeader(self.leader_id, "not the leader"))
            return future
        self._conf_changes.append((change, future))
        self._notify()
        return future

    def _propose_conf_changes(self) -> None:
        changes, self._conf_changes = self._conf_changes, []
        for change, future in changes:
            if future.done():
                continue
            try:
                future.set_result(self.raw.propose_conf_change(change))
            except ProposalDropped as error:
                future.set_exception(NotLeader(self.raw.raft.leader_id, str(error)))
            except ConfChangeRefused as error:
                future.set_exception(error)

    async def wait_applied(self, index: int) -> None:
        """Return once the applied index reaches ``index`` (subscribers wait for applied+1)."""
        if self.raw.raft.log.applied >= index:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._applied_waiters, (index, next(self._waiter_seq), future))
        await future

    @property
    def applied(self) -> int:
        return self.raw.raft.log.applied

    # -- read-only views (services and metrics read these, never ``raw``) -------------------
    def status(self) -> Status:
        """The core's status, copied: term, role, leader, commit / applied / first / last
        index, the configuration and, on the leader only, every member's progress."""
        return self.raw.status()

    def conf_state(self) -> ConfState:
        """The current configuration (voters and learners), copied."""
        return self.raw.raft.conf_state()

    @property
    def term(self) -> int:
        return self.raw.raft.term

    @property
    def election_ticks(self) -> int:
        """Ticks without a leader before a follower campaigns (``Config.election_tick``)."""
        return self.raw.raft.election_timeout

    @property
    def snapshot_index(self) -> int:
        """The index of the latest snapshot (from memory, no RocksDB read)."""
        return self.storage.snapshot_index()

    # -- lifecycle -------------------------------------------------------------------------------
    def attach(self, host_wake: Callable[[RaftNode], None]) -> None:
        """Let a host drive this node (before ``start``): inputs then call ``host_wake``
        instead of waking a loop of the node's own, and the host runs the Ready phases."""
        self._host_wake = host_wake
        self.own_ticker = False

    def hand_over(self, host_wake: Callable[[RaftNode], None]) -> None:
        """Move this node from its own loop to a host's driver (the host now has more than
        one group): a running loop ends after the Ready it is handling, and only then does
        the driver take the node, so one task at a time owns the core."""
        if self._host_wake is not None or self._stopping:
            return
        task = self._loop_task
        if task is None or task.done():
            self.attach(host_wake)  # not started yet: the driver drives it from the start
            return
        self._handoff = host_wake
        self._wake.set()

    def _notify(self) -> None:
        if self._host_wake is not None:
            self._host_wake(self)
        else:
            self._wake.set()

    def tick(self) -> None:
        """One Raft tick, from the host's shared ticker (``own_ticker`` False)."""
        self._ticks += 1
        self._notify()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._failure = loop.create_future()
        if self._host_wake is not None:
            return  # the host drives this node
        self._loop_task = loop.create_task(self._run(), name=f"raft-loop-g{self.group}")
        self._tasks = [self._loop_task]
        if self.own_ticker:
            self._tasks.append(loop.create_task(self._ticker(), name="raft-ticker"))
        for task in self._tasks:
            task.add_done_callback(self._task_ended)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        # A loop that ends by an exception (a failed write: docs/architecture.md "Durability")
        # must not leave a process that answers calls with no Raft behind it; the process
        # layer waits on this and exits. A write is never retried here.
        if task.cancelled() or self._stopping or self._failure is None:
            return
        error = task.exception()
        if error is not None and not self._failure.done():
            self._failure.set_result(error)

    async def wait_failure(self) -> BaseException:
        """The exception that ended the Raft loop or its ticker; waits while the node runs
        (for ever after a clean stop)."""
        assert self._failure is not None, "start() first"
        return await asyncio.shield(self._failure)

    async def stop(self) -> None:
        self._stopping = True
        if self._commit_timer is not None:
            self._commit_timer.cancel()
        self._notify()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                continue  # already reported through wait_failure(); stopping goes on
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._idle.wait()  # a host's driver is done with this node's Ready
        self._fail_all(OutcomeUnknown("node is shutting down"))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)  # the Raft clock: a period, not a wait
            self._ticks += 1
            self._notify()

    def campaign(self) -> None:
        """Start an election now (used once at bootstrap to skip a timeout)."""
        self.raw.campaign()
        self._notify()

    async def _run(self) -> None:
        while not self._stopping and self._handoff is None:
            await self._wake.wait()
            self._wake.clear()
            while True:
                self._drain_inputs()
                if not self.raw.has_ready():
                    break
                await self._handle_ready(self.raw.ready())
            self.after_pass()
        if self._handoff is not None and not self._stopping:
            self.attach(self._handoff)  # from now on the host's driver owns the core
            self._handoff = None
            self._notify()  # whatever arrived since this loop's last pass

    # -- what a host's driver calls (quorumlog.node.replication.driver) --------------------------
    @property
    def stopping(self) -> bool:
        return self._stopping

    def next_ready(self) -> Ready | None:
        """Step every queued input into the core; its Ready, if it has one. The caller
        runs the phases on it (``begin_round`` first, ``end_round`` after ``ready_apply``)."""
        self._drain_inputs()
        return self.raw.ready() if self.raw.has_ready() else None

    @property
    def in_round(self) -> bool:
        """A host's driver (or a restore) is between the phases of this node's Ready."""
        return not self._idle.is_set()

    def has_pending_work(self) -> bool:
        """Anything queued, in flight or being handled (quiescence asks: such a group
        must keep ticking). Subscribers waiting for the next entry need no ticks."""
        return bool(
            self._messages or self._proposals or self._reads or self._conf_changes
            or self._forget
            or self._unreachable or self._waiting or self._read_waiters or self._flush_commit
            or self._commit_timer is not None or self.needs_restore
            or self._transfer_to != NONE or self.in_round
        )

    def begin_round(self) -> None:
        self._idle.clear()

    def end_round(self) -> None:
        self._idle.set()
        self._notify()  # look again: handling the Ready may have made another

    def restore_then_apply(self, rd: Ready, index: int) -> None:
        """Restore the state (a peer streams it) and then apply ``rd``, in a task of this
        node's own: the host's other groups go on meanwhile. Ends the round."""

        async def run() -> None:
            try:
                await self._restore(index)
                if not self._stopping:
                    self.ready_apply(rd)
            finally:
                self.end_round()

        task = asyncio.get_running_loop().create_task(run(), name=f"restore-g{self.group}")
        task.add_done_callback(self._task_ended)
        self._tasks = [t for t in self._tasks if not t.done()] + [task]

    def after_pass(self) -> None:
        """Once no Ready is left: send a commit index no append carried, soon."""
        if not self.raw.raft.commit_unsent:
            if self._commit_timer is not None:
                self._commit_timer.cancel()  # an append or heartbeat carried it
                self._commit_timer = None
        elif self._commit_timer is None:
            self._commit_timer = asyncio.get_running_loop().call_later(
                COMMIT_FLUSH_SECONDS, self._commit_flush_due
            )

    def _commit_flush_due(self) -> None:
        self._commit_timer = None
        self._flush_commit = True
        self._notify()

    # -- the loop ------------------------------------------------------------------------------
    def _drain_inputs(self) -> None:
        raw = self.raw
        ticks, self._ticks = self._ticks, 0
        for _ in range(ticks):
            raw.tick()
        if self._messages:
            messages, self._messages = self._messages, []
            for message in messages:
                try:
                    raw.step(message)
                except RaftError as error:
                    log.warning("dropped message from n%d: %s", message.frm, error)
        if self._unreachable:
            for peer_id in self._unreachable:
                raw.report_unreachable(peer_id)
            self._unreachable.clear()
        if self._transfer_to != NONE:
            raw.transfer_leader(self._transfer_to)
            self._transfer_to = NONE
        if self._conf_changes:
            self._propose_conf_changes()
        if self._proposals:
            proposals, self._proposals = self._proposals, []
            self._propose(proposals)
        if self._reads:
            reads, self._reads = self._reads, []
            for context, future in reads:
                try:
                    raw.read_index(context)
                except ProposalDropped as error:
                    future.set_exception(NotLeader(raw.raft.leader_id, str(error)))
                    continue
                self._read_waiters[context] = future
        if self._forget:
            for peer in self._forget:
                raw.forget_progress(peer)
            self._forget.clear()
        if self._flush_commit:
            # No append carried the new commit index within COMMIT_FLUSH_SECONDS: send it.
            self._flush_commit = False
            raw.flush_commit()

    def _propose(self, proposals: list[_Proposal]) -> None:
        """Group commit: every pending command becomes part of one entry (split by size)."""
        raw = self.raw
        now_ms = int(time.time() * 1000)
        group: list[_Proposal] = []
        size = 0
        groups: list[list[_Proposal]] = []
        for proposal in proposals:
            if proposal.future.done():
                continue  # the caller gave up (deadline) before we proposed
            if group and size + proposal.size > self.max_entry_bytes:
                groups.append(group)
                group, size = [], 0
            group.append(proposal)
            size += proposal.size
        if group:
            groups.append(group)
        for members in groups:
            batch = commands_pb2.CommandBatch(
                leader_time_ms=now_ms, commands=[member.command for member in members]
            )
            try:
                term, index = raw.propose(batch.SerializeToString())
            except ProposalDropped as error:
                for member in members:
                    if not member.future.done():
                        member.future.set_exception(NotLeader(raw.raft.leader_id, str(error)))
                continue
            self._waiting[index] = _Waiting(term, [member.future for member in members])
            self.metrics.proposals += 1
            self.metrics.commands_proposed += len(members)

    def _count_sent(self, messages: list[Message]) -> None:
        metrics = self.metrics
        metrics.messages_sent += len(messages)
        for message in messages:
            if message.type == MessageType.APP:
                metrics.append_messages_sent += 1
                metrics.append_entries_sent += len(message.entries)
                if not message.entries:
                    metrics.append_empty_sent += 1

    # -- one Ready, in phases. The standalone loop (``_handle_ready``) runs them in a row;
    # a node hosting several groups runs each phase for every group ready together
    # (``quorumlog.node.replication.driver``): one write, one fsync and one frame per peer.
    def ready_send(self, rd: Ready) -> None:
        """Phase 1: role changes, then the messages that may leave before the write."""
        self.metrics.readies += 1
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state.role, rd.soft_state.leader_id)
        if rd.messages:
            self._send(rd.messages)
            self._count_sent(rd.messages)
        if self.unsafe_ack_before_fsync and rd.persisted_messages:
            # Chaos canary only: acknowledge before the write is durable (and never fsync).
            self._send(rd.persisted_messages)

    def persist_mode(self, rd: Ready) -> bool | None:
        """Phase 2's need: None (nothing to write), else whether the write must be synced."""
        if rd.hard_state is None and not rd.entries and rd.snapshot is None:
            return None
        return rd.must_sync and not self.unsafe_ack_before_fsync

    def persisted(self, rd: Ready, *, synced: bool, seconds: float) -> None:
        """Phase 2 done (the write of ``rd`` returned): count it."""
        metrics = self.metrics
        if synced:
            metrics.synced_writes += 1
            metrics.fsync_seconds += seconds
            metrics.entries_per_sync.append(len(rd.entries))
            if len(metrics.entries_per_sync) > 4096:
                del metrics.entries_per_sync[:2048]
        metrics.entries_persisted += len(rd.entries)
        if rd.entries:
            self._log_bytes += sum(len(entry.data) for entry in rd.entries)
            self._byte_marks.append((rd.entries[-1].index, self._log_bytes))

    def ready_acks(self, rd: Ready) -> bool:
        """Phase 3: the messages that vouch for the write (votes, append acknowledgements).
        True when they should get to gRPC before the apply (they carry what a leader
        waits for, and there is something to apply)."""
        if not rd.persisted_messages or self.unsafe_ack_before_fsync:
            return False
        self._send(rd.persisted_messages)
        self._count_sent(rd.persisted_messages)
        return bool(rd.committed_entries)

    def restore_point(self, rd: Ready) -> int | None:
        """The index a state restore must reach before ``rd`` is applied (None: none)."""
        if rd.snapshot is None and not (self.needs_restore and rd.committed_entries):
            return None
        return max(rd.snapshot.metadata.index if rd.snapshot else 0,
                   self.storage.snapshot().metadata.index)

    def ready_apply(self, rd: Ready) -> None:
        """Phase 4: apply, answer reads and waiting calls, advance, maybe compact."""
        if rd.committed_entries:
            self._apply(rd.committed_entries)
        for read_state in rd.read_states:
            future = self._read_waiters.pop(read_state.request_ctx, None)
            if future is not None and not future.done():
                future.set_result(read_state.index)
        self.raw.advance(rd)
        self._wake_applied()
        self._maybe_compact()

    async def _handle_ready(self, rd: Ready) -> None:
        self.ready_send(rd)
        sync = self.persist_mode(rd)
        if sync is not None:
            started = time.perf_counter()
            if sync and rd.messages:
                # The synced write stalls this process's event loop, so first let the peer
                # links hand this Ready's appends to gRPC: followers then persist in parallel
                # with us instead of after us.
                for _ in range(SEND_HOPS):
                    await asyncio.sleep(0)
            # On the loop thread, not a worker: a thread bought little overlap and cost two
            # wake-ups (measured: sequential append p50 3.28 -> 2.97 ms). With a thread
            # writing synced 100-byte batches back to back, a spinning main thread kept only
            # ~20% of its speed (the GIL is held through most of a small write); with 50 KB
            # batches it kept ~80%, but each write then took up to the 5 ms switch interval
            # to get the GIL back, and batched half-load latency did not improve (p50 12 ->
            # 14 ms with writes of 16 KB and more in a thread). Requests arriving meanwhile
            # wait in gRPC and form the next batch (group commit).
            self.storage.write_ready(rd, sync=sync)
            self.persisted(rd, synced=sync, seconds=time.perf_counter() - started)
        if self.ready_acks(rd):
            # A follower's acknowledgement is what the leader waits for; applying first
            # would hold it back by the apply's duration. Let the peer link hand it to
            # gRPC, then apply while it travels.
            await asyncio.sleep(0)
        restore_from = self.restore_point(rd)
        if restore_from is not None:
            await self._restore(restore_from)
        self.ready_apply(rd)

    def _apply(self, entries: list[Entry]) -> None:
        results = self.state_machine.apply(entries)
        self.metrics.entries_applied += len(entries)
        if self.on_membership_applied is not None and any(
            entry.type == EntryType.CONF_CHANGE for entry in entries
        ):
            self.on_membership_applied()
        waiting = self._waiting
        for entry, result in zip(entries, results, strict=True):
            pending = waiting.pop(entry.index, None)
            if pending is None:
                continue
            error: Exception | None = None
            if pending.term != entry.term:
                # Our entry was replaced by another leader's: it never committed.
                error = NotLeader(self.raw.raft.leader_id, "leadership changed; not written")
            elif result.skipped:
                error = OutcomeUnknown("applied from a snapshot; result not known")
            elif result.error is not None:
                error = CommandFailed(result.error)
            for position, future in enumerate(pending.futures):
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                elif position < len(result.results):
                    future.set_result((entry.index, result.results[position]))
                else:
                    future.set_exception(OutcomeUnknown("no result for this command"))

    def _wake_applied(self) -> None:
        applied = self.raw.raft.log.applied
        waiters = self._applied_waiters
        while waiters and waiters[0][0] <= applied:
            _, _, future = heapq.heappop(waiters)
            if not future.done():
                future.set_result(None)

    def _on_soft_state(self, role: StateRole, leader_id: NodeId) -> None:
        was_leader = self.role == StateRole.LEADER
        self.role = role
        self.leader_id = leader_id
        if was_leader and role != StateRole.LEADER:
            self._fail_all(OutcomeUnknown("leadership lost while the request was in flight"))
        if self.on_role_change is not None:
            self.on_role_change(role, leader_id, self.raw.raft.term)

    def _fail_all(self, error: Exception) -> None:
        for pending in self._waiting.values():
            for future in pending.futures:
                if not future.done():
                    future.set_exception(error)
        self._waiting.clear()
        for future in self._read_waiters.values():
            if not future.done():
                future.set_exception(error)
        self._read_waiters.clear()
        for proposal in self._proposals:
            if not proposal.future.done():
                proposal.future.set_exception(NotLeader(self.leader_id, str(error)))
        self._proposals.clear()
        for _, read_future in self._reads:
            if not read_future.done():
                read_future.set_exception(NotLeader(self.leader_id, str(error)))
        self._reads.clear()

    def _maybe_compact(self) -> None:
        applied = self.raw.raft.log.applied
        snapshot_index = self.storage.snapshot_index()  # every Ready: no RocksDB read
        by_bytes = self.snapshot_bytes is not None and (
            self._log_bytes - self._log_bytes_at_snapshot >= self.snapshot_bytes)
        if applied - snapshot_index < self.snapshot_every and not by_bytes:
            return
        if applied <= snapshot_index:
            return
        # The snapshot is a marker: the state itself lives in RocksDB and is streamed to a
        # follower that needs it (FetchState), so creating one copies nothing.
        self.storage.create_snapshot(applied, self.raw.raft.conf_state(), b"")
        self._log_bytes_at_snapshot = self._log_bytes
        compact_to = max(applied - self.snapshot_keep, self._keep_bytes_from(applied))
        if compact_to >= self.storage.first_index():
            self.storage.compact(compact_to)
        log.info("n%d g%d snapshot at %d, log compacted to %d",
                 self.id, self.group, applied, compact_to)

    def _keep_bytes_from(self, applied: int) -> int:
        """The highest index up to which compacting still leaves at least
        KEEP_BYTES_FACTOR * snapshot_bytes of log (0 when the log is not that long)."""
        if self.snapshot_bytes is None:
            return 0
        keep = KEEP_BYTES_FACTOR * self.snapshot_bytes
        marks = self._byte_marks
        compact_to = 0
        while marks and marks[0][0] <= applied and self._log_bytes - marks[0][1] >= keep:
            compact_to = marks.popleft()[0]
        return compact_to

    async def _restore(self, min_index: int) -> None:
        """Replace the state machine with a peer's state at or after ``min_index``."""
        delay = 0.1
        while True:
            candidates = [self.raw.raft.leader_id] if self.raw.raft.leader_id else []
            candidates += [peer for peer in self._peer_ids() if peer not in candidates]
            for peer in candidates:
                if peer in (NONE, self.id):
                    continue
                try:
                    await self._restore_from(peer, min_index)
                except Exception as error:
                    if is_rocksdb_error(error):
                        raise  # a write or fsync of ours failed: never retried (it is fatal)
                    log.warning("n%d restore from n%d failed: %s", self.id, peer, error)
                    continue
                self.needs_restore = False
                self.metrics.snapshots_restored += 1
                if self.on_membership_applied is not None:
                    self.on_membership_applied()
                log.info(
                    "n%d restored state at %d from n%d",
                    self.id, self.state_machine.applied_index(), peer,
                )
                return
            await asyncio.sleep(delay)  # retry pacing while no peer can serve the state
            delay = min(delay * 2, 2.0)

    async def _restore_from(self, peer: NodeId, min_index: int) -> None:
        await import_state_from(self.state_machine, self._fetch_state(peer, min_index), peer,
                                min_index)
