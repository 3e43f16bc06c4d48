"""The chaos run's consumers: one consumer group over every session, every call recorded.

Owns: the :class:`Consumer` workers (one operation in flight each, through the client-port
proxies like every worker of ``quorumlog.chaos.run.workload``) and the final :func:`drain`. A
consumer takes the next available session with a lease (``accept`` with no session name),
receives peek-lock batches under its fencing token (always ``redeliver_in_flight``, so the
messages of a receive whose answer was lost come back first), settles each batch (mostly
complete; some abandoned, with or without a delay, to exercise redelivery; a few
dead-lettered), renews or releases its lease every few batches, and now and then plays a
*zombie*: it releases, takes the session again under another consumer name (a newer token),
receives the released messages again, then settles those live deliveries and writes the
session state with the old token, which only the fencing check can refuse. A receive is
never retried after an attempt of unknown outcome (that attempt may have locked messages; the
history must show it as ``info``). The drain, after the cluster healed, takes every session
for the group on the real client ports, consumes and completes everything left, lists the
group's dead letters and records ``drain`` ``ok`` only when every session's backlog is 0.
In a sharded cluster every call about a session goes to (and is recorded with) that session's
shard; an accept of the next available session names a shard (``AcceptSessionRequest.shard``),
each consumer taking the shards in turn, so every shard's sessions get consumed whichever node
leads them. Must never: judge the history, inject faults, or run unbounded (operation caps and
deadlines).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from quorumlog.chaos.run.envelopes import observed_record
from quorumlog.chaos.run.history import DRAIN_PROCESS, ProcessId
from quorumlog.chaos.run.workload import Attempts, Recorder, Worker, WorkloadConfig
from quorumlog.client._grpc import NodeConnection
from quorumlog.proto import consumer_pb2 as cpb

ACTIONS = {"complete": cpb.COMPLETE, "abandon": cpb.ABANDON, "dead_letter": cpb.DEAD_LETTER}
IDLE_SECONDS = 0.3  # pause after "nothing available", cut short when the run stops
DRAIN_DEADLINE = 90.0
DRAIN_BATCH = 200


@dataclass
class _Lease:
    session: str
    token: int


@dataclass(frozen=True)
class _Message:
    offset: int
    value: str
    count: int


class ConsumerBase(Worker):
    """Recorded consumer calls (each one operation) on top of a worker's routing."""

    def __init__(self, process: ProcessId, recorder: Recorder, addresses: dict[str, str],
                 config: WorkloadConfig, seed: int) -> None:
        super().__init__(process, recorder, addresses, config, seed)
        self.refused = False  # the last receive was refused (a stale or lapsed lease)
        self.last_error: str | None = None  # of the last accept that granted nothing
        # The next accept-next's shard (drawn only when sharded: one shard, same choices).
        self.next_shard = self.rng.randrange(config.shards) if config.shards > 1 else 0

    async def call(self, method: str, request: object, *, retry_unknown: bool = True,
                   key: int | None = None) -> tuple[Any, Attempts]:
        """One recorded call, routed by ``key`` (a shard; None: cluster-wide)."""
        async def one(node: NodeConnection, timeout: float) -> object:
            return await node.consumer(method, request, timeout)

        return await self.attempt(one, retry_unknown=retry_unknown, key=key)

    def pair(self, session: str) -> dict[str, object]:
        return {"session": session, "group": self.config.group,
                "shard": self.config.shard_of(session)}

    def key(self, session: str) -> int | None:
        return self.config.route_key(session)

    async def create_group(self) -> bool:
        self.recorder.invoke(self.process, "create_group", group=self.config.group)
        request = cpb.CreateGroupRequest(group=self.config.group, lock_ms=self.config.lock_ms,
                                         max_deliveries=self.config.max_deliveries,
                                         exist_ok=True)
        response, attempts = await self.call("CreateGroup", request)
        if response is None:
            self.recorder.complete(attempts.outcome, self.process, "create_group",
                                   error=attempts.error)
            return False
        self.recorder.complete("ok", self.process, "create_group",
                               max_deliveries=response.max_deliveries)
        return True

    async def accept(self, consumer: str, session: str | None = None) -> _Lease | None:
        """A lease on ``session`` (None: the next available one) for ``consumer``."""
        shard: int | None
        if session is not None:
            shard = self.config.shard_of(session)
        elif self.config.shards > 1:
            shard = self.next_shard % self.config.shards  # the shards in turn
            self.next_shard += 1
        else:
            shard = None
        self.recorder.invoke(self.process, "accept", group=self.config.group,
                             consumer=consumer, session=session, shard=shard)
        request = cpb.AcceptSessionRequest(session=session or "", group=self.config.group,
                                           consumer=consumer, lease_ms=self.config.lease_ms)
        if session is None and shard is not None:
            request.shard = shard
        response, attempts = await self.call("AcceptSession", request, key=shard)
        self.last_error = attempts.error
        if response is None:
            self.recorder.complete(attempts.outcome, self.process, "accept",
                                   error=attempts.error)
            return None
        if not response.session:
            self.recorder.complete("ok", self.process, "accept")  # nothing available
            return None
        self.recorder.complete("ok", self.process, "accept", session=response.session,
                               token=response.token)
        return _Lease(response.session, response.token)

    async def receive(self, lease: _Lease, limit: int) -> list[_Message] | None:
        """The batch delivered (None: refused or unknown; ``self.refused`` tells which)."""
        self.recorder.invoke(self.process, "receive", **self.pair(lease.session),
                             token=lease.token, max_messages=limit)
        request = cpb.ReceiveRequest(session=lease.session, group=self.config.group,
                                     token=lease.token, max_messages=limit,
                                     redeliver_in_flight=True)
        response, attempts = await self.call("Receive", request, retry_unknown=False,
                                             key=self.key(lease.session))
        if response is None:
            self.refused = attempts.outcome == "fail"
            self.recorder.complete(attempts.outcome, self.process, "receive",
                                   error=attempts.error)
            return None
        batch = [_Message(message.offset, observed_record(message), message.delivery_count)
                 for message in response.messages]
        # Every message of a receive is locked until the leader's clock then + the group's
        # lock: so the receive's clock, by which scheduled messages were judged due.
        leader_time = (min(m.locked_until_ms for m in response.messages) - self.config.lock_ms
                       if response.messages else None)
        self.recorder.complete("ok", self.process, "receive",
                               records=[[item.offset, item.value] for item in batch],
                               counts=[item.count for item in batch], leader_time=leader_time)
        return batch

    async def settle(self, lease: _Lease, chosen: list[tuple[_Message, str]]) -> str:
        """Settle ``chosen`` (message, action) under ``lease``'s token; the outcome."""
        settlements = [[item.offset, item.count, action] for item, action in chosen]
        self.recorder.invoke(self.process, "settle", **self.pair(lease.session),
                             token=lease.token, settlements=settlements)
        request = cpb.SettleRequest(
            session=lease.session, group=self.config.group, token=lease.token,
            settlements=[cpb.Settlement(
                offset=item.offset, delivery_count=item.count, action=ACTIONS[action],
                delay_ms=self._delay() if action == "abandon" else 0,
                reason="chaos consumer" if action == "dead_letter" else "")
                for item, action in chosen])
        response, attempts = await self.call("Settle", request, key=self.key(lease.session))
        outcome = "ok" if response is not None else attempts.outcome
        self.recorder.complete(outcome, self.process, "settle", error=attempts.error)
        return outcome

    def _delay(self) -> int:
        return 0

    async def lease_call(self, op: str, lease: _Lease) -> str:
        """``renew`` or ``release``; the outcome."""
        self.recorder.invoke(self.process, op, **self.pair(lease.session), token=lease.token)
        request: cpb.RenewLeaseRequest | cpb.ReleaseSessionRequest
        if op == "renew":
            method, request = "RenewLease", cpb.RenewLeaseRequest(
                session=lease.session, group=self.config.group, token=lease.token,
                lease_ms=self.config.lease_ms)
        else:
            method, request = "ReleaseSession", cpb.ReleaseSessionRequest(
                session=lease.session, group=self.config.group, token=lease.token)
        response, attempts = await self.call(method, request, key=self.key(lease.session))
        outcome = "ok" if response is not None else attempts.outcome
        self.recorder.complete(outcome, self.process, op, error=attempts.error)
        return outcome


