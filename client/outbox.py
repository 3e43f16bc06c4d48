"""Client-wide group commit of appends: many sessions' requests in one AppendBatch RPC.

Owns: the queues of ready ``AppendRequest`` s of every session of one client, one lane per
routing key (a shard; the only lane with one shard), and each lane's dispatcher. While a
lane's dispatch round is in flight, its new requests gather for its next; when nothing is in
flight a request goes out at once (a lone sequential append pays no extra latency). A round
larger than the server's default AppendBatch limits (:data:`MAX_BATCH_APPENDS` appends,
:data:`MAX_BATCH_BYTES` message bytes) is split into several RPCs sent in parallel. Each RPC
goes through :meth:`Router.call` (retries, leader following) and resends the very same
requests, so producer dedup keeps retries exactly-once.

Deadline: an RPC (with its retries) runs until the EARLIEST ``end`` among its requests. If it
gives up then, requests whose own deadline has not passed go back to the front of their lane
and ride the next round; only the expired ones fail (DeadlineExceeded or Unavailable, as a
lone Append would). A permanent failure of the whole RPC fails all its requests; an outcome
with a non-zero code fails only its own request, with the typed error of that status.

Shards: on a sharded cluster each request joins its session's shard's lane (the router's map,
learned before the first append), so every shard's leader gets its own rounds, in flight at
the same time as the other shards' and never waiting for a slower shard; each round is one
AppendBatch (atomic, in order) like a whole round on one shard. An outcome refused with
UNAVAILABLE and a leader hint (that node leads other shards of the batch, not this append's)
is sent again, the very same request, to the named leader within the item's deadline (an
UNAVAILABLE outcome without a hint is sent again too, to another node); the rest of its batch
is answered as it came.

A server without AppendBatch (UNIMPLEMENTED, an older version) makes the client fall back to
one Append RPC per request for the rest of its life.

Must never: build requests, number sequences or order a session's batches; ``producer.py``
sends one batch per session at a time, so per-session order is already fixed when a request
gets here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

from quorumlog.client import errors
from quorumlog.client._grpc import NodeConnection
from quorumlog.client.leader import Router
from quorumlog.client.retry import is_retryable
from quorumlog.proto import quorumlog_pb2 as pb

#: the server's default ``Limits.max_appends_per_batch`` and ``max_batch_bytes``
MAX_BATCH_APPENDS = 1_000
UNAVAILABLE = 14  # the gRPC status code number
MAX_BATCH_BYTES = 4 << 20
#: per-append hints followed at once for one item; more refusals wait a backoff first
HINTS_AT_ONCE = 2
#: lane keys of leader nodes: NODE_LANES - (the node's index in the router's addresses);
#: below every shard key (>= 0) and META (-1)
NODE_LANES = -2


@dataclass(slots=True)
class _Item:
    request: pb.AppendRequest
    size: int
    end: float
    future: asyncio.Future[pb.AppendResponse]
    shard: int | None = None  # the shard a refusal named; None: the router's map says
    refusals: int = 0  # per-append refusals with a leader hint so far


def _describe(items: list[_Item]) -> str:
    sessions = {item.request.session for item in items}
    if len(sessions) == 1:
        return f"append to {next(iter(sessions))!r}"
    return f"append batch of {len(items)} appends to {len(sessions)} sessions"


class AppendOutbox:
    """Queues append requests of any session and sends them as AppendBatch RPCs."""

    def __init__(
        self,
        router: Router,
        *,
        max_appends: int = MAX_BATCH_APPENDS,
        max_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        if max_appends < 1 or max_bytes < 1:
            raise ValueError("batch limits must be positive")
        self._router = router
        self._max_appends = max_appends
        self._max_bytes = max_bytes
        #: one lane per routing key (shard; META with one shard): its queue and dispatcher
        self._lanes: dict[int, deque[_Item]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._batch_supported = True
        self._closed = False
        #: RPCs sent (AppendBatch, or Append after a fallback), for tests and debugging
        self.rpcs = 0

    async def send(self, request: pb.AppendRequest, end: float) -> pb.AppendResponse:
        """``request``'s answer; raises the typed error of its outcome (retrying until ``end``)."""
        if self._closed:
            raise errors.ClientClosed("the client is closed")
        if not self._router.learned:
            await self._router.learn(end)  # once: which shard, so which lane
        loop = asyncio.get_running_loop()
        future: asyncio.Future[pb.AppendResponse] = loop.create_future()
        size = sum(len(message) for message in request.messages)
        item = _Item(request, size, end, future)
        self._queue_up(self._key_of(item), [item], loop)
        return await future

    def _shard_of(self, item: _Item) -> int:
        """``item``'s shard: its session's under the map, or the one a refusal named."""
        return self._router.key_of(item.request.session) if item.shard is None else item.shard

    def _key_of(self, item: _Item) -> int:
        """The lane of ``item``: its shard's leader node when known (every shard that node
        leads shares one lane, so one AppendBatch carries them all and the node proposes
        them together: one fsync, one frame per follower), else its shard's own lane."""
        shard = self._shard_of(item)
        router = self._router
        if not router.shards.sharded:
            return shard
        leader = router.leader_of(shard)
        if leader is None or leader not in router.addresses:
            return shard
        return NODE_LANES - router.addresses.index(leader)

    # -- the dispatchers ---------------------------------------------------------------------

    def _queue_up(
        self, key: int, items: list[_Item], loop: asyncio.AbstractEventLoop, *,
        front: bool = False,
    ) -> None:
        """Add ``items`` to ``key``'s lane (at its front: retries go first, in order) and start
        its dispatcher unless it runs."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = deque()
        if front:
            lane.extendleft(reversed(items))
        else:
            lane.extend(items)
        task = self._tasks.get(key)
        if task is None or task.done():
            self._tasks[key] = loop.create_task(
                self._run(key, lane), name=f"quorumlog-append-outbox-{key}"
            )

    async def _run(self, key: int, lane: deque[_Item]) -> None:
        """``key``'s dispatcher: one round in flight per shard, the next gathers meanwhile."""
        loop = asyncio.get_running_loop()
        try:
            while lane:
                chunks = self._take(lane, loop)
                if len(chunks) == 1:
                    await self._dispatch(key, chunks[0], loop)
                elif chunks:
                    await asyncio.gather(*(self._dispatch(key, chunk, loop) for chunk in chunks))
        except asyncio.CancelledError:
            self._fail(list(lane), errors.ClientClosed("the client was closed"))
            lane.clear()
            raise

    def _take(self, lane: deque[_Item], loop: asyncio.AbstractEventLoop) -> list[list[_Item]]:
        """Everything queued in ``lane``, split by the batch limits; expired requests fail."""
        now = loop.time()
        chunks: list[list[_Item]] = []
        chunk: list[_Item] = []
        size = 0
        while lane:
            item = lane.popleft()
            if item.future.done():
                continue  # its caller gave up (cancelled)
            if item.end <= now:
                item.future.set_exception(
                    errors.DeadlineExceeded("append: deadline passed while queued")
                )
                continue
            if chunk and (len(chunk) >= self._max_appends or size + item.size > self._max_bytes):
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(item)
            size += item.size
        if chunk:
            chunks.append(chunk)
        return chunks

    async def _dispatch(
        self, key: int, items: list[_Item], loop: asyncio.AbstractEventLoop
    ) -> None:
        try:
            if self._batch_supported:
                await self._send_batch(key, items, loop)
            else:
                await asyncio.gather(*(self._send_one(item) for item in items))
        except asyncio.CancelledError:
            self._fail(items, errors.ClientClosed("the client was closed"))
            raise

    async def _send_batch(
        self, key: int, items: list[_Item], loop: asyncio.AbstractEventLoop
    ) -> None:
        request = pb.AppendBatchRequest(appends=[item.request for item in items])
        answered: list[str] = []

        async def attempt(node: NodeConnection, timeout: float) -> pb.AppendBatchResponse:
            answered.append(node.address)
            return await node.append_batch(request, timeout)

        end = min(item.end for item in items)
        self.rpcs += 1
        shard = self._shard_of(items[0])  # whom the router follows hints for (a node lane
        # carries several shards: the node splits the batch and answers each append)
        try:
            response = await self._router.call(
                attempt, end=end, key=shard, what=_describe(items)
            )
        except errors.Unimplemented:
            self._batch_supported = False  # an older server: one Append per request from now
            await asyncio.gather(*(self._send_one(item) for item in items))
            return
        except errors.QuorumLogError as error:
            self._gave_up(key, items, error, loop)
            return
        address = answered[-1] if answered else None
        if len(response.outcomes) != len(items):
            self._fail(
                items,
                errors.Internal(
                    f"append batch: the server answered {len(response.outcomes)} outcomes "
                    f"for {len(items)} appends",
                    address=address,
                ),
            )
            return
        refused: list[_Item] = []
        for item, outcome in zip(items, response.outcomes, strict=True):
            if item.future.done():
                continue
            if outcome.code == UNAVAILABLE:
                self._redirect(item, outcome, address)
                refused.append(item)
            elif outcome.code != 0:
                item.future.set_exception(
                    errors.from_status_number(outcome.code, outcome.message, address=address)
                )
            elif not outcome.HasField("result"):
                item.future.set_exception(
                    errors.Internal("append batch: an OK outcome without a result", address=address)
                )
            else:
                item.future.set_result(outcome.result)
        if refused:
            await self._resend(refused, loop)

    def _redirect(self, item: _Item, outcome: pb.AppendOutcome, address: str | None) -> None:
        """``item`` was refused UNAVAILABLE on its own (its node does not lead its shard, or
        did not finish it): remember the shard's leader it named, if any (and ask for a fresh
        map when ours routed it wrongly). Sent again, dedup keeps it exactly-once."""
        item.refusals += 1
        router = self._router
        expected = router.key_of(item.request.session)
        if not outcome.leader_addr:
            router.set_leader(expected, None)  # no hint: the next round tries another node
            return
        key = outcome.shard
        if expected == key:
            item.shard = None
        else:  # our map is not learned yet (or stale): the node knows the shard
            item.shard = key
            router.refresh_soon()
        router.set_leader(key, outcome.leader_addr if outcome.leader_addr != address else None)

    async def _resend(self, items: list[_Item], loop: asyncio.AbstractEventLoop) -> None:
        """Send refused appends again, the same requests, each to its shard's named leader;
        after :data:`HINTS_AT_ONCE` refusals of one append, only after a backoff."""
        patience = max(item.refusals for item in items) - HINTS_AT_ONCE
        if patience > 0:
            delay = self._router.policy.backoff(patience - 1, self._router.rng)
            await asyncio.sleep(min(delay, max(0.0, min(i.end for i in items) - loop.time())))
        for item in items:
            if item.end <= loop.time() and not item.future.done():
                item.future.set_exception(errors.DeadlineExceeded(
                    f"append to {item.request.session!r}: deadline passed while following "
                    "its shard's leader; outcome unknown"
                ))
        lanes: dict[int, list[_Item]] = {}
        for item in items:
            if not item.future.done():
                lanes.setdefault(self._key_of(item), []).append(item)
        for key, moved in lanes.items():
            self._queue_up(key, moved, loop, front=True)

    def _gave_up(
        self, key: int, items: list[_Item], error: errors.QuorumLogError,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """The RPC failed as a whole: retry later those that still have time, if it may help."""
        if not is_retryable(error):
            self._fail(items, error)
            return
        now = loop.time()
        # The router gives up on a definite UNAVAILABLE once less than ``min_retry_budget`` is
        # left (a try cut by the deadline would only make the outcome unknown); an item with
        # no more time than that ends here with the same answer instead of being sent again
        # (which spun through hundreds of doomed tries in a dead cluster's last second).
        margin = (self._router.policy.min_retry_budget
                  if isinstance(error, errors.Unavailable) else 0.0)
        expired = [item for item in items if item.end - now <= margin]
        self._fail(expired, error)
        # the same requests again, first in their lanes: dedup keeps them exactly-once
        lanes: dict[int, list[_Item]] = {}
        for item in items:
            if not item.future.done():
                lanes.setdefault(self._key_of(item), []).append(item)
        for lane, moved in lanes.items():
            self._queue_up(lane, moved, loop, front=True)

    async def _send_one(self, item: _Item) -> None:
        request = item.request
        key = self._shard_of(item)

        async def attempt(node: NodeConnection, timeout: float) -> pb.AppendResponse:
            return await node.append(request, timeout)

        self.rpcs += 1
        try:
            response = await self._router.call(
                attempt, end=item.end, key=key, what=f"append to {request.session!r}"
            )
        except errors.QuorumLogError as error:
            self._fail([item], error)
            return
        if not item.future.done():
            item.future.set_result(response)

    @staticmethod
    def _fail(items: list[_Item], error: errors.QuorumLogError) -> None:
        for item in items:
            if not item.future.done():
                item.future.set_exception(error)

    async def close(self) -> None:
        """Fail everything queued or in flight with ClientClosed."""
        self._closed = True
        tasks = [task for task in self._tasks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for lane in self._lanes.values():
            self._fail(list(lane), errors.ClientClosed("the client was closed"))
            lane.clear()
