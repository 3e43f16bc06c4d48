"""Session processors: own sessions of a consumer group one at a time per slot, up to a
concurrency limit, and run a handler over their messages in order.

Owns: the accept → receive → handle → settle → release loop of each slot, renewing each lease
automatically (every third of its duration), calling back when a lease is lost (a renew or
settle refused with ``FailedPrecondition``: another consumer owns the session now, so the slot
drops it at once), releasing a drained session at once so another consumer can take it, and
settling for the handler (complete everything it returned from; abandon the batch when it
raised; per-message abandon / dead-letter and a state write staged on the
:class:`SessionContext`, all sent in ONE atomic settle). Across failovers: every receive asks
for the slot's own still-locked messages first (``redeliver_in_flight``: a receive whose answer
was lost is not left locked behind later messages), and a refused settle is a lost lease only if
a renew is refused too (otherwise it was a retried settle that had already succeeded).
:class:`SessionProcessor` is the blocking twin: the same loop on a
:class:`~quorumlog.client.Client`'s event loop thread, with a plain function as the handler (run
in a worker thread). Must never: process one session in two slots (each slot has its own
consumer name, and the cluster hands a session to one owner at a time), or keep a session after
its lease is lost.

Example::

    async def handle(messages, session):
        for message in messages:
            ...
        session.set_state(b"progress")  # written atomically with the settle

    async with AsyncSessionProcessor(client, "billing", handle, max_sessions=8):
        await asyncio.sleep(60)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Self

from quorumlog.client import errors
from quorumlog.client.consumer import (
    Action,
    Lease,
    ReceivedMessage,
    Settlement,
    SettleResult,
    StateWrite,
)

if TYPE_CHECKING:
    from quorumlog.client.sdk import AsyncClient, Client

log = logging.getLogger("quorumlog.processor")


@dataclass
class SessionContext:
    """The session a handler works on: its lease, state, and staged per-message settlements."""

    lease: Lease
    state_version: int
    state: bytes
    lost: bool = False
    _staged_state: bytes | None = None
    _actions: dict[int, Settlement] = field(default_factory=dict)

    @property
    def session(self) -> str:
        return self.lease.session

    @property
    def group(self) -> str:
        return self.lease.group

    @property
    def token(self) -> int:
        return self.lease.token

    def set_state(self, data: bytes) -> None:
        """Write the session state with this batch's settle (compare-and-set, atomic)."""
        self._staged_state = data

    def abandon(self, message: ReceivedMessage, delay_ms: int = 0) -> None:
        """Redeliver ``message`` (after ``delay_ms``) instead of completing it."""
        self._actions[message.offset] = Settlement.of(message, Action.ABANDON, delay_ms=delay_ms)

    def dead_letter(self, message: ReceivedMessage, reason: str) -> None:
        self._actions[message.offset] = Settlement.of(message, Action.DEAD_LETTER, reason=reason)

    def _take(self) -> tuple[dict[int, Settlement], bytes | None]:
        """What the handler staged for its batch; clears it for the next one."""
        staged = self._actions, self._staged_state
        self._actions, self._staged_state = {}, None
        return staged


Handler = Callable[[list[ReceivedMessage], SessionContext], Awaitable[None]]
LeaseLost = Callable[[SessionContext, errors.QuorumLogError], None]