class Consumer(ConsumerBase):
    def __init__(self, process: int, recorder: Recorder, addresses: dict[str, str],
                 config: WorkloadConfig, seed: int) -> None:
        super().__init__(process, recorder, addresses, config, seed)
        self.name = f"c{process}"
        self.created = False
        self.lease: _Lease | None = None
        self.batch: list[_Message] = []
        self.batches = 0
        self.stop: asyncio.Event | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self.stop = stop
        await super().run(stop)

    def _delay(self) -> int:
        return self.rng.choice((0, 0, 50, 200))

    async def step(self) -> None:
        if not self.created:
            self.created = await self.create_group()
            return
        if self.lease is None:
            self.lease = await self.accept(self.name)
            self.batches = 0
            if self.lease is None:
                await self._idle()
            return
        if self.batch:
            if self.rng.random() < self.config.zombie_rate:
                await self._zombie(self.lease)
            else:
                await self._settle_batch(self.lease)
            return
        if self.batches >= self.config.batches_per_lease:
            if self.rng.random() < 0.5 and await self.lease_call("renew", self.lease) == "ok":
                self.batches = 0
                return
            await self.lease_call("release", self.lease)
            self.lease = None
            return
        self.refused = False
        batch = await self.receive(self.lease, self.rng.randint(1, self.config.receive_max))
        self.batches += 1
        if batch is None:
            if self.refused:
                self.lease = None  # a stale or lapsed lease: take a session again
            return
        self.batch = batch
        if not batch:
            self.batches = self.config.batches_per_lease  # nothing left here: move on

    async def _settle_batch(self, lease: _Lease) -> None:
        chosen: list[tuple[_Message, str]] = []
        for item in self.batch:
            draw = self.rng.random()
            action = ("dead_letter" if draw < self.config.dead_letter_rate else
                      "abandon" if draw < self.config.dead_letter_rate + self.config.abandon_rate
                      else "complete")
            chosen.append((item, action))
        self.batch = []
        await self.settle(lease, chosen)

    async def _zombie(self, lease: _Lease) -> None:
        """Give the lease up, take the session again under another name (a newer token) and
        receive the released messages again under it; then, as the old owner, settle those
        live deliveries and write the state with the old token: only the fencing token can
        refuse them. The newer lease then carries on with that batch."""
        self.batch = []
        await self.lease_call("release", lease)
        newer = await self.accept(f"{self.name}-z", lease.session)
        self.lease = newer
        if newer is None:
            return
        self.refused = False
        batch = await self.receive(newer, self.config.receive_max)
        if batch is None:
            self.lease = None if self.refused else newer
            return
        if batch:
            await self.settle(lease, [(item, "complete") for item in batch])
        await self.stale_state(lease)
        self.batch = batch
        self.batches += 1

    async def stale_state(self, lease: _Lease) -> None:
        """A state write under the old token, after the newer lease: must be refused."""
        self.recorder.invoke(self.process, "set_state", **self.pair(lease.session),
                             token=lease.token)
        request = cpb.SetStateRequest(session=lease.session, group=self.config.group,
                                      token=lease.token,
                                      state=cpb.StateWrite(expected_version=0, data=b"zombie"))
        response, attempts = await self.call("SetState", request, key=self.key(lease.session))
        outcome = "ok" if response is not None else attempts.outcome
        self.recorder.complete(outcome, self.process, "set_state", error=attempts.error)

    async def _idle(self) -> None:
        if self.stop is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), IDLE_SECONDS)


