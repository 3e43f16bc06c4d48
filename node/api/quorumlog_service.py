"""The client API (``QuorumLog`` gRPC service) of one node.

Owns: validating every request before anything is proposed, turning requests into replicated
commands or reads, choosing the read path (ReadIndex for LINEARIZABLE, local applied state
for FOLLOWER), streaming subscriptions that follow the tail, and mapping every failure to a
precise gRPC status — including the leader hint (trailing metadata ``quorumlog-leader-id`` /
``quorumlog-leader-addr``) when this node cannot serve. Must never: touch the Raft core
directly (it goes through ``RaftNode``'s queues) or write state outside replicated commands.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import grpc

from quorumlog.node.api.guard import current_principal, may_append
from quorumlog.node.common import limits
from quorumlog.node.common.config import NodeConfig
from quorumlog.node.common.limits import InvalidInput
from quorumlog.node.replication.applier import CommandError
from quorumlog.node.replication.membership import follower_progress
from quorumlog.node.replication.raft_node import CommandFailed, NotLeader, OutcomeUnknown, RaftNode
from quorumlog.node.replication.transport import PeerTransport
from quorumlog.node.state.state_machine import (
    AppendResult,
    SessionInfo,
    SessionStateMachine,
    StateMachineError,
)
from quorumlog.proto import commands_pb2, quorumlog_pb2, quorumlog_pb2_grpc
from quorumlog.raft.types import NONE, StateRole

LEADER_ID_KEY = "quorumlog-leader-id"
LEADER_ADDR_KEY = "quorumlog-leader-addr"
DEFAULT_TIMEOUT = 10.0  # seconds, when the caller sets no deadline
SUBSCRIBE_POLL = 1.0  # seconds between tail checks when nothing is applied

Context = grpc.aio.ServicerContext[Any, Any]


def _remaining(context: Context) -> float:
    remaining: float | None = context.time_remaining()
    if remaining is None:
        return DEFAULT_TIMEOUT
    return max(0.0, float(remaining))


def _failed_outcome(
    error: InvalidInput | CommandError | StateMachineError,
) -> quorumlog_pb2.AppendOutcome:
    """One append's failure inside an AppendBatch: its gRPC status code number and message."""
    code: int = grpc.StatusCode[error.code.value].value[0]
    return quorumlog_pb2.AppendOutcome(code=code, message=error.message)


