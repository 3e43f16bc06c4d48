"""The public SDK: :class:`AsyncClient` (asyncio) and :class:`Client` (blocking).

Owns: request building, response conversion to plain dataclasses, input validation, and the
subscription resume logic. Leader finding and retries live in ``leader.py``, backoff in
``retry.py``, coalescing idempotent appends of one session in ``producer.py`` and of all
sessions into AppendBatch RPCs in ``outbox.py``. :class:`Client` runs an
:class:`AsyncClient` on a private event loop in a background thread, so both share one
implementation.

Example::

    async with AsyncClient("127.0.0.1:7001,127.0.0.1:7002") as client:
        result = await client.append("orders/42", b"created", b"paid")
        page = await client.read("orders/42", from_offset=result.first_offset)
        async for record in client.subscribe("orders/42"):
            ...

Guarantees: an append is retried on transient failures with the same producer id and
sequence until its deadline, so it is written at most once; when the deadline passes first
the outcome is unknown and :class:`~quorumlog.client.errors.DeadlineExceeded` (or
``Unavailable`` when no node was reachable) is raised. A subscription reconnects (to the
leader hint or the next node) after a stream error and resumes at the offset after the last
record it delivered: no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import heapq
import random
import threading
import uuid
from collections import deque
from collections.abc import Coroutine, Iterator, Sequence
from concurrent.futures import Future as ConcurrentFuture
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from quorumlog.client import errors
from quorumlog.client._grpc import NodeConnection, StreamReader
from quorumlog.client.acl import AclOperations, SyncAclOperations
from quorumlog.client.admin import AddNodeResult, BackupResult, Operations
from quorumlog.client.consumer import ConsumerOperations, SyncConsumerOperations
from quorumlog.client.envelope import Envelope, envelope_of, envelopes_for
from quorumlog.client.leader import Router, parse_addresses
from quorumlog.client.outbox import AppendOutbox
from quorumlog.client.producer import AppendResult, BatchLimits, SessionProducer
from quorumlog.client.request_reply import Requests, reply_envelope
from quorumlog.client.retry import RetryPolicy, is_retryable
from quorumlog.client.shards import META
from quorumlog.client.tls import ClientSecurity
from quorumlog.proto import envelope_pb2
from quorumlog.proto import quorumlog_pb2 as pb

T = TypeVar("T")

DEFAULT_DEADLINE = 10.0
MAX_SESSION_ID_BYTES = 1024

__all__ = [
    "AddNodeResult",
    "AppendResult",
    "AsyncClient",
    "BackupResult",
    "Client",
    "ClusterStatus",
    "Consistency",
    "Envelope",
    "FollowerProgress",
    "Member",
    "NodeReport",
    "NodeStatus",
    "ReadResult",
    "Record",
    "SessionInfo",
    "ShardStatus",
    "Subscription",
    "SyncSubscription",
]


class Consistency(enum.IntEnum):
    LINEARIZABLE = pb.LINEARIZABLE  # reflects every acknowledged append (ReadIndex)
    FOLLOWER = pb.FOLLOWER  # any node's applied state: possibly stale, never uncommitted


@dataclass(frozen=True, slots=True)
class Record:
    offset: int
    data: bytes
    envelope: Envelope | None = None  # None: appended without one
    append_time_ms: int = 0  # the leader's clock at the append (0: stored before envelopes)

    @classmethod
    def from_pb(cls, record: pb.Record) -> Record:
        return cls(record.offset, record.data, envelope_of(record), record.append_time_ms)


@dataclass(frozen=True, slots=True)
class ReadResult:
    session: str
    records: list[Record]
    next_offset: int  # where to read from next
    first_offset: int  # the session's first retained offset
    end_offset: int  # the session's next offset to be written, as of this read


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session: str
    first_offset: int
    next_offset: int
    count: int
    bytes: int
    created_ms: int
    last_append_ms: int

    @classmethod
    def from_pb(cls, info: pb.SessionInfo) -> SessionInfo:
        return cls(
            session=info.session,
            first_offset=info.first_offset,
            next_offset=info.next_offset,
            count=info.count,
            bytes=info.bytes,
            created_ms=info.created_ms,
            last_append_ms=info.last_append_ms,
        )


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    client_address: str
    peer_address: str
    voter: bool
    learner: bool = False


@dataclass(frozen=True, slots=True)
class FollowerProgress:
    """The leader's view of one other member's replication."""

    id: str
    match_index: int
    next_index: int
    state: str  # probe, replicate, snapshot
    learner: bool
    lag: int  # entries behind the leader's last index
    last_contact_ms: int  # since the leader last heard from it; -1 never


@dataclass(frozen=True, slots=True)
class ShardStatus:
    """One data shard as the answering node sees it (role and indexes are its replica's)."""

    shard: int
    group: int  # its Raft group id
    replicas: list[str]  # node ids, the preferred leader first
    leader: str  # leader id, empty when unknown
    leader_address: str
    role: str  # this node's role in the group; empty: not a replica
    term: int
    commit_index: int
    applied_index: int
    last_index: int
    max_lag: int  # on the leader: the furthest follower's lag
    sessions: int  # sessions stored in this replica

    @classmethod
    def from_pb(cls, shard: pb.ShardStatus) -> ShardStatus:
        return cls(
            shard.shard, shard.group, list(shard.replicas), shard.leader, shard.leader_address,
            shard.role, shard.term, shard.commit_index, shard.applied_index, shard.last_index,
            shard.max_lag, shard.sessions,
        )


@dataclass(frozen=True, slots=True)
class NodeStatus:
    id: str
    address: str  # the node's advertised client address
    role: str
    term: int
    leader: str  # leader id, empty when unknown
    commit_index: int
    applied_index: int
    last_index: int
    pid: int
    members: list[Member]
    first_index: int
    snapshot_index: int
    followers: list[FollowerProgress] = field(default_factory=list)  # leader only
    shard_count: int = 1  # 1 also for a server from before sharding
    shards: list[ShardStatus] = field(default_factory=list)  # sharded clusters only

    @classmethod
    def from_pb(cls, status: pb.NodeStatus) -> NodeStatus:
        return cls(
            id=status.id,
            address=status.address,
            role=status.role,
            term=status.term,
            leader=status.leader,
            commit_index=status.commit_index,
            applied_index=status.applied_index,
            last_index=status.last_index,
            pid=status.pid,
            members=[
                Member(m.id, m.client_address, m.peer_address, m.voter, m.learner)
                for m in status.members
            ],
            first_index=status.first_index,
            snapshot_index=status.snapshot_index,
            followers=[
                FollowerProgress(
                    f.id, f.match_index, f.next_index, f.state, f.learner, f.lag,
                    f.last_contact_ms,
                )
                for f in status.followers
            ],
            shard_count=max(1, status.shard_count),
            shards=[ShardStatus.from_pb(shard) for shard in status.shards],
        )


@dataclass(frozen=True, slots=True)
class NodeReport:
    """One address's answer to a status probe: ``status`` or the ``error`` it failed with."""

    address: str  # the address that was dialed
    status: NodeStatus | None
    error: errors.QuorumLogError | None

    @property
    def reachable(self) -> bool:
        return self.status is not None


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    nodes: list[NodeReport]

    @property
    def leader(self) -> NodeReport | None:
        """The reachable node that says it is leader (highest term wins)."""
        leaders = [n for n in self.nodes if n.status is not None and n.status.role == "leader"]
        return max(leaders, key=lambda n: n.status.term if n.status else 0, default=None)

    @property
    def reachable(self) -> list[NodeReport]:
        return [node for node in self.nodes if node.reachable]


def _check_session(session: str) -> None:
    if not isinstance(session, str) or not session:
        raise errors.InvalidArgument("session id must be a non-empty string")
    if len(session.encode("utf-8", "surrogatepass")) > MAX_SESSION_ID_BYTES:
        raise errors.InvalidArgument(
            f"session id is longer than {MAX_SESSION_ID_BYTES} bytes"
        )


def _check_offset(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise errors.InvalidArgument(f"{name} must be a non-negative integer, not {value!r}")


def _as_bytes(message: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(message, str):
        return message.encode("utf-8")
    if isinstance(message, bytes | bytearray | memoryview):
        return bytes(message)
    raise errors.InvalidArgument(f"a message must be bytes or str, not {type(message).__name__}")


class AsyncClient:
    """asyncio client for a quorumlog cluster.

    ``addresses``: any nodes' client addresses (``"h:p,h:p"`` or a list); the leader is
    found and followed automatically. ``deadline``: seconds each call may take including
    retries. ``producer_id``: identity for idempotent appends (random uuid4 hex by default;
    pass a stable one only if a single client at a time uses it). ``linger_ms``,
    ``max_batch_messages``, ``max_batch_bytes``: coalescing of concurrent appends to one
    session. Batches of different sessions that are ready together travel in one AppendBatch
    RPC (at most one round in flight per shard; see ``outbox.py``). ``seed``: makes retry
    jitter reproducible. ``security``: mutual TLS material and/or a bearer token
    (``ClientSecurity.from_dir(tls_dir)``; README "Security"); None: plaintext. Use as
    ``async with`` or call :meth:`close`. All methods must run on one event loop.
    """

    def __init__(
        self,
        addresses: str | Sequence[str],
        *,
        deadline: float = DEFAULT_DEADLINE,
        producer_id: str | None = None,
        linger_ms: float = 0.0,
        max_batch_messages: int = 1000,
        max_batch_bytes: int = 1024 * 1024,
        retry: RetryPolicy | None = None,
        seed: int | None = None,
        security: ClientSecurity | None = None,
    ) -> None:
        if deadline <= 0:
            raise errors.InvalidArgument("deadline must be positive")
        if producer_id is not None and not producer_id:
            raise errors.InvalidArgument("producer_id must be non-empty when given")
        self.deadline = deadline
        self.producer_id = producer_id or uuid.uuid4().hex
        self._limits = BatchLimits(linger_ms / 1000.0, max_batch_messages, max_batch_bytes)
        self._retry = retry or RetryPolicy()
        self._rng = random.Random(seed)
        self._router = Router(
            parse_addresses(addresses), policy=self._retry, rng=self._rng,
            connect=functools.partial(NodeConnection, security=security),
        )
        self._outbox = AppendOutbox(self._router)
        self._operations = Operations(self._router, self._end)
        self.acl = AclOperations(self._router, self._end)  # grant / revoke / list rules
        # groups, receive / settle, leases, state, dead letters (quorumlog.client.consumer)
        self.consumer = ConsumerOperations(self._router, self._end)
        self._producers: dict[str, SessionProducer] = {}
        self._subscriptions: set[Subscription] = set()
        self._requests = Requests(self)
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Fail pending appends with ClientClosed, end subscriptions, close channels."""
        if self._closed:
            return
        self._closed = True
        for producer in list(self._producers.values()):
            await producer.close()
        await self._outbox.close()
        await self._requests.close()
        for subscription in list(self._subscriptions):
            await subscription.aclose()
        await self._router.close()

    @property
    def addresses(self) -> list[str]:
        return list(self._router.addresses)

    @property
    def leader(self) -> str | None:
        """The address currently believed to be the leader's."""
        return self._router.leader

    def _end(self, deadline: float | None) -> float:
        if self._closed:
            raise errors.ClientClosed("the client is closed")
        return asyncio.get_running_loop().time() + (deadline or self.deadline)

    async def _key(self, session: str, end: float) -> int:
        """``session``'s routing key (its shard's; the map is learned on first use)."""
        await self._router.learn(end)
        return self._router.key_of(session)

    # -- appends -----------------------------------------------------------------------------

    async def append(
        self,
        session: str,
        *messages: bytes | bytearray | memoryview | str,
        deadline: float | None = None,
        envelope: Envelope | None = None,
        envelopes: Sequence[Envelope | None] | None = None,
    ) -> AppendResult:
        """Append ``messages`` (bytes, or str as UTF-8) to ``session``, in order, atomically.

        ``envelope`` gives every message the same envelope (a ``message_id`` then only fits
        one message); ``envelopes`` one per message (None: that message has none).
        Concurrent calls for one session are coalesced into one request; each caller still
        gets its own contiguous offsets.
        """
        _check_session(session)
        if not messages:
            raise errors.InvalidArgument("append needs at least one message")
        payload = [_as_bytes(message) for message in messages]
        wrapped = envelopes_for(len(payload), envelope, envelopes)
        end = self._end(deadline)
        producer = self._producers.get(session)
        if producer is None:
            producer = SessionProducer(session, self.producer_id, self._send_append, self._limits)
            self._producers[session] = producer
        return await producer.submit(payload, end, wrapped)

    def sequence_of(self, session: str) -> int:
        """The sequence the next append batch of ``session`` will carry (0 if none yet)."""
        producer = self._producers.get(session)
        return producer.next_sequence if producer else 0

    async def _send_append(
        self, session: str, messages: Sequence[bytes], sequence: int, end: float,
        envelopes: list[envelope_pb2.Envelope] | None = None,
    ) -> pb.AppendResponse:
        """One session batch; the outbox sends it with other sessions' in one AppendBatch."""
        request = pb.AppendRequest(
            session=session, messages=messages, producer_id=self.producer_id, sequence=sequence
        )
        if envelopes:
            request.envelopes.extend(envelopes)
        return await self._outbox.send(request, end)

    # -- reads -------------------------------------------------------------------------------

    async def read(
        self,
        session: str,
        from_offset: int = 0,
        limit: int = 0,
        *,
        max_bytes: int = 0,
        consistency: Consistency = Consistency.LINEARIZABLE,
        deadline: float | None = None,
    ) -> ReadResult:
        """Up to ``limit`` records (0: server default) from ``from_offset``; one page.

        Raises OutOfRange (with ``first_offset``) below the first retained offset and
        NotFound for an unknown session.
        """
        _check_session(session)
        _check_offset("from_offset", from_offset)
        _check_offset("limit", limit)
        _check_offset("max_bytes", max_bytes)
        request = pb.ReadRequest(
            session=session,
            from_offset=from_offset,
            max_count=limit,
            max_bytes=max_bytes,
            consistency=int(consistency),  # type: ignore[arg-type]
        )

        async def attempt(node: NodeConnection, timeout: float) -> pb.ReadResponse:
            return await node.read(request, timeout)

        end = self._end(deadline)
        response = await self._router.call(
            attempt,
            end=end,
            key=await self._key(session, end),
            follow_leader=consistency == Consistency.LINEARIZABLE,
            what=f"read of {session!r}",
        )
        return ReadResult(
            session=response.session or session,
            records=[Record.from_pb(record) for record in response.records],
            next_offset=response.next_offset,
            first_offset=response.first_offset,
            end_offset=response.end_offset,
        )

    def subscribe(self, session: str, from_offset: int = 0, *, max_batch: int = 0) -> Subscription:
        """Stream committed records from ``from_offset`` on, following the tail forever.

        Survives leader changes, stream errors and a node gone silent (noticed by a status
        probe when the stream has been quiet for ``RetryPolicy.probe_after``: reconnects,
        resumes at the next offset);
        raises when no node can serve it for a whole ``deadline``. Close it with
        ``aclose()`` or ``async with``.
        """
        _check_session(session)
        _check_offset("from_offset", from_offset)
        _check_offset("max_batch", max_batch)
        if self._closed:
            raise errors.ClientClosed("the client is closed")
        subscription = Subscription(self, session, from_offset, max_batch)
        self._subscriptions.add(subscription)
        return subscription

    # -- request-response ------------------------------------------------------------------

    @property
    def reply_session(self) -> str:
        """Where :meth:`send_request` waits for replies unless told otherwise: a session
        private to this client (``replies/<producer id>``); delete it when done."""
        return self._requests.default_reply_session()

    async def send_request(
        self,
        session: str,
        body: bytes | bytearray | memoryview | str,
        *,
        timeout: float = 30.0,
        reply_to: str | None = None,
        envelope: Envelope | None = None,
    ) -> Record:
        """Append ``body`` to ``session`` as a request and return its reply: the request's
        envelope names ``reply_to`` (default :attr:`reply_session`) and has a ``message_id``
        (``envelope``'s, else a new one); the reply is the first record of the reply session
        whose ``correlation_id`` is that id (a responder answers with :meth:`reply`). Raises
        ``DeadlineExceeded`` after ``timeout`` seconds without one."""
        _check_session(session)
        if reply_to is not None:
            _check_session(reply_to)
        return await self._requests.send(
            session, _as_bytes(body), timeout=timeout, reply_to=reply_to, envelope=envelope
        )

    async def reply(
        self,
        request: Any,
        body: bytes | bytearray | memoryview | str,
        *,
        envelope: Envelope | None = None,
        deadline: float | None = None,
    ) -> AppendResult:
        """Answer ``request`` (a ``Record`` or ``ReceivedMessage`` sent with
        :meth:`send_request`, or any message whose envelope names ``reply_to`` and has a
        ``message_id``): append ``body`` to its reply session, correlated by its id. Answering
        the same request again within the duplicate window writes nothing new."""
        session, answer = reply_envelope(request, envelope)
        return await self.append(session, body, envelope=answer, deadline=deadline)

    # -- sessions ----------------------------------------------------------------------------

    async def list_sessions(
        self,
        prefix: str = "",
        *,
        limit: int = 0,
        start_after: str = "",
        consistency: Consistency = Consistency.LINEARIZABLE,
        deadline: float | None = None,
    ) -> list[SessionInfo]:
        """Every session whose name starts with ``prefix`` and sorts after ``start_after``,
        by name (all pages; at most ``limit``). For the next page of a limited listing pass
        the last name as ``start_after``. A sharded cluster is asked shard by shard, at once,
        and the answers merged by name."""
        _check_offset("limit", limit)
        end = self._end(deadline)
        await self._router.learn(end)
        shards = self._router.shards
        if not shards.sharded:
            return await self._list_shard(
                None, prefix, start_after, limit=limit, consistency=consistency, end=end
            )
        parts = await asyncio.gather(*(
            self._list_shard(
                shard, prefix, start_after, limit=limit, consistency=consistency, end=end
            )
            for shard in range(shards.count)
        ))
        merged = list(heapq.merge(*parts, key=lambda info: info.session))
        return merged[:limit] if limit else merged

    async def _list_shard(
        self, shard: int | None, prefix: str, start_after: str, *, limit: int,
        consistency: Consistency, end: float,
    ) -> list[SessionInfo]:
        """One shard's sessions (``None``: an unsharded cluster's), every page up to ``limit``."""
        result: list[SessionInfo] = []
        key = META if shard is None else self._router.shards.key_of_shard(shard)
        while True:
            request = pb.ListSessionsRequest(
                prefix=prefix,
                start_after=start_after,
                limit=max(0, limit - len(result)) if limit else 0,
                consistency=int(consistency),  # type: ignore[arg-type]
            )
            if shard is not None:
                request.shard = shard

            async def attempt(
                node: NodeConnection, timeout: float, request: pb.ListSessionsRequest = request
            ) -> pb.ListSessionsResponse:
                return await node.list_sessions(request, timeout)

            response = await self._router.call(
                attempt,
                end=end,
                key=key,
                follow_leader=consistency == Consistency.LINEARIZABLE,
                what="list sessions" if shard is None else f"list sessions of shard {shard}",
            )
            result.extend(SessionInfo.from_pb(info) for info in response.sessions)
            if limit and len(result) >= limit:
                return result[:limit]
            if not response.truncated or not response.sessions:
                return result
            start_after = response.sessions[-1].session

    async def describe_session(
        self,
        session: str,
        *,
        consistency: Consistency = Consistency.LINEARIZABLE,
        deadline: float | None = None,
    ) -> SessionInfo:
        _check_session(session)
        request = pb.DescribeSessionRequest(
            session=session, consistency=int(consistency)  # type: ignore[arg-type]
        )

        async def attempt(node: NodeConnection, timeout: float) -> pb.SessionInfo:
            return await node.describe_session(request, timeout)

        end = self._end(deadline)
        info = await self._router.call(
            attempt,
            end=end,
            key=await self._key(session, end),
            follow_leader=consistency == Consistency.LINEARIZABLE,
            what=f"describe {session!r}",
        )
        return SessionInfo.from_pb(info)

    async def trim_session(
        self, session: str, before_offset: int, *, deadline: float | None = None
    ) -> SessionInfo:
        """Drop every message with offset < ``before_offset`` (idempotent, so retried)."""
        _check_session(session)
        _check_offset("before_offset", before_offset)
        request = pb.TrimSessionRequest(session=session, before_offset=before_offset)

        async def attempt(node: NodeConnection, timeout: float) -> pb.TrimSessionResponse:
            return await node.trim_session(request, timeout)

        end = self._end(deadline)
        response = await self._router.call(
            attempt, end=end, key=await self._key(session, end), what=f"trim {session!r}"
        )
        return SessionInfo.from_pb(response.info)

    async def delete_session(self, session: str, *, deadline: float | None = None) -> None:
        """Delete ``session``. A retry after an unknown outcome may answer NotFound."""
        _check_session(session)
        request = pb.DeleteSessionRequest(session=session)

        async def attempt(node: NodeConnection, timeout: float) -> pb.DeleteSessionResponse:
            return await node.delete_session(request, timeout)

        end = self._end(deadline)
        await self._router.call(
            attempt, end=end, key=await self._key(session, end), what=f"delete {session!r}"
        )

    # -- status ------------------------------------------------------------------------------

    async def node_status(self, address: str, *, deadline: float | None = None) -> NodeStatus:
        """The status of the node at ``address`` (no leader redirect; retried until deadline)."""
        (address,) = parse_addresses([address])
        end = self._end(deadline)

        async def attempt(node: NodeConnection, timeout: float) -> pb.NodeStatus:
            return await node.cluster_status(timeout)

        status = await self._router.call(
            attempt, end=end, target=address, pinned=True, what=f"status of {address}"
        )
        return NodeStatus.from_pb(status)

    async def cluster_status(self, *, deadline: float | None = None) -> ClusterStatus:
        """Probe every known address at once; unreachable ones are reported, not raised.

        Each node gets a single attempt (bounded by the deadline), so a dead node costs at
        most the deadline, not a retry loop.
        """
        end = self._end(deadline)
        loop = asyncio.get_running_loop()

        async def probe(address: str) -> NodeReport:
            try:
                timeout = max(0.001, end - loop.time())
                status = await self._router.connection(address).cluster_status(timeout)
            except errors.QuorumLogError as error:
                return NodeReport(address, None, error)
            return NodeReport(address, NodeStatus.from_pb(status), None)

        reports = await asyncio.gather(*(probe(address) for address in self.addresses))
        return ClusterStatus(list(reports))

    # -- operations (see ``admin.py``) ------------------------------------------------------

    async def add_node(
        self, node_id: str, peer_address: str, client_address: str, *,
        deadline: float | None = None,
    ) -> AddNodeResult:
        """Add ``node_id`` as a learner, wait until it caught up, promote it to voter."""
        return await self._operations.add_node(node_id, peer_address, client_address, deadline)

    async def remove_node(self, node_id: str, *, deadline: float | None = None) -> int:
        """Remove a member (the leader too); returns the index of the change."""
        return await self._operations.remove_node(node_id, deadline)

    async def transfer_leader(
        self, node_id: str, *, deadline: float | None = None
    ) -> tuple[str, int]:
        """Make voter ``node_id`` the leader; returns (leader, term)."""
        return await self._operations.transfer_leader(node_id, deadline)

    async def backup(self, path: str | Path, *, deadline: float | None = None) -> BackupResult:
        """Write a consistent backup of the whole state to ``path`` (atomically)."""
        return await self._operations.backup(Path(path), deadline)


class Subscription:
    """An async iterator of :class:`Record` that survives node failures.

    ``next_offset`` is the offset the next delivered record will have. Records below it that
    a server sends again (after a reconnect) are dropped, so nothing is delivered twice.
    """

    def __init__(
        self, client: AsyncClient, session: str, from_offset: int, max_batch: int
    ) -> None:
        self._client = client
        self.session = session
        self.next_offset = from_offset
        self.reconnects = 0
        self._max_batch = max_batch
        self._buffer: deque[Record] = deque()
        self._stream: StreamReader | None = None
        self._address: str | None = None
        self._key = META  # the session's routing key (its shard, once the map is known)
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Record:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            try:
                await self._fill()
            except errors.ClientClosed:
                if self._closed:
                    raise StopAsyncIteration from None
                raise
        record = self._buffer.popleft()
        return record

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        self._drop_stream()
        self._client._subscriptions.discard(self)

    def _drop_stream(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    def _accept(self, response: pb.ReadResponse) -> None:
        for record in response.records:
            if record.offset < self.next_offset:
                continue  # already delivered before a reconnect
            self._buffer.append(Record.from_pb(record))
            self.next_offset = record.offset + 1

    async def _fill(self) -> None:
        """Read one response, reconnecting on transient failures until the deadline."""
        router = self._client._router
        loop = asyncio.get_running_loop()
        failing_since: float | None = None
        retries = 0
        last_error: errors.QuorumLogError | None = None
        while not self._closed:
            if self._stream is None:
                # (re)connecting: the map may have been learned since the last connect
                await router.learn(loop.time() + self._client.deadline)
                self._key = router.key_of(self.session)
                self._address = self._address or router.first_target(self._key)
                request = pb.SubscribeRequest(
                    session=self.session, from_offset=self.next_offset, max_batch=self._max_batch
                )
                self._stream = router.connection(self._address).subscribe(request)
            try:
                assert self._address is not None
                response = await router.watched(self._address, self._stream.read())
                if response is None:
                    raise errors.Unavailable(
                        "subscription stream ended by the server", address=self._address
                    )
            except errors.QuorumLogError as error:
                if not is_retryable(error):
                    self._drop_stream()
                    raise
                self._drop_stream()
                self.reconnects += 1
                last_error = error
                failing_since = failing_since if failing_since is not None else loop.time()
                if loop.time() - failing_since > self._client.deadline:
                    raise router.gave_up(f"subscribe to {self.session!r}", last_error) from None
                assert self._address is not None
                self._address, fresh_hint = router.next_target(self._address, error, self._key)
                if not fresh_hint:
                    await asyncio.sleep(router.policy.backoff(retries, router.rng))
                    retries += 1
                continue
            self._accept(response)
            return


class _LoopThread:
    """A private asyncio loop in a daemon thread, for the blocking :class:`Client`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._main, name="quorumlog-client-loop", daemon=True
        )
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future: ConcurrentFuture[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        async def shutdown() -> None:
            await self.loop.shutdown_asyncgens()

        if self.loop.is_closed():
            return
        self.run(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Client:
    """Blocking client with the same API as :class:`AsyncClient` (see there).

    Thread-safe: calls from many threads run on one private event loop, so concurrent
    appends to a session from different threads are coalesced as well.
    """

    def __init__(
        self,
        addresses: str | Sequence[str],
        *,
        deadline: float = DEFAULT_DEADLINE,
        producer_id: str | None = None,
        linger_ms: float = 0.0,
        max_batch_messages: int = 1000,
        max_batch_bytes: int = 1024 * 1024,
        retry: RetryPolicy | None = None,
        seed: int | None = None,
        security: ClientSecurity | None = None,
    ) -> None:
        self._async = AsyncClient(
            addresses,
            deadline=deadline,
            producer_id=producer_id,
            linger_ms=linger_ms,
            max_batch_messages=max_batch_messages,
            max_batch_bytes=max_batch_bytes,
            retry=retry,
            seed=seed,
            security=security,
        )
        self._loop = _LoopThread()
        self._closed = False
        self.acl = SyncAclOperations(self._async.acl, self._run)  # grant / revoke / list
        self.consumer = SyncConsumerOperations(self._async.consumer, self._run)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self._async.close())
        finally:
            self._loop.stop()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coroutine.close()
            raise errors.ClientClosed("the client is closed")
        return self._loop.run(coroutine)

    @property
    def producer_id(self) -> str:
        return self._async.producer_id

    @property
    def deadline(self) -> float:
        return self._async.deadline

    @property
    def addresses(self) -> list[str]:
        return self._async.addresses

    @property
    def leader(self) -> str | None:
        return self._async.leader

    def append(
        self,
        session: str,
        *messages: bytes | bytearray | memoryview | str,
        deadline: float | None = None,
        envelope: Envelope | None = None,
        envelopes: Sequence[Envelope | None] | None = None,
    ) -> AppendResult:
        return self._run(self._async.append(
            session, *messages, deadline=deadline, envelope=envelope, envelopes=envelopes
        ))

    def read(
        self,
        session: str,
        from_offset: int = 0,
        limit: int = 0,
        *,
        max_bytes: int = 0,
        consistency: Consistency = Consistency.LINEARIZABLE,
        deadline: float | None = None,
    ) -> ReadResult:
        return self._run(
            self._async.read(
                session,
                from_offset,
                limit,
                max_bytes=max_bytes,
                consistency=consistency,
                deadline=deadline,
            )
        )

    def subscribe(
        self, session: str, from_offset: int = 0, *, max_batch: int = 0
    ) -> SyncSubscription:
        async def start() -> Subscription:
            return self._async.subscribe(session, from_offset, max_batch=max_batch)

        return SyncSubscription(self, self._run(start()))

    def list_sessions(
        self,
        prefix: str = "",
        *,
        limit: int = 0,
        start_after: str = "",
        consistency: Consistency = Consistency.LINEARIZABLE,
        deadline: float | None = None,
    ) -> list[SessionInfo]:
        return self._run(
            self._async.list_sessions(
                prefix, limit=limit, start_after=start_after, consistency=consistency,
                deadline=deadline,
            )
        )

    def describe_session(
        self,
        session: str,
        *,
        consistency: Consistency = Consistency.LINEARIZABLE,
        deadline: float | None = None,
    ) -> SessionInfo:
        return self._run(
            self._async.describe_session(session, consistency=consistency, deadline=deadline)
        )

    def trim_session(
        self, session: str, before_offset: int, *, deadline: float | None = None
    ) -> SessionInfo:
        return self._run(self._async.trim_session(session, before_offset, deadline=deadline))

    def delete_session(self, session: str, *, deadline: float | None = None) -> None:
        self._run(self._async.delete_session(session, deadline=deadline))

    def node_status(self, address: str, *, deadline: float | None = None) -> NodeStatus:
        return self._run(self._async.node_status(address, deadline=deadline))

    def add_node(
        self, node_id: str, peer_address: str, client_address: str, *,
        deadline: float | None = None,
    ) -> AddNodeResult:
        return self._run(
            self._async.add_node(node_id, peer_address, client_address, deadline=deadline)
        )

    def remove_node(self, node_id: str, *, deadline: float | None = None) -> int:
        return self._run(self._async.remove_node(node_id, deadline=deadline))

    def transfer_leader(self, node_id: str, *, deadline: float | None = None) -> tuple[str, int]:
        return self._run(self._async.transfer_leader(node_id, deadline=deadline))

    def backup(self, path: str | Path, *, deadline: float | None = None) -> BackupResult:
        return self._run(self._async.backup(path, deadline=deadline))

    @property
    def reply_session(self) -> str:
        return self._async.reply_session

    def send_request(
        self,
        session: str,
        body: bytes | bytearray | memoryview | str,
        *,
        timeout: float = 30.0,
        reply_to: str | None = None,
        envelope: Envelope | None = None,
    ) -> Record:
        return self._run(self._async.send_request(
            session, body, timeout=timeout, reply_to=reply_to, envelope=envelope
        ))

    def reply(
        self,
        request: Any,
        body: bytes | bytearray | memoryview | str,
        *,
        envelope: Envelope | None = None,
        deadline: float | None = None,
    ) -> AppendResult:
        return self._run(self._async.reply(request, body, envelope=envelope, deadline=deadline))

    def cluster_status(self, *, deadline: float | None = None) -> ClusterStatus:
        return self._run(self._async.cluster_status(deadline=deadline))


class SyncSubscription:
    """A plain iterator over a :class:`Subscription`; close it (or use ``with``) when done."""

    def __init__(self, client: Client, subscription: Subscription) -> None:
        self._client = client
        self._subscription = subscription

    @property
    def next_offset(self) -> int:
        return self._subscription.next_offset

    @property
    def reconnects(self) -> int:
        return self._subscription.reconnects

    def __iter__(self) -> Iterator[Record]:
        return self

    def __next__(self) -> Record:
        async def step() -> Record | None:
            try:
                return await self._subscription.__anext__()
            except StopAsyncIteration:
                return None

        record = self._client._run(step())
        if record is None:
            raise StopIteration
        return record

    def close(self) -> None:
        if not self._client._closed:
            self._client._run(self._subscription.aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

