"""Idempotent, coalescing producer for one session (like a Kafka producer's linger).

Owns: the per-session sequence counter and the queue of pending appends. Concurrent
``submit`` calls within ``linger`` seconds (or until a batch is full) become ONE append
request; each caller's messages stay contiguous and in submit order, and the caller gets its
own offsets (``first_offset`` + position in the batch). Batches of a session are sent one at
a time, in order, so sequence order equals offset order.

Sequence numbers: message ``i`` of a batch with sequence ``s`` has sequence ``s + i``. A batch
keeps its sequence through every retry (so the server's dedup makes retries exactly-once) and
the counter advances past every batch that was handed to the sender, whatever its outcome:
reusing the numbers of a batch whose outcome is unknown would let the server discard
*different* messages as duplicates of it.

Must never: talk to grpc or choose nodes; ``send`` does that.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from quorumlog.client import errors
from quorumlog.proto import envelope_pb2
from quorumlog.proto import quorumlog_pb2 as pb


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where one ``append`` call's messages landed."""

    session: str
    first_offset: int
    count: int
    commit_index: int
    #: True when the server had already written these messages (a retry of an earlier try,
    #: or every message's ``message_id`` was a duplicate)
    duplicate: bool = False
    #: Set when some message was a duplicate by ``message_id`` (docs/envelope.md): the offset
    #: of every message of the call (a duplicate's is the original's), and the positions in
    #: the call of those duplicates.
    message_offsets: tuple[int, ...] = ()
    duplicates: tuple[int, ...] = ()

    @property
    def offsets(self) -> list[int]:
        if self.message_offsets:
            return list(self.message_offsets)
        return list(range(self.first_offset, self.first_offset + self.count))


# send(session, messages, sequence, end, envelopes) -> response, retrying internally until
# `end` (envelopes: None, or one per message).
Send = Callable[
    [str, Sequence[bytes], int, float, "list[envelope_pb2.Envelope] | None"],
    Awaitable[pb.AppendResponse],
]
_NO_ENVELOPE = envelope_pb2.Envelope()


@dataclass(slots=True)
class _Pending:
    messages: Sequence[bytes]
    envelopes: list[envelope_pb2.Envelope] | None  # None, or one per message
    size: int
    end: float
    enqueued: float
    future: asyncio.Future[AppendResult]


@dataclass(frozen=True, slots=True)
class BatchLimits:
    linger: float = 0.0
    max_messages: int = 1000
    max_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        if self.linger < 0:
            raise ValueError("linger must be non-negative")
        if self.max_messages < 1 or self.max_bytes < 1:
            raise ValueError("batch limits must be positive")


class SessionProducer:
    """Queues appends for one session and sends them as ordered batches."""

    def __init__(self, session: str, producer_id: str, send: Send, limits: BatchLimits) -> None:
        self.session = session
        self.producer_id = producer_id
        self.next_sequence = 0
        self.batches_sent = 0
        self._send = send
        self._limits = limits
        self._pending: deque[_Pending] = deque()
        self._pending_messages = 0
        self._pending_bytes = 0
        self._task: asyncio.Task[None] | None = None

    def submit(
        self, messages: Sequence[bytes], end: float,
        envelopes: list[envelope_pb2.Envelope] | None = None,
    ) -> asyncio.Future[AppendResult]:
        """``envelopes``: None, or one per message (an empty one for a message without)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AppendResult] = loop.create_future()
        size = sum(len(message) for message in messages)
        if envelopes is not None:
            size += sum(envelope.ByteSize() for envelope in envelopes)
        self._pending.append(_Pending(messages, envelopes, size, end, loop.time(), future))
        self._pending_messages += len(messages)
        self._pending_bytes += size
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name=f"quorumlog-producer-{self.session}")
        return future

    @property
    def idle(self) -> bool:
        return not self._pending and (self._task is None or self._task.done())

    def _full(self) -> bool:
        return (
            self._pending_messages >= self._limits.max_messages
            or self._pending_bytes >= self._limits.max_bytes
        )

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        count = size = 0
        while self._pending:
            item = self._pending[0]
            over = (
                count + len(item.messages) > self._limits.max_messages
                or size + item.size > self._limits.max_bytes
            )
            if batch and over:
                break
            self._pending.popleft()
            batch.append(item)
            count += len(item.messages)
            size += item.size
        self._pending_messages -= count
        self._pending_bytes -= size
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            wait = self._pending[0].enqueued + self._limits.linger - loop.time()
            if not self._full():
                # With no linger, yield once so appends made in the same loop iteration share
                # the batch; while a batch is in flight, later appends gather on their own.
                await asyncio.sleep(max(wait, 0.0))
            batch = self._take_batch()
            try:
                await self._send_batch(batch, loop)
            except asyncio.CancelledError:
                self._fail(batch, errors.ClientClosed("the client was closed"))
                self._fail_all(errors.ClientClosed("the client was closed"))
                raise

    async def _send_batch(self, batch: list[_Pending], loop: asyncio.AbstractEventLoop) -> None:
        messages = [message for item in batch for message in item.messages]
        envelopes: list[envelope_pb2.Envelope] | None = None
        if any(item.envelopes is not None for item in batch):
            envelopes = [
                envelope for item in batch
                for envelope in (item.envelopes or [_NO_ENVELOPE] * len(item.messages))
            ]
        end = min(item.end for item in batch)
        if end <= loop.time():
            self._fail(batch, errors.DeadlineExceeded("append: deadline passed while queued"))
            return
        sequence = self.next_sequence
        self.next_sequence += len(messages)
        self.batches_sent += 1
        try:
            response = await self._send(self.session, messages, sequence, end, envelopes)
        except errors.QuorumLogError as error:
            self._fail(batch, error)
            return
        if response.offsets:
            self._answer_by_offsets(batch, response)
            return
        if response.count != len(messages):
            self._fail(
                batch,
                errors.Internal(
                    f"append: server acknowledged {response.count} of {len(messages)} messages"
                ),
            )
            return
        position = response.first_offset
        for item in batch:
            result = AppendResult(
                session=self.session,
                first_offset=position,
                count=len(item.messages),
                commit_index=response.commit_index,
                duplicate=response.duplicate,
            )
            position += len(item.messages)
            if not item.future.done():
                item.future.set_result(result)

    def _answer_by_offsets(self, batch: list[_Pending], response: pb.AppendResponse) -> None:
        """Some message was a duplicate by ``message_id``: each caller gets its messages'
        offsets from the response's per-message list."""
        total = sum(len(item.messages) for item in batch)
        if len(response.offsets) != total:
            self._fail(batch, errors.Internal(
                f"append: server answered {len(response.offsets)} offsets for {total} messages"
            ))
            return
        duplicate_positions = set(response.duplicate_positions)
        position = 0
        for item in batch:
            count = len(item.messages)
            offsets = tuple(response.offsets[position : position + count])
            duplicates = tuple(
                i for i in range(count) if position + i in duplicate_positions
            )
            result = AppendResult(
                session=self.session, first_offset=offsets[0], count=count,
                commit_index=response.commit_index,
                duplicate=response.duplicate or len(duplicates) == count,
                message_offsets=offsets, duplicates=duplicates,
            )
            position += count
            if not item.future.done():
                item.future.set_result(result)

    @staticmethod
    def _fail(batch: list[_Pending], error: errors.QuorumLogError) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(error)

    def _fail_all(self, error: errors.QuorumLogError) -> None:
        self._fail(list(self._pending), error)
        self._pending.clear()
        self._pending_messages = self._pending_bytes = 0

    async def close(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_all(errors.ClientClosed("the client was closed"))
