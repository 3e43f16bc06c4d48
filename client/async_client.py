"""The asyncio SDK: :class:`AsyncClient` (subscriptions: ``quorumlog.client.subscription``).

Owns: request building, response conversion to the dataclasses of
``quorumlog.client.results``, input validation, and the subscription resume logic. Leader
finding and retries live in ``leader.py``, backoff in ``retry.py``, coalescing idempotent
appends of one session in ``producer.py`` and of all sessions into AppendBatch RPCs in
``outbox.py``, request-response in ``request_reply.py``. Must never: block the event loop
(the blocking twin, ``quorumlog.client.blocking``, runs this on a thread of its own).

Guarantees: an append is retried on transient failures with the same producer id and
sequence until its deadline, so it is written at most once; when the deadline passes first
the outcome is unknown and :class:`~quorumlog.client.errors.DeadlineExceeded` (or
``Unavailable`` when no node was reachable) is raised. A subscription reconnects (to the
leader hint or the next node) after a stream error and resumes at the offset after the last
record it delivered: no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import random
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from quorumlog.client import errors
from quorumlog.client._grpc import NodeConnection
from quorumlog.client.acl import AclOperations
from quorumlog.client.admin import AddNodeResult, BackupResult, Operations
from quorumlog.client.consumer import ConsumerOperations
from quorumlog.client.envelope import Envelope, envelopes_for
from quorumlog.client.leader import Router, parse_addresses
from quorumlog.client.outbox import AppendOutbox
from quorumlog.client.producer import AppendResult, BatchLimits, SessionProducer
from quorumlog.client.request_reply import Requests, reply_envelope
from quorumlog.client.results import (
    ClusterStatus,
    Consistency,
    NodeReport,
    NodeStatus,
    ReadResult,
    Record,
    SessionInfo,
)
from quorumlog.client.retry import RetryPolicy
from quorumlog.client.shards import META
from quorumlog.client.subscription import Subscription
from quorumlog.client.tls import ClientSecurity
from quorumlog.proto import envelope_pb2
from quorumlog.proto import quorumlog_pb2 as pb

T = TypeVar("T")

DEFAULT_DEADLINE = 10.0
MAX_SESSION_ID_BYTES = 1024


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
