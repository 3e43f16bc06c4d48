"""The consumer API (``Consumer`` gRPC service) of one node: groups, receive, settle, leases,
session state, dead letters, session policies, and the leader's periodic sweep.

Owns: validating requests before anything is proposed, turning them into replicated
``ConsumerCommand`` entries (a receive is a write: it takes locks and counts deliveries),
filling a receive's payloads from the applied state once its entry is applied, long-polling
receives, the consumer listings (read like ``ListSessions``: ReadIndex on the leader), and
proposing a sweep (TTL, retention) every ``SWEEP_SECONDS`` on the leader while any session has
a policy. Proposals, read points and the applied index come from the node port
(``quorumlog.node.api.node_port``); leader hints and status mapping from
``quorumlog.node.api.rpc``, shared with every service. Must never: decide anything at this
node's clock (the apply does, at the entry's leader time; the clock here only decides when to
ask), or reach the Raft driver other than through the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from quorumlog.node.api import rpc
from quorumlog.node.api.guard import current_principal
from quorumlog.node.api.node_port import NodeError
from quorumlog.node.api.rpc import Context
from quorumlog.node.api.shards import LocalShard, ShardTable
from quorumlog.node.common import limits
from quorumlog.node.common.limits import InvalidInput
from quorumlog.node.state import consumer_records
from quorumlog.node.state.consumer_records import ConsumerResult, Cursor
from quorumlog.node.state.session_records import Record
from quorumlog.node.state.state_machine import StateMachineError
from quorumlog.proto import (
    commands_pb2,
    consumer_commands_pb2,
    consumer_pb2,
    consumer_pb2_grpc,
)
from quorumlog.proto import consumer_commands_pb2 as cc

log = logging.getLogger("quorumlog.consumer")

R = TypeVar("R", bound=Message)

SWEEP_SECONDS = 1.0
POLL_SECONDS = 0.25  # a long-polling receive re-checks at least this often (locks expire)
MAX_WAIT_MS = 60_000


def _command(**kind: Any) -> commands_pb2.Command:
    return commands_pb2.Command(consumer=consumer_commands_pb2.ConsumerCommand(**kind))


# How long a shard leader waits for its meta replica to learn a group just created (a
# heartbeat interval or two; the meta leader acknowledged it, so it is committed).
GROUP_CATCH_UP_SECONDS = 1.0


class ConsumerService(consumer_pb2_grpc.ConsumerServicer):
    def __init__(
        self,
        shards: ShardTable,
        node_limits: limits.Limits = limits.DEFAULT_LIMITS,
    ) -> None:
        self.shards = shards
        self.limits = node_limits
        self._sweeper: asyncio.Task[None] | None = None
        self._next_shard = 0  # where the next accept-next-session looks first

    # -- lifecycle (the sweep) ---------------------------------------------------------------
    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(), name="sweep")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _sweep_loop(self) -> None:
        command = _command(sweep=cc.SweepCommand())
        while True:
            await asyncio.sleep(SWEEP_SECONDS)  # a period, not a wait for an event
            for local in self.shards.local_shards():  # each shard this node leads
                if not local.port.is_leader or not local.state_machine.consumers.has_policies():
                    continue
                try:
                    await local.port.propose(command, 8, time.monotonic() + 10)
                except Exception as error:  # the next period tries again
                    log.debug("sweep not applied: %s", error)

    # -- helpers ---------------------------------------------------------------------------------
    async def _check(self, context: Context, *checks: Any) -> None:
        """Run local validations (each a zero-argument callable); abort on the first refusal."""
        try:
            for check in checks:
                check()
        except InvalidInput as error:
            await rpc.abort_invalid(context, error)

    async def _route(self, context: Context, session: str) -> LocalShard:
        """The local group of ``session``'s shard, or abort with where to go instead."""
        try:
            return self.shards.route(session)
        except NodeError as error:
            await rpc.abort_node_error(context, error)

    async def _propose(
        self, context: Context, local: LocalShard, command: commands_pb2.Command, kind: type[R]
    ) -> tuple[int, R]:
        """Replicate ``command`` in ``local``'s group; (its Raft index, its answer)."""
        await self._carry_group(context, local, command)
        index, result = await rpc.propose(context, local.port, command, command.ByteSize())
        assert isinstance(result, ConsumerResult) and isinstance(result.response, kind)
        return index, result.response

    async def _carry_group(
        self, context: Context, local: LocalShard, command: commands_pb2.Command
    ) -> None:
        """Sharded clusters keep consumer groups in the meta group (CreateGroup goes there);
        a data shard gets a group's definition, as an ordinary replicated CreateGroup, the
        first time a command of its sessions names it."""
        if local.group == 0:
            return
        group = getattr(getattr(command.consumer, command.consumer.WhichOneof("kind") or ""),
                        "group", "")
        if not group or local.state_machine.consumers.group(group) is not None:
            return
        record = await self._meta_group(group)
        if record is None:
            return  # the shard answers "no such group" precisely
        create = _command(create_group=cc.CreateGroupCommand(
            group=record.group, lock_ms=record.lock_ms, max_deliveries=record.max_deliveries,
            exist_ok=True,
        ))
        await rpc.propose(context, local.port, create, create.ByteSize())

    async def _meta_group(self, group: str) -> cc.GroupRecord | None:
        """``group``'s definition in the meta group. This node's meta replica may trail the
        meta leader that just acknowledged a CreateGroup: not there, wait (briefly) for the
        replica to apply what it knows is committed, then for its next entries."""
        meta = self.shards.meta
        record = meta.state_machine.consumers.group(group)
        end = time.monotonic() + GROUP_CATCH_UP_SECONDS
        while record is None and time.monotonic() < end:
            target = max(meta.port.status().commit_index, meta.port.applied_index + 1)
            await meta.port.wait_applied(target, min(end, time.monotonic() + 0.1))
            record = meta.state_machine.consumers.group(group)
        return record

    async def _read_session(self, context: Context, session: str) -> LocalShard:
        """A linearizable read point, after which ``session`` is known to exist."""
        await self._check(context, self._session_check(session))
        local = await self._route(context, session)
        await rpc.linearizable(context, local.port)
        try:
            local.state_machine.describe(session)
        except StateMachineError as error:
            await rpc.abort_invalid(context, error)
        return local

    async def _session_change(
        self, context: Context, session: str, command: commands_pb2.Command, kind: type[R],
        *, with_index: bool = False,
    ) -> R:
        """A change to ``session``: its name checked, routed to its shard's group, replicated;
        the answer, carrying the entry's commit index when ``with_index``."""
        await self._check(context, self._session_check(session))
        local = await self._route(context, session)
        index, response = await self._propose(context, local, command, kind)
        if with_index:
            response.commit_index = index  # type: ignore[attr-defined]
        return response

    def _session_check(self, session: str) -> Any:
        return lambda: limits.check_session_id(session, self.limits)

    # -- RPCs ------------------------------------------------------------------------------------
    async def CreateGroup(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.CreateGroupRequest, context: Context
    ) -> consumer_pb2.GroupInfo:
        await self._check(context, lambda: consumer_records.check_group(request.group))
        command = _command(create_group=cc.CreateGroupCommand(
            group=request.group, lock_ms=request.lock_ms, max_deliveries=request.max_deliveries,
            exist_ok=request.exist_ok,
        ))
        return (await self._propose(context, self.shards.meta, command, consumer_pb2.GroupInfo))[1]

    async def Receive(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.ReceiveRequest, context: Context
    ) -> consumer_pb2.ReceiveResponse:
        await self._check(
            context, self._session_check(request.session),
            lambda: consumer_records.check_group(request.group),
        )
        if request.wait_ms > MAX_WAIT_MS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"wait_ms {request.wait_ms} is over the limit of {MAX_WAIT_MS}",
            )
        if request.mode not in (consumer_pb2.PEEK_LOCK, consumer_pb2.RECEIVE_AND_DELETE):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown mode {request.mode}")
        command = _command(receive=cc.ReceiveCommand(
            session=request.session, group=request.group, token=request.token,
            max_messages=request.max_messages, max_bytes=request.max_bytes,
            receive_and_delete=request.mode == consumer_pb2.RECEIVE_AND_DELETE,
            lock_ms=request.lock_ms, redeliver_own=request.redeliver_in_flight,
            deferred=request.deferred_offsets,
        ))
        local = await self._route(context, request.session)
        loop = asyncio.get_running_loop()
        end = loop.time() + request.wait_ms / 1000
        while True:
            if request.wait_ms:
                await self._wait_deliverable(local, request.session, request.group, end)
            applied = local.port.applied_index
            index, response = await self._propose(
                context, local, command, consumer_pb2.ReceiveResponse
            )
            if response.messages or loop.time() >= end:
                break
            await local.port.wait_applied(  # no busy loop of empty receives
                max(applied, index) + 1,
                time.monotonic() + min(POLL_SECONDS, max(0.0, end - loop.time())),
            )
        response.commit_index = index
        self._fill_payloads(local, response)
        return response

    async def _wait_deliverable(
        self, local: LocalShard, session: str, group: str, end: float
    ) -> None:
        """Until the local state suggests a receive would deliver something, or ``end``."""
        loop = asyncio.get_running_loop()
        session_bytes = session.encode("utf-8")
        group_bytes = group.encode("utf-8")
        consumers = local.state_machine.consumers
        while loop.time() < end:
            applied = local.port.applied_index
            try:
                info = local.state_machine.describe(session)
            except StateMachineError:
                return  # the proposal answers precisely
            cursor = consumers.cursor(session_bytes, group_bytes) or Cursor()
            now = max(consumers.clock(), int(time.time() * 1000))
            if cursor.deliverable(now, info.first_offset, info.next_offset):
                return
            await local.port.wait_applied(
                applied + 1, time.monotonic() + min(POLL_SECONDS, end - loop.time())
            )

    def _fill_payloads(self, local: LocalShard, response: consumer_pb2.ReceiveResponse) -> None:
        """Payloads of the delivered offsets from the applied state (read in runs). A message
        trimmed meanwhile is left out: it no longer exists."""
        messages = list(response.messages)
        data: dict[int, Record] = {}
        position = 0
        while position < len(messages):
            start = messages[position].offset
            run = 1
            while (
                position + run < len(messages)
                and messages[position + run].offset == start + run
            ):
                run += 1
            offset = start
            while offset < start + run:
                try:
                    page = local.state_machine.read(
                        response.session, offset, start + run - offset,
                        self.limits.max_read_bytes,
                    )
                except StateMachineError:
                    break
                if not page.records:
                    break
                for found in page.records:
                    data[found.offset] = found
                offset = page.next_offset
            position += run
        del response.messages[:]
        for message in messages:
            record = data.get(message.offset)
            if record is not None:
                message.data = record.data
                message.append_time_ms = record.append_time_ms
                if record.envelope:
                    message.envelope.MergeFromString(record.envelope)
                response.messages.append(message)

    async def RenewMessageLock(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.RenewMessageLockRequest, context: Context
    ) -> consumer_pb2.RenewMessageLockResponse:
        await self._check(
            context, self._session_check(request.session),
            lambda: consumer_records.check_group(request.group),
        )
        renew = cc.RenewLocksCommand(
            session=request.session, group=request.group, token=request.token,
            lock_ms=request.lock_ms,
            locks=[
                cc.LockRenewal(offset=lock.offset, delivery_count=lock.delivery_count)
                for lock in request.locks
            ],
        )
        local = await self._route(context, request.session)
        index, response = await self._propose(
            context, local, _command(renew_locks=renew), consumer_pb2.RenewMessageLockResponse
        )
        response.commit_index = index
        return response

    async def Settle(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.SettleRequest, context: Context
    ) -> consumer_pb2.SettleResponse:
        await self._check(
            context, self._session_check(request.session),
            lambda: consumer_records.check_group(request.group),
        )
        if request.HasField("state"):
            await self._check(
                context, lambda: consumer_records.check_state_size(request.state.data)
            )
        settle = cc.SettleCommand(
            session=request.session, group=request.group, token=request.token,
            settlements=[
                cc.Settlement(
                    offset=item.offset, delivery_count=item.delivery_count, action=item.action,
                    delay_ms=item.delay_ms, reason=item.reason,
                )
                for item in request.settlements
            ],
        )
        if request.HasField("state"):
            settle.state.CopyFrom(cc.StateWrite(
                expected_version=request.state.expected_version, data=request.state.data
            ))
        local = await self._route(context, request.session)
        index, response = await self._propose(
            context, local, _command(settle=settle), consumer_pb2.SettleResponse
        )
        response.commit_index = index
        return response

    async def AcceptSession(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.AcceptSessionRequest, context: Context
    ) -> consumer_pb2.Lease:
        checks = [
            lambda: consumer_records.check_group(request.group),
            lambda: consumer_records.check_consumer(request.consumer),
        ]
        if request.session:
            checks.append(self._session_check(request.session))
        await self._check(context, *checks)
        command = _command(accept=cc.AcceptCommand(
            session=request.session, group=request.group, consumer=request.consumer,
            lease_ms=request.lease_ms, prefix=request.prefix,
        ))
        if request.session:
            return await self._lease(context, await self._route(context, request.session),
                                     command)
        return await self._accept_next(context, request, command)

    async def _accept_next(
        self, context: Context, request: consumer_pb2.AcceptSessionRequest,
        command: commands_pb2.Command,
    ) -> consumer_pb2.Lease:
        """The next available session: in the asked shard, else in each shard this node
        leads in turn, starting after the one that answered last (fair across shards)."""
        if request.HasField("shard") or not self.shards.sharded:
            try:
                local = self.shards.for_shard(request.shard if request.HasField("shard") else 0)
            except NodeError as error:
                await rpc.abort_node_error(context, error)
            return await self._lease(context, local, command)
        led = [local for local in self.shards.local_shards() if local.port.is_leader]
        if not led:
            await rpc.abort_node_error(context, self.shards.meta.port.not_leader(
                "this node leads no shard: ask each shard's leader (AcceptSessionRequest.shard)"
            ))
        start = self._next_shard % len(led)
        self._next_shard += 1
        lease = consumer_pb2.Lease()
        for local in led[start:] + led[:start]:
            lease = await self._lease(context, local, command)
            if lease.session:
                break
        return lease

    async def _lease(
        self, context: Context, local: LocalShard, command: commands_pb2.Command
    ) -> consumer_pb2.Lease:
        index, response = await self._propose(context, local, command, consumer_pb2.Lease)
        response.commit_index = index
        return response

    async def RenewLease(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.RenewLeaseRequest, context: Context
    ) -> consumer_pb2.Lease:
        await self._check(context, self._session_check(request.session))
        local = await self._route(context, request.session)
        return await self._lease(context, local, _command(renew=cc.RenewCommand(
            session=request.session, group=request.group, token=request.token,
            lease_ms=request.lease_ms,
        )))

    async def ReleaseSession(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.ReleaseSessionRequest, context: Context
    ) -> consumer_pb2.ReleaseSessionResponse:
        command = _command(release=cc.ReleaseCommand(
            session=request.session, group=request.group, token=request.token,
        ))
        return await self._session_change(
            context, request.session, command, consumer_pb2.ReleaseSessionResponse
        )

    async def GetState(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.GetStateRequest, context: Context
    ) -> consumer_pb2.SessionState:
        local = await self._read_session(context, request.session)
        version, data = local.state_machine.consumers.state(request.session.encode("utf-8"))
        return consumer_pb2.SessionState(session=request.session, version=version, data=data)

    async def SetState(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.SetStateRequest, context: Context
    ) -> consumer_pb2.SessionState:
        await self._check(
            context, self._session_check(request.session),
            lambda: consumer_records.check_state_size(request.state.data),
        )
        command = _command(set_state=cc.SetStateCommand(
            session=request.session, group=request.group, token=request.token,
            state=cc.StateWrite(
                expected_version=request.state.expected_version, data=request.state.data
            ),
        ))
        local = await self._route(context, request.session)
        return (await self._propose(context, local, command, consumer_pb2.SessionState))[1]

    async def ListScheduled(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.ListScheduledRequest, context: Context
    ) -> consumer_pb2.ListScheduledResponse:
        local = await self._read_session(context, request.session)
        now = int(time.time() * 1000)
        return consumer_pb2.ListScheduledResponse(
            scheduled=local.state_machine.consumers.scheduled(
                request.session.encode("utf-8"), now, request.include_due,
                consumer_records.MAX_LIST,
            ),
            now_ms=now,
        )

    async def CancelScheduled(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.CancelScheduledRequest, context: Context
    ) -> consumer_pb2.CancelScheduledResponse:
        command = _command(cancel_scheduled=cc.CancelScheduledCommand(
            session=request.session, offsets=request.offsets,
        ))
        return await self._session_change(
            context, request.session, command, consumer_pb2.CancelScheduledResponse,
            with_index=True,
        )

    async def ListDeadLetters(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.ListDeadLettersRequest, context: Context
    ) -> consumer_pb2.ListDeadLettersResponse:
        local = await self._read_session(context, request.session)
        limit = min(request.limit or 100, consumer_records.MAX_LIST)
        records, truncated = local.state_machine.consumers.dead_letters(
            request.session.encode("utf-8"), request.from_sequence, limit
        )
        response = consumer_pb2.ListDeadLettersResponse(truncated=truncated)
        for r in records:
            letter = response.dead_letters.add(
                sequence=r.sequence, offset=r.offset, group=r.group, reason=r.reason,
                delivery_count=r.delivery_count, dead_lettered_ms=r.dead_lettered_ms,
                data=r.data, append_time_ms=r.append_time_ms,
            )
            if r.envelope:
                letter.envelope.MergeFromString(r.envelope)
        return response

    async def ResubmitDeadLetters(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.ResubmitDeadLettersRequest, context: Context
    ) -> consumer_pb2.ResubmitDeadLettersResponse:
        command = _command(resubmit=cc.ResubmitCommand(
            session=request.session, sequences=request.sequences,
            principal=current_principal.get(),  # the append is authorized as the caller's
        ))
        return await self._session_change(
            context, request.session, command, consumer_pb2.ResubmitDeadLettersResponse
        )

    async def PurgeDeadLetters(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.PurgeDeadLettersRequest, context: Context
    ) -> consumer_pb2.PurgeDeadLettersResponse:
        command = _command(purge=cc.PurgeCommand(
            session=request.session, sequences=request.sequences,
        ))
        return await self._session_change(
            context, request.session, command, consumer_pb2.PurgeDeadLettersResponse,
            with_index=True,
        )

    async def ConfigureSession(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.ConfigureSessionRequest, context: Context
    ) -> consumer_pb2.ConfigureSessionResponse:
        command = _command(configure=cc.ConfigureSessionCommand(
            session=request.session, session_ttl_ms=request.session_ttl_ms,
            message_ttl_ms=request.message_ttl_ms, retention_ms=request.retention_ms,
            retention_bytes=request.retention_bytes,
            duplicate_window_ms=request.duplicate_window_ms,
            dead_letter_expired=request.dead_letter_expired,
        ))
        return await self._session_change(
            context, request.session, command, consumer_pb2.ConfigureSessionResponse
        )

    async def CloseSession(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.CloseSessionRequest, context: Context
    ) -> consumer_pb2.CloseSessionResponse:
        command = _command(close=cc.CloseSessionCommand(session=request.session))
        return await self._session_change(
            context, request.session, command, consumer_pb2.CloseSessionResponse
        )

    async def ListConsumerSessions(  # noqa: N802 -- gRPC method name
        self, request: consumer_pb2.ListConsumerSessionsRequest, context: Context
    ) -> consumer_pb2.ListConsumerSessionsResponse:
        if request.session:
            local = await self._read_session(context, request.session)
            pages = [(local, [local.state_machine.describe(request.session)])]
            truncated = False
        else:
            # Sharded: the asked shard, else the shards hosted here, each at a linearizable
            # read point (a shard this node does not lead answers with its leader).
            limit = min(request.limit or 100, consumer_records.MAX_LIST)
            pages, truncated = [], False
            try:
                locals_ = ([self.shards.for_shard(request.shard)] if request.HasField("shard")
                           else self.shards.local_shards())
            except NodeError as error:
                await rpc.abort_node_error(context, error)
            for local in locals_:
                await rpc.linearizable(context, local.port)
                page = local.state_machine.list_sessions(
                    request.prefix, limit, request.start_after
                )
                pages.append((local, list(page.sessions)))
                truncated = truncated or page.truncated
        now = int(time.time() * 1000)
        statuses = []
        for local, sessions in pages:
            consumers = local.state_machine.consumers
            clock = max(consumers.clock(), now)
            groups = consumers.groups()
            statuses += [
                (info.session, consumers.status(
                    info.session.encode("utf-8"), info.first_offset, info.next_offset, clock,
                    groups,
                ))
                for info in sessions
            ]
            now = max(now, consumers.clock())
        statuses.sort(key=lambda item: item[0].encode())
        return consumer_pb2.ListConsumerSessionsResponse(
            sessions=[status for _, status in statuses], truncated=truncated, now_ms=now,
        )