class Drainer(ConsumerBase):
    """The final drain, on the real client ports after every fault healed."""

    def __init__(self, recorder: Recorder, addresses: dict[str, str], config: WorkloadConfig,
                 seed: int, process: ProcessId = DRAIN_PROCESS) -> None:
        super().__init__(process, recorder, addresses, config, seed)

    async def drain(self, sessions: list[str], deadline: float) -> list[str]:
        """Consume everything left; the problems (empty: drained, recorded ``drain`` ok)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        problems: list[str] = []
        while not await self.create_group():
            if loop.time() >= end:
                problems.append("the group could not be created")
                break
        for session in sessions:
            if problems:
                break
            problem = await self._drain_session(session, end)
            if problem:
                problems.append(f"{session}: {problem}")
        for session in sessions:
            await self._dead_letters(session)
        left = [] if problems else await self._backlogs(sessions)
        problems += [f"{session}: backlog {count} after the drain" for session, count in left]
        # One process, one operation at a time: the drain's verdict is recorded at its end.
        self.recorder.invoke(self.process, "drain", group=self.config.group)
        if problems:
            self.recorder.complete("fail", self.process, "drain",
                                   error="; ".join(problems)[:500])
        else:
            self.recorder.complete("ok", self.process, "drain")
        return problems

    async def _drain_session(self, session: str, end: float) -> str | None:
        loop = asyncio.get_running_loop()
        lease: _Lease | None = None
        while loop.time() < end:
            if lease is None:
                lease = await self.accept(DRAIN_PROCESS, session)
                if lease is None:
                    if self.last_error and "not found" in self.last_error:
                        return None  # never written: nothing to drain
                    # Another consumer's lease is still live; it lapses within lease_ms.
                    await asyncio.sleep(0.2)  # polling pace; the loop is bounded by ``end``
                continue
            self.refused = False
            batch = await self.receive(lease, DRAIN_BATCH)
            if batch is None:
                if self.refused:
                    lease = None
                continue
            if batch:
                await self.settle(lease, [(item, "complete") for item in batch])
                continue
            backlog = dict(await self._backlogs([session])).get(session, 0)
            if backlog == 0:
                await self.lease_call("release", lease)
                return None
            await asyncio.sleep(0.1)  # a delayed redelivery (at most 200 ms); bounded by end
        return "deadline passed"

    async def _dead_letters(self, session: str) -> None:
        records: list[list[object]] = []
        start = 0
        self.recorder.invoke(self.process, "dead_letters", **self.pair(session))
        while True:
            request = cpb.ListDeadLettersRequest(session=session, from_sequence=start,
                                                 limit=1000)
            response, attempts = await self.call("ListDeadLetters", request,
                                                 key=self.key(session))
            if response is None:
                if attempts.error and "not found" in attempts.error:
                    break  # a session never written has no dead letters
                self.recorder.complete("fail", self.process, "dead_letters",
                                       error=attempts.error)
                return
            records += [[item.offset, observed_record(item)]
                        for item in response.dead_letters if item.group == self.config.group]
            if not response.truncated or not response.dead_letters:
                break
            start = response.dead_letters[-1].sequence + 1
        self.recorder.complete("ok", self.process, "dead_letters", records=records)

    async def _backlogs(self, sessions: list[str]) -> list[tuple[str, int]]:
        """(session, backlog) of the group for every session with one (reads change
        nothing, so they are not recorded)."""
        found: list[tuple[str, int]] = []
        for session in sessions:
            request = cpb.ListConsumerSessionsRequest(session=session)
            response, _ = await self.call("ListConsumerSessions", request,
                                          key=self.key(session))
            if response is None:
                continue
            for status in response.sessions:
                for group in status.groups:
                    if group.group == self.config.group and (group.backlog or group.in_flight):
                        found.append((session, group.backlog))
        return found


async def drain(recorder: Recorder, addresses: dict[str, str], config: WorkloadConfig, *,
                seed: int, sessions: list[str], deadline: float = DRAIN_DEADLINE) -> list[str]:
    """The final drain of ``config.group`` over ``sessions``; the problems found."""
    drainer = Drainer(recorder, addresses, config, seed)
    try:
        return await drainer.drain(sessions, deadline)
    finally:
        await drainer.route.close()