class BatchRefused(Exception):
    """An append batch failed as a whole: the status of the call (AppendBatch) or the in-band
    answer of one AppendStream request, with the leader hint as metadata."""

    def __init__(
        self, code: grpc.StatusCode, message: str, metadata: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.metadata = metadata


class QuorumLogService(quorumlog_pb2_grpc.QuorumLogServicer):
    def __init__(
        self,
        node: RaftNode,
        state_machine: SessionStateMachine,
        transport: PeerTransport,
        config: NodeConfig,
        node_limits: limits.Limits = limits.DEFAULT_LIMITS,
        *,
        observe: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.node = node
        # (method, status code name, seconds) of each request a stream carries; unary calls
        # are timed by metrics.LatencyInterceptor
        self._observe = observe
        self.state_machine = state_machine
        self.transport = transport
        self.config = config
        self.limits = node_limits

    # -- errors ----------------------------------------------------------------------------------
    def _not_leader_refusal(self, detail: str) -> BatchRefused:
        """UNAVAILABLE naming the leader (metadata and message) when this node knows it."""
        leader = self.node.leader_id
        info = self.transport.peers.get(leader) if leader != NONE else None
        metadata: list[tuple[str, str]] = []
        if info is not None and leader != self.node.id:
            metadata.append((LEADER_ID_KEY, info.name))
            if info.client_address:
                metadata.append((LEADER_ADDR_KEY, info.client_address))
        hint = f"; leader is {info.name}" if metadata and info is not None else "; no leader known"
        return BatchRefused(
            grpc.StatusCode.UNAVAILABLE,
            f"node {self.config.name}: {detail}{hint}",
            tuple(metadata),
        )

    async def _not_leader(self, context: Context, detail: str) -> NoReturn:
        await self._abort(context, self._not_leader_refusal(detail))

    @staticmethod
    async def _abort(context: Context, refusal: BatchRefused) -> NoReturn:
        if refusal.metadata:
            context.set_trailing_metadata(refusal.metadata)
        await context.abort(refusal.code, refusal.message)

    @staticmethod
    async def _invalid(
        context: Context, error: InvalidInput | CommandError | StateMachineError
    ) -> NoReturn:
        await context.abort(grpc.StatusCode[error.code.value], error.message)

    async def _check_session(self, context: Context, session: str) -> None:
        """Abort with the precise status unless ``session`` is a valid session id."""
        try:
            limits.check_session_id(session, self.limits)
        except InvalidInput as error:
            await self._invalid(context, error)

    async def _replicate(
        self, context: Context, command: commands_pb2.Command, size: int
    ) -> tuple[int, Any]:
        """Replicate one command; returns (Raft index, the command's apply result)."""
        if self.node.role != StateRole.LEADER:
            await self._not_leader(context, "not the leader")
        future = self.node.submit(command, size)
        try:
            result = await asyncio.wait_for(future, _remaining(context))
        except NotLeader as error:
            await self._not_leader(context, str(error))
        except OutcomeUnknown as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"outcome unknown: {error}; retry")
        except CommandFailed as error:
            await self._invalid(context, error.error)
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED, "not committed before the deadline; retry"
            )
        index, command_result = result
        if isinstance(command_result, CommandError):
            await self._invalid(context, command_result)
        return index, command_result

    async def _linearizable(self, context: Context) -> None:
        """Wait until this node's applied state reflects every acknowledged write (§6.4)."""
        if self.node.role != StateRole.LEADER:
            await self._not_leader(context, "linearizable reads are served by the leader")
        try:
            index = await asyncio.wait_for(self.node.read_index(), _remaining(context))
            await asyncio.wait_for(self.node.wait_applied(index), _remaining(context))
        except (NotLeader, OutcomeUnknown) as error:
            await self._not_leader(context, str(error))
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED, "could not confirm leadership in time"
            )

    async def _read_point(self, context: Context, consistency: int) -> None:
        if consistency == quorumlog_pb2.LINEARIZABLE:
            await self._linearizable(context)
        elif consistency != quorumlog_pb2.FOLLOWER:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"unknown consistency {consistency}"
            )

    # -- RPCs ----------------------------------------------------------------------------------
    async def Append(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.AppendRequest, context: Context
    ) -> quorumlog_pb2.AppendResponse:
        try:
            _, _, size = limits.check_append(
                request.session, list(request.messages), request.producer_id,
                request.sequence, self.limits,
            )
        except InvalidInput as error:
            await self._invalid(context, error)
        command = commands_pb2.Command(
            append=commands_pb2.AppendCommand(
                session=request.session,
                messages=request.messages,
                producer_id=request.producer_id,
                principal=current_principal.get(),  # the producer's owner (node/state/acl.py)
                sequence=request.sequence,
            )
        )
        index, result = await self._replicate(context, command, size)
        assert isinstance(result, AppendResult)
        return quorumlog_pb2.AppendResponse(
            session=request.session,
            first_offset=result.first_offset,
            count=result.count,
            commit_index=index,
            duplicate=result.duplicate,
        )

    async def AppendBatch(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.AppendBatchRequest, context: Context
    ) -> quorumlog_pb2.AppendBatchResponse:
        try:
            return await self._append_batch(request, _remaining(context))
        except BatchRefused as refusal:
            await self._abort(context, refusal)

    async def AppendStream(  # noqa: N802 -- gRPC method name
        self,
        request_iterator: AsyncIterator[quorumlog_pb2.AppendStreamRequest],
        context: Context,
    ) -> AsyncIterator[quorumlog_pb2.AppendStreamResponse]:
        """AppendBatch calls on one stream: each request is served as it arrives (pipelined,
        answered by id), a refusal is answered in-band, and the stream ends after the client
        half-closes and every request has been answered."""
        answers: asyncio.Queue[quorumlog_pb2.AppendStreamResponse | None] = asyncio.Queue()
        serving: set[asyncio.Task[None]] = set()

        async def serve(request: quorumlog_pb2.AppendStreamRequest) -> None:
            timeout = request.timeout_ms / 1000 if request.timeout_ms else DEFAULT_TIMEOUT
            answer = quorumlog_pb2.AppendStreamResponse(id=request.id)
            started = time.perf_counter()
            code = "OK"
            try:
                answer.batch.CopyFrom(
                    await self._append_batch(request.batch, min(timeout, _remaining(context)))
                )
            except BatchRefused as refusal:
                code = refusal.code.name
                answer.code = refusal.code.value[0]
                answer.message = refusal.message
                hint = dict(refusal.metadata)
                answer.leader_id = hint.get(LEADER_ID_KEY, "")
                answer.leader_addr = hint.get(LEADER_ADDR_KEY, "")
            if self._observe is not None:
                self._observe("AppendStream", code, time.perf_counter() - started)
            answers.put_nowait(answer)

        async def receive() -> None:
            try:
                async for request in request_iterator:
                    task = asyncio.create_task(serve(request))
                    serving.add(task)
                    task.add_done_callback(serving.discard)
                while serving:
                    await asyncio.wait(set(serving))
            finally:
                answers.put_nowait(None)

        receiver = asyncio.create_task(receive())
        try:
            while (answer := await answers.get()) is not None:
                yield answer
            await receiver  # re-raises a failed read
        finally:
            receiver.cancel()
            for task in list(serving):
                task.cancel()  # the client left: its submitted appends still commit

    async def _append_batch(
        self, request: quorumlog_pb2.AppendBatchRequest, timeout: float
    ) -> quorumlog_pb2.AppendBatchResponse:
        """Several appends in one call: one outcome each, in order.

        Each append is validated like ``Append``; an invalid one gets its own outcome and is
        not proposed. The valid ones are submitted together, so the Raft loop puts them into
        one entry (split only by ``max_entry_bytes``). An apply-time error is that append's
        outcome. If any append's outcome is unknown (leadership lost, deadline) the whole
        call fails UNAVAILABLE / DEADLINE_EXCEEDED and the client retries the whole batch:
        producer dedup makes that exactly-once. A failure of the whole call raises
        :class:`BatchRefused`.
        """
        appends = request.appends
        try:
            total = sum(len(message) for item in appends for message in item.messages)
            limits.check_batch(len(appends), total, self.limits)
        except InvalidInput as error:
            raise BatchRefused(grpc.StatusCode[error.code.value], error.message) from None
        outcomes: list[quorumlog_pb2.AppendOutcome | None] = [None] * len(appends)
        principal = current_principal.get()  # the producers' owner (node/state/acl.py)
        submitted: list[tuple[int, asyncio.Future[Any]]] = []
        commands: list[tuple[int, commands_pb2.Command, int]] = []
        for position, item in enumerate(appends):
            try:
                _, _, size = limits.check_append(
                    item.session, list(item.messages), item.producer_id, item.sequence,
                    self.limits,
                )
                may_append(self.state_machine.acl, item.session)  # ACL, per append
            except InvalidInput as error:
                outcomes[position] = _failed_outcome(error)
                continue
            command = commands_pb2.Command(
                append=commands_pb2.AppendCommand(
                    session=item.session,
                    messages=item.messages,
                    producer_id=item.producer_id,
                    principal=principal,
                    sequence=item.sequence,
                )
            )
            commands.append((position, command, size))
        if commands:
            if self.node.role != StateRole.LEADER:
                raise self._not_leader_refusal("not the leader")
            # Submitted in one go (no await in between): one group commit, one entry.
            submitted = [
                (position, self.node.submit(command, size)) for position, command, size in commands
            ]
            futures = [future for _, future in submitted]
            try:
                _, pending = await asyncio.wait(futures, timeout=timeout)
            finally:
                for future in futures:
                    future.cancel()  # no-op when done; an unproposed one is never proposed
            if pending:
                raise BatchRefused(
                    grpc.StatusCode.DEADLINE_EXCEEDED, "not committed before the deadline; retry"
                )
            failures = [future.exception() for future in futures]  # marks them retrieved
            for failure in failures:
                if isinstance(failure, NotLeader):
                    raise self._not_leader_refusal(str(failure))
            for failure in failures:
                if failure is not None and not isinstance(failure, CommandFailed):
                    raise BatchRefused(
                        grpc.StatusCode.UNAVAILABLE, f"outcome unknown: {failure}; retry"
                    )
            for (position, future), failure in zip(submitted, failures, strict=True):
                item = appends[position]
                if isinstance(failure, CommandFailed):
                    outcomes[position] = _failed_outcome(failure.error)
                    continue
                index, result = future.result()
                if isinstance(result, CommandError):
                    outcomes[position] = _failed_outcome(result)
                    continue
                assert isinstance(result, AppendResult)
                outcomes[position] = quorumlog_pb2.AppendOutcome(
                    result=quorumlog_pb2.AppendResponse(
                        session=item.session,
                        first_offset=result.first_offset,
                        count=result.count,
                        commit_index=index,
                        duplicate=result.duplicate,
                    )
                )
        return quorumlog_pb2.AppendBatchResponse(
            outcomes=[outcome for outcome in outcomes if outcome is not None]
        )

    async def _read(
        self, session: str, from_offset: int, max_count: int, max_bytes: int, context: Context
    ) -> quorumlog_pb2.ReadResponse:
        """Read from the applied state; the caller has validated ``session``."""
        try:
            count, size = limits.read_bounds(max_count, max_bytes, self.limits)
            result = self.state_machine.read(session, from_offset, count, size)
        except (InvalidInput, StateMachineError) as error:
            await self._invalid(context, error)
        return result.to_proto()

    async def Read(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.ReadRequest, context: Context
    ) -> quorumlog_pb2.ReadResponse:
        await self._check_session(context, request.session)
        await self._read_point(context, request.consistency)
        return await self._read(
            request.session, request.from_offset, request.max_count, request.max_bytes, context
        )

    async def Subscribe(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.SubscribeRequest, context: Context
    ) -> AsyncIterator[quorumlog_pb2.ReadResponse]:
        """Stream committed messages from ``from_offset`` and follow the tail.

        Served from this node's applied state (committed data only), so any node can serve a
        subscription; the SDK resumes elsewhere from ``next_offset`` after a failure.
        """
        await self._check_session(context, request.session)
        offset = request.from_offset
        max_batch = request.max_batch or self.limits.default_read_count
        while True:
            applied = self.node.applied
            try:
                result = self.state_machine.read(
                    request.session, offset, min(max_batch, self.limits.max_read_count),
                    self.limits.default_read_bytes,
                )
            except StateMachineError as error:
                if error.code.value != "NOT_FOUND":
                    await self._invalid(context, error)
                result = None  # the session does not exist yet: wait for its first append
            if result is not None and result.records:
                offset = result.next_offset
                yield result.to_proto()
                continue
            try:
                await asyncio.wait_for(self.node.wait_applied(applied + 1), SUBSCRIBE_POLL)
            except TimeoutError:
                continue

    async def ListSessions(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.ListSessionsRequest, context: Context
    ) -> quorumlog_pb2.ListSessionsResponse:
        try:
            limit = limits.list_limit(request.limit, self.limits)
        except InvalidInput as error:
            await self._invalid(context, error)
        await self._read_point(context, request.consistency)
        page = self.state_machine.list_sessions(request.prefix, limit, request.start_after)
        return quorumlog_pb2.ListSessionsResponse(
            sessions=[info.to_proto() for info in page.sessions], truncated=page.truncated
        )

    async def DescribeSession(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.DescribeSessionRequest, context: Context
    ) -> quorumlog_pb2.SessionInfo:
        await self._check_session(context, request.session)
        await self._read_point(context, request.consistency)
        try:
            info = self.state_machine.describe(request.session)
        except StateMachineError as error:
            await self._invalid(context, error)
        return info.to_proto()

    async def TrimSession(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.TrimSessionRequest, context: Context
    ) -> quorumlog_pb2.TrimSessionResponse:
        await self._check_session(context, request.session)
        command = commands_pb2.Command(
            trim=commands_pb2.TrimCommand(
                session=request.session, before_offset=request.before_offset
            )
        )
        _, result = await self._replicate(context, command, len(request.session) + 16)
        info: SessionInfo = result.info
        return quorumlog_pb2.TrimSessionResponse(info=info.to_proto())

    async def DeleteSession(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.DeleteSessionRequest, context: Context
    ) -> quorumlog_pb2.DeleteSessionResponse:
        await self._check_session(context, request.session)
        command = commands_pb2.Command(
            delete_session=commands_pb2.DeleteSessionCommand(session=request.session)
        )
        await self._replicate(context, command, len(request.session) + 16)
        return quorumlog_pb2.DeleteSessionResponse()

    async def ClusterStatus(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.ClusterStatusRequest, context: Context
    ) -> quorumlog_pb2.NodeStatus:
        raft = self.node.raw.raft
        peers = self.transport.peers
        leader = peers.get(raft.leader_id)
        conf = raft.conf_state()
        members = [
            quorumlog_pb2.Member(
                id=info.name,
                client_address=info.client_address,
                peer_address=info.peer_address,
                voter=peer_id in conf.voters,
                learner=peer_id in conf.learners,
            )
            for peer_id, info in sorted(peers.items(), key=lambda item: item[1].name)
            if peer_id in conf.voters or peer_id in conf.learners
        ]
        return quorumlog_pb2.NodeStatus(
            id=self.config.name,
            address=self.config.client_addr,
            role=str(raft.role),
            term=raft.term,
            leader=leader.name if leader is not None else "",
            commit_index=raft.log.committed,
            applied_index=raft.log.applied,
            last_index=raft.log.last_index(),
            pid=os.getpid(),
            members=members,
            first_index=raft.log.first_index(),
            snapshot_index=self.node.storage.snapshot().metadata.index,
            followers=follower_progress(
                self.node.raw.status(), peers, self.transport.last_heard, time.monotonic()
            ),
        )
