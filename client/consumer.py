"""Consuming in the SDK: consumer groups, peek-lock receive and settle, session leases with
fencing tokens, session state, dead letters and session policies.

Owns: building ``quorumlog.v1.Consumer`` requests, running each through the client's
:class:`Router` (leader found and followed, UNAVAILABLE retried until the deadline, a refusal
raised at once as a typed error); the values results come back as are in
``quorumlog.client.consumer_results``. Must never:
decide delivery, expiry or ownership (the replicated state does, at the leader's time) or hold
messages between calls.

Routing: a call on a session goes to the leader of the session's shard; cluster-wide calls
(``create_group``, listings) to the meta group's. On a sharded cluster ``accept_next`` asks
shard by shard, starting one shard further on each call, so every shard's sessions get their
turn.

Retries: a receive retried after an unknown outcome may have locked messages nobody got; they
are redelivered when their lock expires (at-least-once). A settle retried after an unknown
outcome may answer ``FailedPrecondition`` ("holds no lock") when the first try did settle. An
accept retried by the same consumer name gets the same lease and token back. A purge of named
dead letters retried after an unknown outcome may answer ``NotFound`` when the first try
removed them.

Example::

    async with AsyncClient(addresses) as client:
        await client.consumer.create_group("billing")
        batch = await client.consumer.receive("orders-42", "billing", max_messages=100)
        ...  # process batch.messages in order
        await client.consumer.complete(batch.messages)
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from quorumlog.client._grpc import NodeConnection
from quorumlog.client.consumer_results import (
    Action,
    ConsumerSessionStatus,
    DeadLetter,
    GroupInfo,
    GroupStatus,
    Lease,
    Received,
    ReceivedMessage,
    ReceiveMode,
    ScheduledMessage,
    SessionState,
    Settlement,
    SettleResult,
    StateWrite,
    lease_of,
)
from quorumlog.client.envelope import envelope_of
from quorumlog.client.leader import Router
from quorumlog.client.shards import META
from quorumlog.proto import consumer_pb2 as cpb

T = TypeVar("T")
P = ParamSpec("P")

# The result types are defined in consumer_results and imported from here, as always.
__all__ = [
    "Action",
    "ConsumerOperations",
    "ConsumerSessionStatus",
    "DeadLetter",
    "GroupInfo",
    "GroupStatus",
    "Lease",
    "ReceiveMode",
    "Received",
    "ReceivedMessage",
    "ScheduledMessage",
    "SessionState",
    "SettleResult",
    "Settlement",
    "StateWrite",
    "SyncConsumerOperations",
]


class ConsumerOperations:
    """The consumer calls of one :class:`~quorumlog.client.AsyncClient` (shares its Router)."""

    def __init__(self, router: Router, end_of: Callable[[float | None], float]) -> None:
        self._router = router
        self._end_of = end_of
        self._next_shard = 0  # where the next accept_next starts on a sharded cluster

    async def _call(
        self, method: str, request: object, deadline: float | None, *, extra: float = 0.0,
        follow_leader: bool = True, session: str = "", shard: int | None = None,
    ) -> Any:
        """One call through the router, to ``session``'s shard leader (``shard``'s when
        given; the meta group's leader when neither is)."""
        async def attempt(node: NodeConnection, timeout: float) -> object:
            return await node.consumer(method, request, timeout + extra)

        end = self._end_of(deadline) + extra
        key = META
        if session or shard is not None:
            await self._router.learn(end)
            shards = self._router.shards
            key = shards.key_of(session) if shard is None else shards.key_of_shard(shard)
        return await self._router.call(
            attempt, end=end, key=key, follow_leader=follow_leader, what=f"consumer {method}",
        )

    # -- groups ----------------------------------------------------------------------------------
    async def create_group(
        self, group: str, *, lock_ms: int = 0, max_deliveries: int = 0, exist_ok: bool = True,
        deadline: float | None = None,
    ) -> GroupInfo:
        """Create a consumer group (its settings apply to every session it reads);
        ``exist_ok``: an existing group is returned unchanged."""
        request = cpb.CreateGroupRequest(
            group=group, lock_ms=lock_ms, max_deliveries=max_deliveries, exist_ok=exist_ok
        )
        r = cast(cpb.GroupInfo, await self._call("CreateGroup", request, deadline))
        return GroupInfo(r.group, r.lock_ms, r.max_deliveries, r.created_ms, r.created)

    # -- receive and settle ----------------------------------------------------------------------
    async def receive(
        self, session: str, group: str, *, max_messages: int = 100, max_bytes: int = 0,
        token: int = 0, mode: ReceiveMode = ReceiveMode.PEEK_LOCK, lock_ms: int = 0,
        wait_ms: int = 0, redeliver_in_flight: bool = False,
        deferred_offsets: Sequence[int] = (), deadline: float | None = None,
    ) -> Received:
        """Up to ``max_messages`` of ``session`` for ``group``, in order: redeliveries first,
        then new ones. ``wait_ms``: wait that long for one when none is ready.
        ``redeliver_in_flight`` (with the lease's ``token``, when everything received so far
        is settled): messages still locked, whose receive's answer was lost, come again.
        ``deferred_offsets``: receive these deferred messages instead (``defer``); each is
        locked again and, when its lock lapses, deferred again (NotFound: not deferred)."""
        request = cpb.ReceiveRequest(
            session=session, group=group, token=token, max_messages=max_messages,
            max_bytes=max_bytes, mode=int(mode),  # type: ignore[arg-type]
            lock_ms=lock_ms, wait_ms=wait_ms, redeliver_in_flight=redeliver_in_flight,
            deferred_offsets=deferred_offsets,
        )
        r = cast(cpb.ReceiveResponse, await self._call(
            "Receive", request, deadline, extra=wait_ms / 1000, session=session
        ))
        return Received(
            session, group,
            [
                ReceivedMessage(session, group, m.offset, m.data, m.delivery_count,
                                m.locked_until_ms, r.token, envelope_of(m), m.append_time_ms)
                for m in r.messages
            ],
            r.token, r.backlog,
        )

    async def settle(
        self, session: str, group: str, settlements: Sequence[Settlement], *, token: int = 0,
        state: StateWrite | None = None, deadline: float | None = None,
    ) -> SettleResult:
        """Settle many messages (and write the session state) atomically: all or nothing."""
        request = cpb.SettleRequest(
            session=session, group=group, token=token,
            settlements=[
                cpb.Settlement(offset=s.offset, delivery_count=s.delivery_count,
                               action=int(s.action),  # type: ignore[arg-type]
                               delay_ms=s.delay_ms, reason=s.reason)
                for s in settlements
            ],
        )
        if state is not None:
            request.state.CopyFrom(
                cpb.StateWrite(expected_version=state.expected_version, data=state.data)
            )
        r = cast(cpb.SettleResponse,
                 await self._call("Settle", request, deadline, session=session))
        return SettleResult(
            r.completed, r.abandoned, r.dead_lettered, r.state_version, r.deferred
        )

    async def _settle_all(
        self, messages: Iterable[ReceivedMessage], action: Action, delay_ms: int, reason: str,
        *, state: StateWrite | None, deadline: float | None,
    ) -> SettleResult:
        by_target: dict[tuple[str, str, int], list[Settlement]] = {}
        for message in messages:
            by_target.setdefault((message.session, message.group, message.token), []).append(
                Settlement.of(message, action, delay_ms=delay_ms, reason=reason)
            )
        if state is not None and len(by_target) > 1:
            raise ValueError("a state write settles messages of one session only")
        totals = [0, 0, 0, 0, 0]
        for (session, group, token), settlements in by_target.items():
            result = await self.settle(
                session, group, settlements, token=token, state=state, deadline=deadline
            )
            for position, value in enumerate((
                result.completed, result.abandoned, result.dead_lettered, result.state_version,
                result.deferred,
            )):
                totals[position] += value
        return SettleResult(*totals)

    async def renew_locks(
        self, messages: Iterable[ReceivedMessage], *, lock_ms: int = 0,
        deadline: float | None = None,
    ) -> list[ReceivedMessage]:
        """Extend the peek-locks of ``messages`` to ``lock_ms`` from now (0: the group's lock
        duration); the messages again, with their new ``locked_until_ms``, in order. All of
        one (session, group) renew together or not at all: ``FailedPrecondition`` when one
        was redelivered, settled or its lock expired, or the lease's token is stale."""
        given = list(messages)
        by_target: dict[tuple[str, str, int], list[int]] = {}
        for position, message in enumerate(given):
            by_target.setdefault((message.session, message.group, message.token), []).append(
                position
            )
        renewed = list(given)
        for (session, group, token), positions in by_target.items():
            request = cpb.RenewMessageLockRequest(
                session=session, group=group, token=token, lock_ms=lock_ms,
                locks=[
                    cpb.MessageLock(offset=given[p].offset,
                                    delivery_count=given[p].delivery_count)
                    for p in positions
                ],
            )
            r = cast(cpb.RenewMessageLockResponse, await self._call(
                "RenewMessageLock", request, deadline, session=session
            ))
            for position, until in zip(positions, r.locked_until_ms, strict=True):
                renewed[position] = dataclasses.replace(given[position], locked_until_ms=until)
        return renewed

    async def defer(
        self, messages: Iterable[ReceivedMessage], *, deadline: float | None = None
    ) -> SettleResult:
        """Take ``messages`` out of the group's delivery order, delivery counts kept: later
        messages are delivered without them, and they come again only when received by
        offset (``receive(..., deferred_offsets=...)``)."""
        return await self._settle_all(
            messages, Action.DEFER, 0, "", state=None, deadline=deadline
        )

    async def scheduled(
        self, session: str, *, include_due: bool = False, deadline: float | None = None
    ) -> list[ScheduledMessage]:
        """The scheduled messages of ``session`` (``Envelope.deliver_at_ms``) not yet due
        (with ``include_due``, those whose time has come too), by offset."""
        request = cpb.ListScheduledRequest(session=session, include_due=include_due)
        r = cast(cpb.ListScheduledResponse,
                 await self._call("ListScheduled", request, deadline, session=session))
        return [ScheduledMessage(m.offset, m.deliver_at_ms, m.canceled) for m in r.scheduled]

    async def cancel_scheduled(
        self, session: str, offsets: Sequence[int], *, deadline: float | None = None
    ) -> None:
        """Cancel scheduled messages not yet due: no consumer group will get them (readers of
        the log still see them). All or none: FailedPrecondition names one that is due,
        canceled already or not scheduled."""
        request = cpb.CancelScheduledRequest(session=session, offsets=list(offsets))
        await self._call("CancelScheduled", request, deadline, session=session)

    async def complete(
        self, messages: Iterable[ReceivedMessage], *, state: StateWrite | None = None,
        deadline: float | None = None,
    ) -> SettleResult:
        return await self._settle_all(
            messages, Action.COMPLETE, 0, "", state=state, deadline=deadline
        )

    async def abandon(
        self, messages: Iterable[ReceivedMessage], *, delay_ms: int = 0,
        deadline: float | None = None,
    ) -> SettleResult:
        return await self._settle_all(
            messages, Action.ABANDON, delay_ms, "", state=None, deadline=deadline
        )

    async def dead_letter(
        self, messages: Iterable[ReceivedMessage], reason: str, *, deadline: float | None = None
    ) -> SettleResult:
        return await self._settle_all(
            messages, Action.DEAD_LETTER, 0, reason, state=None, deadline=deadline
        )

    # -- leases ----------------------------------------------------------------------------------
    async def accept(
        self, session: str, group: str, consumer: str, *, lease_ms: int = 0,
        deadline: float | None = None,
    ) -> Lease:
        """Own ``session`` for ``group`` (FailedPrecondition while another consumer does)."""
        request = cpb.AcceptSessionRequest(
            session=session, group=group, consumer=consumer, lease_ms=lease_ms
        )
        return lease_of(cast(cpb.Lease, await self._call(
            "AcceptSession", request, deadline, session=session
        )))

    async def accept_next(
        self, group: str, consumer: str, *, prefix: str = "", lease_ms: int = 0,
        deadline: float | None = None,
    ) -> Lease | None:
        """Own the next session with messages for ``group`` and no owner; None if none.

        On a sharded cluster the shards are asked one after another until one has a session,
        each call starting one shard after where the previous call started (fairness)."""
        request = cpb.AcceptSessionRequest(
            group=group, consumer=consumer, lease_ms=lease_ms, prefix=prefix
        )
        await self._router.learn(self._end_of(deadline))
        count = self._router.shards.count
        if count <= 1:
            lease = lease_of(cast(cpb.Lease, await self._call("AcceptSession", request, deadline)))
            return lease if lease.session else None
        start = self._next_shard % count
        self._next_shard = start + 1
        for step in range(count):
            shard = (start + step) % count
            request.shard = shard
            lease = lease_of(cast(cpb.Lease, await self._call(
                "AcceptSession", request, deadline, shard=shard
            )))
            if lease.session:
                return lease
        return None

    async def renew(
        self, lease: Lease, *, lease_ms: int = 0, deadline: float | None = None
    ) -> Lease:
        request = cpb.RenewLeaseRequest(
            session=lease.session, group=lease.group, token=lease.token, lease_ms=lease_ms
        )
        return lease_of(cast(cpb.Lease, await self._call(
            "RenewLease", request, deadline, session=lease.session
        )))

    async def release(self, lease: Lease, *, deadline: float | None = None) -> None:
        request = cpb.ReleaseSessionRequest(
            session=lease.session, group=lease.group, token=lease.token
        )
        await self._call("ReleaseSession", request, deadline, session=lease.session)

    # -- state -----------------------------------------------------------------------------------
    async def get_state(self, session: str, *, deadline: float | None = None) -> SessionState:
        request = cpb.GetStateRequest(session=session)
        r = cast(cpb.SessionState,
                 await self._call("GetState", request, deadline, session=session))
        return SessionState(session, r.version, r.data)

    async def set_state(
        self, session: str, group: str, data: bytes, *, expected_version: int, token: int = 0,
        deadline: float | None = None,
    ) -> SessionState:
        request = cpb.SetStateRequest(
            session=session, group=group, token=token,
            state=cpb.StateWrite(expected_version=expected_version, data=data),
        )
        r = cast(cpb.SessionState,
                 await self._call("SetState", request, deadline, session=session))
        return SessionState(session, r.version, r.data)

    # -- dead letters and policies ---------------------------------------------------------------
    async def dead_letters(
        self, session: str, *, from_sequence: int = 0, limit: int = 0,
        deadline: float | None = None,
    ) -> list[DeadLetter]:
        """The session's dead letters from ``from_sequence`` (every page; at most ``limit``)."""
        found: list[DeadLetter] = []
        while True:
            request = cpb.ListDeadLettersRequest(
                session=session, from_sequence=from_sequence,
                limit=min(1000, limit - len(found)) if limit else 0,
            )
            r = cast(cpb.ListDeadLettersResponse,
                     await self._call("ListDeadLetters", request, deadline, session=session))
            found.extend(
                DeadLetter(d.sequence, d.offset, d.group, d.reason, d.delivery_count,
                           d.dead_lettered_ms, d.data, envelope_of(d), d.append_time_ms)
                for d in r.dead_letters
            )
            if not r.truncated or not r.dead_letters or (limit and len(found) >= limit):
                return found
            from_sequence = r.dead_letters[-1].sequence + 1

    async def resubmit(
        self, session: str, sequences: Sequence[int] = (), *, deadline: float | None = None
    ) -> tuple[list[int], int]:
        """Append dead letters (all when ``sequences`` is empty; up to 1000 per call) to the
        session again; (their new offsets, dead letters still held)."""
        request = cpb.ResubmitDeadLettersRequest(session=session, sequences=list(sequences))
        r = cast(cpb.ResubmitDeadLettersResponse,
                 await self._call("ResubmitDeadLetters", request, deadline, session=session))
        return list(r.offsets), r.remaining

    async def purge_dead_letters(
        self, session: str, sequences: Sequence[int] = (), *, deadline: float | None = None
    ) -> tuple[int, int]:
        """Remove dead letters for good (all when ``sequences`` is empty; up to 1000 per
        call); (how many were removed, dead letters still held). A sequence that is not a
        held dead letter raises ``NotFound`` naming it, and nothing is removed."""
        request = cpb.PurgeDeadLettersRequest(session=session, sequences=list(sequences))
        r = cast(cpb.PurgeDeadLettersResponse,
                 await self._call("PurgeDeadLetters", request, deadline, session=session))
        return r.purged, r.remaining

    async def configure_session(
        self, session: str, *, session_ttl_ms: int = 0, message_ttl_ms: int = 0,
        retention_ms: int = 0, retention_bytes: int = 0, duplicate_window_ms: int = 0,
        dead_letter_expired: bool = False, deadline: float | None = None,
    ) -> None:
        """Set the session's TTLs and retention (0: none), its message_id duplicate window
        (0: the default, 10 minutes) and whether messages whose own time to live passed go
        to the dead letters ("expired") or are skipped; replaces earlier settings."""
        request = cpb.ConfigureSessionRequest(
            session=session, session_ttl_ms=session_ttl_ms, message_ttl_ms=message_ttl_ms,
            retention_ms=retention_ms, retention_bytes=retention_bytes,
            duplicate_window_ms=duplicate_window_ms, dead_letter_expired=dead_letter_expired,
        )
        await self._call("ConfigureSession", request, deadline, session=session)

    async def close_session(self, session: str, *, deadline: float | None = None) -> None:
        """No more appends to ``session`` (FailedPrecondition); consumers may drain it."""
        await self._call(
            "CloseSession", cpb.CloseSessionRequest(session=session), deadline, session=session
        )

    async def sessions(
        self, prefix: str = "", *, session: str = "", deadline: float | None = None
    ) -> list[ConsumerSessionStatus]:
        """Owner, lease expiry, lag, in-flight count and cursor per group, and dead letters,
        of every session whose name starts with ``prefix`` (or of ``session`` alone), by
        name. A sharded cluster is asked shard by shard, each by its leader, at once."""
        if not session:
            await self._router.learn(self._end_of(deadline))
            count = self._router.shards.count
            if self._router.shards.sharded:
                parts = await asyncio.gather(*(
                    self._sessions_of(prefix, "", shard, deadline) for shard in range(count)
                ))
                return list(heapq.merge(*parts, key=lambda status: status.session))
        return await self._sessions_of(prefix, session, None, deadline)

    async def _sessions_of(
        self, prefix: str, session: str, shard: int | None, deadline: float | None
    ) -> list[ConsumerSessionStatus]:
        """Every page of one listing: ``session``'s, ``shard``'s, or (None) the one node's."""
        found: list[ConsumerSessionStatus] = []
        start_after = ""
        while True:
            request = cpb.ListConsumerSessionsRequest(
                prefix=prefix, session=session, start_after=start_after, limit=1000
            )
            if shard is not None:
                request.shard = shard
            r = cast(cpb.ListConsumerSessionsResponse,
                     await self._call("ListConsumerSessions", request, deadline,
                                      session=session, shard=shard))
            found.extend(
                ConsumerSessionStatus(
                    s.session,
                    [GroupStatus(g.group, g.owner, g.lease_expires_ms, g.token, g.backlog,
                                 g.in_flight, g.next_offset, g.first_unsettled)
                     for g in s.groups],
                    s.dead_letters, s.closed, s.messages_expired,
                )
                for s in r.sessions
            )
            if not r.truncated or not r.sessions:
                return found
            start_after = r.sessions[-1].session


