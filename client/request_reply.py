"""Request-response over sessions in one call (docs/envelope.md#request-response).

Owns: the requester's side, :meth:`Requests.send` (append a request whose envelope names a
reply session and carries a ``message_id``, then wait for the reply whose ``correlation_id``
is that id) with one :class:`ReplyListener` per reply session (one subscription serving every
request of the client waiting on it), and the responder's side, :func:`reply_envelope`
(the envelope of the answer to a request: sent to its ``reply_to``, correlated by its
``message_id``, and given a ``message_id`` of its own derived from the request's, so a
responder that answers the same request twice, after a crash say, writes the answer once
within the session's duplicate window). Must never: consume or settle messages (the caller's
consumer does), or drop a reply another request of this client is waiting for.

A reply that arrives for no waiting request (its requester gave up, or another client shares
the reply session) is skipped. A request retried by the caller after a timeout should reuse
its ``message_id`` (pass the same envelope): the session's duplicate detection then writes it
once, and the reply answers both tries.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from typing import TYPE_CHECKING, Any

from quorumlog.client import errors
from quorumlog.client.envelope import Envelope

if TYPE_CHECKING:
    from quorumlog.client.sdk import AsyncClient, Record, Subscription

#: The reply session of a client that names none: private to the client (its producer id).
DEFAULT_REPLY_PREFIX = "replies/"


class ReplyListener:
    """One subscription on a reply session, handing each reply to the request waiting for
    its correlation id. Starts at the session's end when first used, so it sees every reply
    to requests sent after that."""

    def __init__(self, client: AsyncClient, session: str) -> None:
        self._client = client
        self.session = session
        self._waiting: dict[str, asyncio.Future[Record]] = {}
        self._next_offset: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._starting = asyncio.Lock()

    async def ready(self, deadline: float) -> None:
        """The subscription runs (started here when it does not yet)."""
        async with self._starting:
            if self._task is not None and not self._task.done():
                return
            if self._next_offset is None:
                try:
                    info = await self._client.describe_session(self.session, deadline=deadline)
                    self._next_offset = info.next_offset
                except errors.NotFound:
                    self._next_offset = 0  # it starts with the first reply
            self._subscription = self._client.subscribe(self.session, self._next_offset)
            self._task = asyncio.get_running_loop().create_task(
                self._run(self._subscription), name=f"quorumlog-replies-{self.session}"
            )

    def expect(self, correlation_id: str) -> asyncio.Future[Record]:
        future: asyncio.Future[Record] = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = future
        return future

    def forget(self, correlation_id: str) -> None:
        self._waiting.pop(correlation_id, None)

    async def _run(self, subscription: Subscription) -> None:
        try:
            async for record in subscription:
                self._next_offset = record.offset + 1
                envelope = record.envelope
                if envelope is None:
                    continue
                future = self._waiting.pop(envelope.correlation_id, None)
                if future is not None and not future.done():
                    future.set_result(record)
        except errors.QuorumLogError as error:
            # The subscription gave up (no node for a whole deadline): so do the waiting
            # requests; the next request starts it again where it stopped.
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(error)
            self._waiting.clear()

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.aclose()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Requests:
    """The requester's side of a client (``AsyncClient.send_request``)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._listeners: dict[str, ReplyListener] = {}

    def default_reply_session(self) -> str:
        return DEFAULT_REPLY_PREFIX + self._client.producer_id

    async def send(
        self, session: str, body: bytes, *, timeout: float, reply_to: str | None,
        envelope: Envelope | None,
    ) -> Record:
        if timeout <= 0:
            raise errors.InvalidArgument(f"timeout must be positive, got {timeout}")
        reply_session = reply_to or (envelope.reply_to if envelope else "") \
            or self.default_reply_session()
        base = envelope or Envelope()
        request = dataclasses.replace(
            base, message_id=base.message_id or uuid.uuid4().hex, reply_to=reply_session
        )
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        listener = self._listeners.get(reply_session)
        if listener is None:
            listener = self._listeners[reply_session] = ReplyListener(self._client, reply_session)
        await listener.ready(timeout)
        answer = listener.expect(request.message_id)
        try:
            await self._client.append(
                session, body, envelope=request, deadline=max(end - loop.time(), 0.001)
            )
            return await asyncio.wait_for(answer, max(end - loop.time(), 0.001))
        except TimeoutError:
            raise errors.DeadlineExceeded(
                f"no reply to request {request.message_id!r} in session {reply_session!r} "
                f"within {timeout:g}s"
            ) from None
        finally:
            listener.forget(request.message_id)

    async def close(self) -> None:
        for listener in self._listeners.values():
            await listener.close()
        self._listeners.clear()


def reply_envelope(request: Any, envelope: Envelope | None = None) -> tuple[str, Envelope]:
    """(the session to answer ``request`` in, the answer's envelope): ``request`` is a
    ``Record`` or ``ReceivedMessage`` whose envelope names ``reply_to`` and has a
    ``message_id``; ``envelope`` adds the answer's own properties and headers."""
    asked: Envelope | None = getattr(request, "envelope", None)
    if asked is None or not asked.reply_to:
        raise errors.InvalidArgument(
            f"message {getattr(request, 'offset', '?')} names no reply_to session to answer in"
        )
    if not asked.message_id:
        raise errors.InvalidArgument(
            f"message {getattr(request, 'offset', '?')} has no message_id to correlate a "
            "reply with"
        )
    base = envelope or Envelope()
    return asked.reply_to, dataclasses.replace(
        base, correlation_id=asked.message_id,
        message_id=base.message_id or f"{asked.message_id}/reply",
    )
