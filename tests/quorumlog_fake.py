"""A fake, in-process QuorumLog cluster for SDK and CLI tests.

Nodes are sync grpc servers (thread pool) on 127.0.0.1 port 0 sharing one :class:`FakeLog`
(the "replicated" state). A node is the leader or a follower that answers UNAVAILABLE with
``quorumlog-leader-addr``/``-id`` metadata, like the real node. AppendBatch applies each
valid append of the call like Append and answers one outcome each; the append faults count
one Append or AppendBatch call as one. Faults: fail the next N append calls before applying
them, or AFTER applying them (unknown outcome); delay answers; refuse AppendBatch as
UNIMPLEMENTED (an older server); cut a
subscribe stream after N records; replay records below ``from_offset`` on subscribe (to prove
the client drops them). The log dedups by (session, producer id, sequence) where message i of
a request has sequence + i, as the real state machine does.
"""

from __future__ import annotations

import os
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc

from quorumlog.proto import quorumlog_pb2 as pb
from quorumlog.proto import quorumlog_pb2_grpc

LIST_PAGE = 2  # small, so clients must follow `truncated` pages


# Bound, never listening: a connect gets refused, and no other test's server can take the port
# while this process lives (a released port was once reused by a parallel test's node).
_HELD: list[socket.socket] = []