def _blocking(
    method: Callable[Concatenate[ConsumerOperations, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[SyncConsumerOperations, P], T]:
    """``method`` of :class:`ConsumerOperations`, run to completion on the client's loop."""

    def call(self: SyncConsumerOperations, /, *args: P.args, **kwargs: P.kwargs) -> T:
        result: T = self._run(method(self._operations, *args, **kwargs))
        return result

    call.__doc__ = method.__doc__
    return call


class SyncConsumerOperations:
    """The blocking twin of :class:`ConsumerOperations` on a :class:`~quorumlog.client.Client`:
    every method has the same name, arguments and result."""

    def __init__(
        self, operations: ConsumerOperations, run: Callable[[Coroutine[Any, Any, Any]], Any]
    ) -> None:
        self._operations = operations
        self._run = run

    create_group = _blocking(ConsumerOperations.create_group)
    receive = _blocking(ConsumerOperations.receive)
    settle = _blocking(ConsumerOperations.settle)
    renew_locks = _blocking(ConsumerOperations.renew_locks)
    defer = _blocking(ConsumerOperations.defer)
    scheduled = _blocking(ConsumerOperations.scheduled)
    cancel_scheduled = _blocking(ConsumerOperations.cancel_scheduled)
    complete = _blocking(ConsumerOperations.complete)
    abandon = _blocking(ConsumerOperations.abandon)
    dead_letter = _blocking(ConsumerOperations.dead_letter)
    accept = _blocking(ConsumerOperations.accept)
    accept_next = _blocking(ConsumerOperations.accept_next)
    renew = _blocking(ConsumerOperations.renew)
    release = _blocking(ConsumerOperations.release)
    get_state = _blocking(ConsumerOperations.get_state)
    set_state = _blocking(ConsumerOperations.set_state)
    dead_letters = _blocking(ConsumerOperations.dead_letters)
    resubmit = _blocking(ConsumerOperations.resubmit)
    purge_dead_letters = _blocking(ConsumerOperations.purge_dead_letters)
    configure_session = _blocking(ConsumerOperations.configure_session)
    close_session = _blocking(ConsumerOperations.close_session)
    sessions = _blocking(ConsumerOperations.sessions)
