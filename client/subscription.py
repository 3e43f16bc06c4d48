"""A session's subscription (:class:`Subscription`): committed records from an offset on,
following the tail, across node failures.

Owns: the Subscribe stream of one session, the buffer of records received and not yet handed
out, reconnecting (to the leader hint or the next node, with backoff, until the client's
deadline passes with no node serving) and resuming at the offset after the last record
handed out, dropping what a server sends again: no gap, no duplicate. Must never: hand out a
record twice or skip one, or outlive its client (``aclose`` unregisters it).
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Self

from quorumlog.client import errors
from quorumlog.client._grpc import StreamReader
from quorumlog.client.results import Record
from quorumlog.client.retry import is_retryable
from quorumlog.client.shards import META
from quorumlog.proto import quorumlog_pb2 as pb

if TYPE_CHECKING:
    from quorumlog.client.async_client import AsyncClient


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