class AsyncSessionProcessor:
    """Processes sessions of ``group`` with ``handler``, at most ``max_sessions`` at once.

    ``prefix``: only sessions whose names start with it. ``lease_ms``: lease duration (renewed
    every third of it). ``max_messages``: per receive (and per settle). ``on_lease_lost``:
    called with the context and the refusal when a lease is lost. ``idle_ms``: how long a slot
    waits before asking again when no session is available. Start with :meth:`start` (or
    ``async with``), stop with :meth:`stop`; :meth:`run` does both around ``until``.
    """

    def __init__(
        self,
        client: AsyncClient,
        group: str,
        handler: Handler,
        *,
        name: str | None = None,
        max_sessions: int = 4,
        prefix: str = "",
        lease_ms: int = 30_000,
        renew_ms: int | None = None,
        max_messages: int = 100,
        idle_ms: int = 200,
        on_lease_lost: LeaseLost | None = None,
    ) -> None:
        if max_sessions < 1:
            raise errors.InvalidArgument("max_sessions must be at least 1")
        self.client = client
        self.group = group
        self.handler = handler
        self.name = name or f"processor-{uuid.uuid4().hex[:8]}"
        self.max_sessions = max_sessions
        self.prefix = prefix
        self.lease_ms = lease_ms
        self.renew_ms = renew_ms if renew_ms is not None else max(1, lease_ms // 3)
        self.max_messages = max_messages
        self.idle_ms = idle_ms
        self.on_lease_lost = on_lease_lost
        self.processed = 0  # messages completed by this processor
        self._stopping = asyncio.Event()
        self._slots: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._slots = [
            loop.create_task(self._slot(f"{self.name}/{slot}"), name=f"{self.name}/{slot}")
            for slot in range(self.max_sessions)
        ]

    async def stop(self) -> None:
        """Finish the batches in hand, release every session, stop."""
        self._stopping.set()
        for task in self._slots:
            with contextlib.suppress(Exception):
                await task

    async def run(self, until: Awaitable[object]) -> None:
        self.start()
        try:
            await until
        finally:
            await self.stop()

    # -- one slot --------------------------------------------------------------------------------
    async def _slot(self, consumer: str) -> None:
        ops = self.client.consumer
        while not self._stopping.is_set():
            try:
                lease = await ops.accept_next(
                    self.group, consumer, prefix=self.prefix, lease_ms=self.lease_ms
                )
            except errors.QuorumLogError as error:
                log.warning("%s: accept failed: %s", consumer, error)
                lease = None
            if lease is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.idle_ms / 1000)
                continue
            await self._serve(lease)

    async def _serve(self, lease: Lease) -> None:
        ops = self.client.consumer
        context = SessionContext(lease, 0, b"")
        renewer = asyncio.get_running_loop().create_task(self._renew(context))
        try:
            state = await ops.get_state(lease.session)
            context.state_version, context.state = state.version, state.data
            while not self._stopping.is_set() and not context.lost:
                batch = await ops.receive(
                    lease.session, lease.group, token=lease.token, max_messages=self.max_messages,
                    redeliver_in_flight=True,  # every earlier batch is settled
                )
                if not batch.messages:
                    break  # drained: hand it to the next consumer at once
                await self._handle(context, batch.messages)
        except errors.FailedPrecondition as error:
            self._lost(context, error)
        except errors.QuorumLogError as error:
            log.warning("%s: %s failed: %s", lease.consumer, lease.session, error)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            if not context.lost:
                with contextlib.suppress(errors.QuorumLogError):
                    await ops.release(context.lease)

    async def _handle(self, context: SessionContext, messages: list[ReceivedMessage]) -> None:
        context._take()
        try:
            await self.handler(messages, context)
        except Exception as error:  # the handler failed: every message is redelivered
            log.warning("%s: handler failed on %s: %r", context.lease.consumer,
                        context.session, error)
            await self._settle(context, [Settlement.of(m, Action.ABANDON) for m in messages],
                               None)
            return
        actions, staged_state = context._take()
        settlements = [actions.get(m.offset) or Settlement.of(m) for m in messages]
        state = None
        if staged_state is not None:
            state = StateWrite(context.state_version, staged_state)
        try:
            result = await self._settle(context, settlements, state)
        except errors.FailedPrecondition as error:
            if not await self._still_owned(context):
                raise
            # Still the owner: a retried settle whose first try had succeeded, or a state
            # version that moved. Unsettled messages come again (``redeliver_in_flight``).
            log.warning("%s: settle on %s refused, lease held: %s", context.lease.consumer,
                        context.session, error)
            state_now = await self.client.consumer.get_state(context.session)
            context.state_version, context.state = state_now.version, state_now.data
            return
        self.processed += result.completed
        if state is not None:
            context.state_version = result.state_version
            context.state = state.data

    async def _settle(
        self, context: SessionContext, settlements: list[Settlement], state: StateWrite | None
    ) -> SettleResult:
        return await self.client.consumer.settle(
            context.session, context.group, settlements, token=context.token, state=state
        )

    async def _still_owned(self, context: SessionContext) -> bool:
        try:
            context.lease = await self.client.consumer.renew(context.lease, lease_ms=self.lease_ms)
        except errors.FailedPrecondition:
            return False
        return True

    async def _renew(self, context: SessionContext) -> None:
        while not context.lost:
            await asyncio.sleep(self.renew_ms / 1000)  # the renewal period
            try:
                context.lease = await self.client.consumer.renew(
                    context.lease, lease_ms=self.lease_ms
                )
            except errors.FailedPrecondition as error:
                self._lost(context, error)
            except errors.QuorumLogError as error:  # transient: the next period tries again
                log.warning("%s: renew of %s failed: %s", context.lease.consumer,
                            context.session, error)

    def _lost(self, context: SessionContext, error: errors.QuorumLogError) -> None:
        if context.lost:
            return
        context.lost = True
        log.warning("%s: lease of %s lost: %s", context.lease.consumer, context.session, error)
        if self.on_lease_lost is not None:
            self.on_lease_lost(context, error)


SyncHandler = Callable[[list[ReceivedMessage], SessionContext], None]


class SessionProcessor:
    """The blocking twin of :class:`AsyncSessionProcessor` on a :class:`Client`: ``handler`` is
    a plain function (run in a worker thread, one call per slot at a time); :meth:`start`
    returns at once, :meth:`stop` waits for the slots to finish and release their sessions."""

    def __init__(self, client: Client, group: str, handler: SyncHandler, **options: object) -> None:
        async def handle(messages: list[ReceivedMessage], context: SessionContext) -> None:
            await asyncio.to_thread(handler, messages, context)

        self._client = client
        self._loop = client._loop.loop  # the client's private event loop thread
        self._processor = AsyncSessionProcessor(
            client._async, group, handle, **options  # type: ignore[arg-type]
        )

    @property
    def processed(self) -> int:
        return self._processor.processed

    def start(self) -> None:
        async def begin() -> None:
            self._processor.start()

        asyncio.run_coroutine_threadsafe(begin(), self._loop).result()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._processor.stop(), self._loop).result()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
