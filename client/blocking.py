"""The blocking SDK: :class:`Client` and :class:`SyncSubscription`.

Owns: a private asyncio loop in a daemon thread (:class:`_LoopThread`) and the blocking twin
of every :class:`~quorumlog.client.async_client.AsyncClient` method, run on that loop, so both
share one implementation. Must never: implement a call itself (each method runs the async
one) or be used from that loop's own thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Sequence
from concurrent.futures import Future as ConcurrentFuture
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from quorumlog.client import errors
from quorumlog.client.acl import SyncAclOperations
from quorumlog.client.admin import AddNodeResult, BackupResult
from quorumlog.client.async_client import DEFAULT_DEADLINE, AsyncClient
from quorumlog.client.consumer import SyncConsumerOperations
from quorumlog.client.envelope import Envelope
from quorumlog.client.producer import AppendResult
from quorumlog.client.results import (
    ClusterStatus,
    Consistency,
    NodeStatus,
    ReadResult,
    Record,
    SessionInfo,
)
from quorumlog.client.retry import RetryPolicy
from quorumlog.client.subscription import Subscription
from quorumlog.client.tls import ClientSecurity

T = TypeVar("T")


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