def dead_address() -> str:
    """An address nobody listens on (connection refused), reserved for the process's life."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD.append(sock)
    port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


@dataclass
class FakeLog:
    cond: threading.Condition = field(default_factory=threading.Condition)
    sessions: dict[str, list[bytes]] = field(default_factory=dict)
    first: dict[str, int] = field(default_factory=dict)
    dedup: dict[tuple[str, str, int], int] = field(default_factory=dict)
    commit_index: int = 0
    #: every Append request that reached the state machine, in apply order
    applied: list[pb.AppendRequest] = field(default_factory=list)

    def append(self, request: pb.AppendRequest) -> pb.AppendResponse:
        with self.cond:
            self.applied.append(request)
            self.commit_index += 1
            key = (request.session, request.producer_id, request.sequence)
            if request.producer_id and key in self.dedup:
                return pb.AppendResponse(
                    session=request.session, first_offset=self.dedup[key],
                    count=len(request.messages), commit_index=self.commit_index, duplicate=True,
                )
            records = self.sessions.setdefault(request.session, [])
            self.first.setdefault(request.session, 0)
            first_offset = len(records)
            for i, message in enumerate(request.messages):
                if request.producer_id:
                    self.dedup[(request.session, request.producer_id, request.sequence + i)] = (
                        first_offset + i
                    )
                records.append(message)
            self.cond.notify_all()
            return pb.AppendResponse(
                session=request.session, first_offset=first_offset,
                count=len(request.messages), commit_index=self.commit_index,
            )

    def messages(self, session: str) -> list[bytes]:
        with self.cond:
            return list(self.sessions.get(session, []))

    def info(self, session: str) -> pb.SessionInfo:
        records = self.sessions[session]
        first = self.first[session]
        return pb.SessionInfo(
            session=session, first_offset=first, next_offset=len(records),
            count=len(records) - first, bytes=sum(len(m) for m in records[first:]),
            created_ms=1, last_append_ms=2,
        )


class FakeNode(quorumlog_pb2_grpc.QuorumLogServicer):
    """One node; ``leader`` is the leader node (self when leading, None when unknown)."""

    def __init__(self, log: FakeLog, node_id: str) -> None:
        self.log = log
        self.id = node_id
        self.address = ""
        self.leader: FakeNode | None = None
        self.fail_before = 0  # next N appends: UNAVAILABLE, nothing applied
        self.fail_after = 0  # next N appends: applied, then UNAVAILABLE (unknown outcome)
        self.delay = 0.0  # seconds before answering an append
        self.batch_unimplemented = False  # AppendBatch answers UNIMPLEMENTED (older server)
        self.batch_sizes: list[int] = []  # appends carried by each AppendBatch call
        self.subscribe_cut_after: int | None = None  # abort each stream after N records
        self.subscribe_replay = 0  # resend this many records below from_offset
        self.calls: Counter[str] = Counter()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None

    # -- lifecycle --

    def start(self) -> FakeNode:
        server = grpc.server(ThreadPoolExecutor(max_workers=32))
        quorumlog_pb2_grpc.add_QuorumLogServicer_to_server(self, server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        self.address = f"127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self.stopping.set()
        with self.log.cond:
            self.log.cond.notify_all()
        if self._server is not None:
            self._server.stop(grace=None).wait(10)
            self._server = None

    # -- helpers --

    def _count(self, method: str) -> None:
        with self._lock:
            self.calls[method] += 1

    def _redirect(self, context: grpc.ServicerContext) -> None:
        """Abort with UNAVAILABLE (+ leader hint) unless this node leads."""
        if self.leader is self:
            return
        if self.leader is not None:
            context.set_trailing_metadata((
                ("quorumlog-leader-id", self.leader.id),
                ("quorumlog-leader-addr", self.leader.address),
            ))
        context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.id} is not the leader")

    def _take(self, attribute: str) -> bool:
        with self._lock:
            value: int = getattr(self, attribute)
            if value > 0:
                setattr(self, attribute, value - 1)
                return True
            return False

    def _session(self, session: str, context: grpc.ServicerContext) -> None:
        if not session:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "session id must not be empty")
        if session not in self.log.sessions:
            context.abort(grpc.StatusCode.NOT_FOUND, f"session {session!r} not found")

    # -- service --

    @staticmethod
    def _problem(request: pb.AppendRequest) -> tuple[grpc.StatusCode, str] | None:
        if not request.session or not request.messages:
            return grpc.StatusCode.INVALID_ARGUMENT, "empty session or append"
        if any(len(message) > 1000 for message in request.messages):
            return grpc.StatusCode.RESOURCE_EXHAUSTED, "message larger than 1000 bytes"
        return None

    def _before_apply(self, context: grpc.ServicerContext) -> None:
        if self.delay:
            self.stopping.wait(self.delay)
        if self._take("fail_before"):
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected failure before apply")

    def _after_apply(self, context: grpc.ServicerContext) -> None:
        if self._take("fail_after"):
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected failure after apply")

    def Append(
        self, request: pb.AppendRequest, context: grpc.ServicerContext
    ) -> pb.AppendResponse:
        self._count("Append")
        self._redirect(context)
        problem = self._problem(request)
        if problem is not None:
            context.abort(*problem)
        self._before_apply(context)
        response = self.log.append(request)
        self._after_apply(context)
        return response

    def AppendBatch(
        self, request: pb.AppendBatchRequest, context: grpc.ServicerContext
    ) -> pb.AppendBatchResponse:
        self._count("AppendBatch")
        if self.batch_unimplemented:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        with self._lock:
            self.batch_sizes.append(len(request.appends))
        self._redirect(context)
        if not request.appends:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "append batch carries no appends")
        self._before_apply(context)
        outcomes: list[pb.AppendOutcome] = []
        for item in request.appends:
            problem = self._problem(item)
            if problem is None:
                outcomes.append(pb.AppendOutcome(result=self.log.append(item)))
            else:
                code, message = problem
                outcomes.append(pb.AppendOutcome(code=code.value[0], message=message))
        self._after_apply(context)
        return pb.AppendBatchResponse(outcomes=outcomes)

    def Read(self, request: pb.ReadRequest, context: grpc.ServicerContext) -> pb.ReadResponse:
        self._count("Read")
        if request.consistency == pb.LINEARIZABLE:
            self._redirect(context)
        with self.log.cond:
            self._session(request.session, context)
            first = self.log.first[request.session]
            if request.from_offset < first:
                context.set_trailing_metadata((("quorumlog-first-offset", str(first)),))
                context.abort(
                    grpc.StatusCode.OUT_OF_RANGE,
                    f"offset {request.from_offset} was trimmed; first retained offset is {first}",
                )
            records = self.log.sessions[request.session]
            end = min(len(records), request.from_offset + (request.max_count or 100))
            start = min(request.from_offset, len(records))
            return pb.ReadResponse(
                session=request.session,
                records=[pb.Record(offset=i, data=records[i]) for i in range(start, end)],
                next_offset=max(end, start), first_offset=first, end_offset=len(records),
            )

    def Subscribe(
        self, request: pb.SubscribeRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ReadResponse]:
        self._count("Subscribe")
        self._redirect(context)
        position = max(0, request.from_offset - self.subscribe_replay)
        sent = 0
        while not self.stopping.is_set() and context.is_active():
            with self.log.cond:
                records = self.log.sessions.get(request.session, [])
                if len(records) <= position:
                    self.log.cond.wait(0.05)
                    continue
                batch = records[position : position + (request.max_batch or 2)]
            if self.subscribe_cut_after is not None and sent >= self.subscribe_cut_after:
                context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.id} stream cut")
            yield pb.ReadResponse(
                session=request.session,
                records=[pb.Record(offset=position + i, data=d) for i, d in enumerate(batch)],
                next_offset=position + len(batch),
            )
            position += len(batch)
            sent += len(batch)

    def ListSessions(
        self, request: pb.ListSessionsRequest, context: grpc.ServicerContext
    ) -> pb.ListSessionsResponse:
        self._count("ListSessions")
        with self.log.cond:
            names = sorted(
                name for name in self.log.sessions
                if name.startswith(request.prefix) and name > request.start_after
            )
            page = names[: min(request.limit or LIST_PAGE, LIST_PAGE)]
            return pb.ListSessionsResponse(
                sessions=[self.log.info(name) for name in page],
                truncated=len(names) > len(page),
            )

    def DescribeSession(
        self, request: pb.DescribeSessionRequest, context: grpc.ServicerContext
    ) -> pb.SessionInfo:
        self._count("DescribeSession")
        with self.log.cond:
            self._session(request.session, context)
            return self.log.info(request.session)

    def TrimSession(
        self, request: pb.TrimSessionRequest, context: grpc.ServicerContext
    ) -> pb.TrimSessionResponse:
        self._count("TrimSession")
        self._redirect(context)
        with self.log.cond:
            self._session(request.session, context)
            current = self.log.first[request.session]
            limit = len(self.log.sessions[request.session])
            self.log.first[request.session] = max(current, min(request.before_offset, limit))
            return pb.TrimSessionResponse(info=self.log.info(request.session))

    def DeleteSession(
        self, request: pb.DeleteSessionRequest, context: grpc.ServicerContext
    ) -> pb.DeleteSessionResponse:
        self._count("DeleteSession")
        self._redirect(context)
        with self.log.cond:
            self._session(request.session, context)
            del self.log.sessions[request.session]
            del self.log.first[request.session]
            return pb.DeleteSessionResponse()

    def ClusterStatus(
        self, request: pb.ClusterStatusRequest, context: grpc.ServicerContext
    ) -> pb.NodeStatus:
        self._count("ClusterStatus")
        with self.log.cond:
            commit = self.log.commit_index
        return pb.NodeStatus(
            id=self.id, address=self.address,
            role="leader" if self.leader is self else "follower", term=3,
            leader=self.leader.id if self.leader else "", commit_index=commit,
            applied_index=commit, last_index=commit, pid=os.getpid(),
        )


class FakeCluster:
    """``size`` nodes over one log; node 0 leads unless :meth:`elect` says otherwise."""

    def __init__(self, size: int = 3) -> None:
        self.log = FakeLog()
        self.nodes = [FakeNode(self.log, f"n{i + 1}").start() for i in range(size)]
        self.elect(self.nodes[0])

    def elect(self, leader: FakeNode | None) -> None:
        for node in self.nodes:
            node.leader = leader

    @property
    def addresses(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def total_calls(self, method: str) -> int:
        return sum(node.calls[method] for node in self.nodes)

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
