"""The client API (``QuorumLog`` gRPC service) of one node.

Owns: validating every request before anything is proposed, turning requests into replicated
commands or reads, choosing the read path (ReadIndex for LINEARIZABLE, local applied state
for FOLLOWER), streaming subscriptions that follow the tail, and the client's view of the
cluster (``ClusterStatus``). Every append — ``Append``, ``AppendBatch``, ``AppendStream`` —
takes the one append path (``quorumlog.node.api.appends``); failures map to statuses, leader
hint included, in ``quorumlog.node.api.rpc``. Must never: touch the Raft driver other than
through the node port (``quorumlog.node.api.node_port``), or write state outside replicated
commands.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import grpc

from quorumlog.node.api import rpc
from quorumlog.node.api.appends import Appender, AppendOutcome, AppendRefused
from quorumlog.node.api.guard import current_principal
from quorumlog.node.api.node_port import FollowerView, NodeError
from quorumlog.node.api.rpc import LEADER_ADDR_KEY, LEADER_ID_KEY, Context, Refusal
from quorumlog.node.api.shards import LocalShard, ShardTable
from quorumlog.node.common import limits
from quorumlog.node.common.config import NodeConfig
from quorumlog.node.common.limits import InvalidInput
from quorumlog.node.replication.transport import PeerInfo
from quorumlog.node.state.state_machine import (
    AppendResult,
    SessionInfo,
    StateMachineError,
)
from quorumlog.proto import commands_pb2, quorumlog_pb2, quorumlog_pb2_grpc
from quorumlog.raft.types import NodeId

SUBSCRIBE_POLL = 1.0  # seconds between tail checks when nothing is applied


def _batch_answer(
    items: Sequence[quorumlog_pb2.AppendRequest], outcomes: list[AppendOutcome]
) -> quorumlog_pb2.AppendBatchResponse:
    """One AppendOutcome per append: its result, or its status code number and message."""
    answers: list[quorumlog_pb2.AppendOutcome] = []
    for item, outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, AppendRefused):
            code: int = grpc.StatusCode[outcome.code.value].value[0]
            answer = quorumlog_pb2.AppendOutcome(
                code=code, message=outcome.message, shard=outcome.shard
            )
            if outcome.leader is not None:
                answer.leader_id = outcome.leader.name
                answer.leader_addr = outcome.leader.client_address
            answers.append(answer)
            continue
        answers.append(quorumlog_pb2.AppendOutcome(result=_append_response(item.session, *outcome)))
    return quorumlog_pb2.AppendBatchResponse(outcomes=answers)


def _append_response(
    session: str, index: int, result: AppendResult
) -> quorumlog_pb2.AppendResponse:
    """The answer to one applied append (``index``: the entry that carried it)."""
    response = quorumlog_pb2.AppendResponse(
        session=session,
        first_offset=result.first_offset,
        count=result.count,
        commit_index=index,
        duplicate=result.duplicate,
    )
    if result.offsets:  # only when a message_id was a duplicate: keep the common case lean
        response.offsets.extend(result.offsets)
        response.duplicate_positions.extend(result.duplicate_positions or ())
    return response


def _followers(views: Sequence[FollowerView]) -> list[quorumlog_pb2.FollowerProgress]:
    return [
        quorumlog_pb2.FollowerProgress(
            id=view.name,
            match_index=view.match_index,
            next_index=view.next_index,
            state=view.state,
            learner=view.learner,
            lag=view.lag,
            last_contact_ms=view.last_contact_ms,
        )
        for view in views
    ]


def shard_statuses(
    shards: ShardTable, peers: Mapping[NodeId, PeerInfo]
) -> list[quorumlog_pb2.ShardStatus]:
    """Every data shard as this node sees it (one row: the meta group, if unsharded)."""
    def name(node: NodeId) -> str:
        info = peers.get(node)
        return info.name if info is not None else f"n{node}"

    hosted = {local.group: local for local in shards.local_shards()}
    if not shards.sharded:
        placed = [(0, 0, tuple(sorted(shards.meta.port.configuration().voters)))]
    else:
        placed = [(s.shard, s.group, s.replicas) for s in shards.placement()]
    rows = []
    for shard, group, replicas in placed:
        row = quorumlog_pb2.ShardStatus(
            shard=shard, group=group, replicas=[name(node) for node in replicas]
        )
        local = hosted.get(group)
        if local is not None:
            status = local.port.status()
            leader = peers.get(status.leader_id)
            row.leader = leader.name if leader is not None else ""
            row.leader_address = leader.client_address if leader is not None else ""
            row.role = str(status.role)
            row.term = status.term
            row.commit_index = status.commit_index
            row.applied_index = status.applied_index
            row.last_index = status.last_index
            row.max_lag = max((view.lag for view in status.followers), default=0)
            row.sessions = local.state_machine.session_count()
            row.followers.extend(_followers(status.followers))
        rows.append(row)
    return rows


class QuorumLogService(quorumlog_pb2_grpc.QuorumLogServicer):
    def __init__(
        self,
        shards: ShardTable,
        config: NodeConfig,
        node_limits: limits.Limits = limits.DEFAULT_LIMITS,
        *,
        observe: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.shards = shards
        self.port = shards.meta.port  # the meta group: cluster status
        # (method, status code name, seconds) of each request a stream carries; unary calls
        # are timed by metrics.LatencyInterceptor
        self._observe = observe
        self.config = config
        self.limits = node_limits
        self.appender = Appender(shards, shards.meta.state_machine.acl, node_limits)

    async def _route(self, context: Context, session: str) -> LocalShard:
        """The local group of ``session``'s shard (validated first), or abort with a hint."""
        await self._check_session(context, session)
        try:
            return self.shards.route(session)
        except NodeError as error:
            await rpc.abort_node_error(context, error)

    async def _check_session(self, context: Context, session: str) -> None:
        """Abort with the precise status unless ``session`` is a valid session id."""
        try:
            limits.check_session_id(session, self.limits)
        except InvalidInput as error:
            await rpc.abort_invalid(context, error)

    # -- appends (one path: quorumlog.node.api.appends) ----------------------------------------
    async def Append(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.AppendRequest, context: Context
    ) -> quorumlog_pb2.AppendResponse:
        try:
            (outcome,) = await self.appender.append_many(
                (request,), current_principal.get(), rpc.deadline(context)
            )
        except NodeError as error:
            await rpc.abort_node_error(context, error)
        if isinstance(outcome, AppendRefused):
            await rpc.abort_invalid(context, outcome)
        return _append_response(request.session, *outcome)

    async def AppendBatch(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.AppendBatchRequest, context: Context
    ) -> quorumlog_pb2.AppendBatchResponse:
        try:
            return await self._append_batch(request, rpc.deadline(context))
        except Refusal as refusal:
            await rpc.abort(context, refusal)

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
            timeout = request.timeout_ms / 1000 if request.timeout_ms else rpc.DEFAULT_TIMEOUT
            answer = quorumlog_pb2.AppendStreamResponse(id=request.id)
            started = time.perf_counter()
            code = "OK"
            try:
                answer.batch.CopyFrom(await self._append_batch(
                    request.batch, time.monotonic() + min(timeout, rpc.remaining(context))
                ))
            except Refusal as refusal:
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
        self, request: quorumlog_pb2.AppendBatchRequest, deadline: float
    ) -> quorumlog_pb2.AppendBatchResponse:
        """Several appends in one call, one outcome each, in order (``Appender``); the call
        as a whole is checked first. A failure of the whole call raises :class:`Refusal`."""
        appends = request.appends
        try:
            total = sum(len(message) for item in appends for message in item.messages)
            limits.check_batch(len(appends), total, self.limits)
        except InvalidInput as error:
            raise Refusal(rpc.status_code(error), error.message) from None
        try:
            outcomes = await self.appender.append_many(
                appends, current_principal.get(), deadline
            )
        except NodeError as error:
            raise rpc.refusal(error) from None
        return _batch_answer(appends, outcomes)

    async def _read(
        self, local: LocalShard, request: quorumlog_pb2.ReadRequest, context: Context
    ) -> quorumlog_pb2.ReadResponse:
        """Read from the applied state; the caller has validated ``session``."""
        try:
            count, size = limits.read_bounds(request.max_count, request.max_bytes, self.limits)
            result = local.state_machine.read(request.session, request.from_offset, count, size)
        except (InvalidInput, StateMachineError) as error:
            await rpc.abort_invalid(context, error)
        return result.to_proto()

    async def Read(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.ReadRequest, context: Context
    ) -> quorumlog_pb2.ReadResponse:
        local = await self._route(context, request.session)
        await rpc.read_point(context, local.port, request.consistency)
        return await self._read(local, request, context)

    async def Subscribe(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.SubscribeRequest, context: Context
    ) -> AsyncIterator[quorumlog_pb2.ReadResponse]:
        """Stream committed messages from ``from_offset`` and follow the tail.

        Served from this node's applied state (committed data only), so any node can serve a
        subscription; the SDK resumes elsewhere from ``next_offset`` after a failure.
        """
        local = await self._route(context, request.session)
        offset = request.from_offset
        max_batch = request.max_batch or self.limits.default_read_count
        while True:
            applied = local.port.applied_index
            try:
                result = local.state_machine.read(
                    request.session, offset, min(max_batch, self.limits.max_read_count),
                    self.limits.default_read_bytes,
                )
            except StateMachineError as error:
                if error.code.value != "NOT_FOUND":
                    await rpc.abort_invalid(context, error)
                result = None  # the session does not exist yet: wait for its first append
            if result is not None and result.records:
                offset = result.next_offset
                yield result.to_proto()
                continue
            await local.port.wait_applied(applied + 1, time.monotonic() + SUBSCRIBE_POLL)

    async def ListSessions(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.ListSessionsRequest, context: Context
    ) -> quorumlog_pb2.ListSessionsResponse:
        try:
            limit = limits.list_limit(request.limit, self.limits)
        except InvalidInput as error:
            await rpc.abort_invalid(context, error)
        try:
            if request.HasField("shard"):
                locals_ = [self.shards.for_shard(request.shard)]
            else:
                locals_ = self.shards.local_shards()
                if self.shards.sharded and len(locals_) < self.shards.shard_count:
                    raise NodeError(
                        f"node {self.config.name} hosts {len(locals_)} of the cluster's "
                        f"{self.shards.shard_count} shards: list one shard at a time "
                        "(ListSessionsRequest.shard; the SDK does)"
                    )
        except NodeError as error:
            if type(error) is NodeError:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, error.message)
            await rpc.abort_node_error(context, error)
        sessions: list[quorumlog_pb2.SessionInfo] = []
        truncated = False
        cutoff: bytes | None = None  # the smallest last name of a shard with more to come
        for local in locals_:  # merged by name: each shard's page is sorted
            await rpc.read_point(context, local.port, request.consistency)
            page = local.state_machine.list_sessions(request.prefix, limit, request.start_after)
            sessions.extend(info.to_proto() for info in page.sessions)
            if page.truncated and page.sessions:
                last = page.sessions[-1].session.encode()
                cutoff = last if cutoff is None else min(cutoff, last)
            truncated = truncated or page.truncated
        if len(locals_) > 1:
            sessions.sort(key=lambda info: info.session.encode())
            if cutoff is not None:
                # Past a truncated shard's last name that shard's next names are missing:
                # end the page there, so paging on from its last name skips none.
                sessions = [info for info in sessions if info.session.encode() <= cutoff]
            if len(sessions) > limit:
                del sessions[limit:]
                truncated = True
        return quorumlog_pb2.ListSessionsResponse(sessions=sessions, truncated=truncated)

    async def DescribeSession(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.DescribeSessionRequest, context: Context
    ) -> quorumlog_pb2.SessionInfo:
        local = await self._route(context, request.session)
        await rpc.read_point(context, local.port, request.consistency)
        try:
            info = local.state_machine.describe(request.session)
        except StateMachineError as error:
            await rpc.abort_invalid(context, error)
        return info.to_proto()

    async def TrimSession(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.TrimSessionRequest, context: Context
    ) -> quorumlog_pb2.TrimSessionResponse:
        local = await self._route(context, request.session)
        command = commands_pb2.Command(
            trim=commands_pb2.TrimCommand(
                session=request.session, before_offset=request.before_offset
            )
        )
        _, result = await rpc.propose(context, local.port, command, len(request.session) + 16)
        info: SessionInfo = result.info
        return quorumlog_pb2.TrimSessionResponse(info=info.to_proto())

    async def DeleteSession(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.DeleteSessionRequest, context: Context
    ) -> quorumlog_pb2.DeleteSessionResponse:
        local = await self._route(context, request.session)
        command = commands_pb2.Command(
            delete_session=commands_pb2.DeleteSessionCommand(session=request.session)
        )
        await rpc.propose(context, local.port, command, len(request.session) + 16)
        return quorumlog_pb2.DeleteSessionResponse()

    async def ClusterStatus(  # noqa: N802 -- gRPC method name
        self, request: quorumlog_pb2.ClusterStatusRequest, context: Context
    ) -> quorumlog_pb2.NodeStatus:
        status = self.port.status()
        peers = self.port.peers
        leader = peers.get(status.leader_id)
        members = [
            quorumlog_pb2.Member(
                id=info.name,
                client_address=info.client_address,
                peer_address=info.peer_address,
                voter=peer_id in status.voters,
                learner=peer_id in status.learners,
            )
            for peer_id, info in sorted(peers.items(), key=lambda item: item[1].name)
            if status.is_member(peer_id)
        ]
        answer = quorumlog_pb2.NodeStatus(
            id=self.config.name,
            address=self.config.client_addr,
            role=str(status.role),
            term=status.term,
            leader=leader.name if leader is not None else "",
            commit_index=status.commit_index,
            applied_index=status.applied_index,
            last_index=status.last_index,
            pid=os.getpid(),
            members=members,
            first_index=status.first_index,
            snapshot_index=status.snapshot_index,
            followers=_followers(status.followers),
            shard_count=self.shards.shard_count,
            host_tag=self.config.host_tag or self.config.name,
            metrics_address=self.config.metrics_addr or "",
        )
        answer.shards.extend(shard_statuses(self.shards, peers))
        return answer
