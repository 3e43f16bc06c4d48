"""The data path of one proxied TCP connection: two one-way links through chains of toxics.

Owns: reading each source socket in chunks of at most 32 KiB stamped with their read time,
one ``Stage`` per toxic per link (the ``ToxicStub`` a toxic's behaviour runs against, with
its own toxicity draw and per-link state), writing to the destination socket, end of stream
(one side's EOF closes the other socket fully), connection reset (SO_LINGER 0) and live
toxic additions, updates and removals that lose no data already in flight.
Must never: listen, dial, parse HTTP or decide which toxics a proxy has; ``proxy`` hands it
sockets and toxics.

A link is ``reader -> head stage (noop) -> toxic stages in the order added -> writer``. Stages
hand items on synchronously (``deliver``), so rewiring the chain between awaits is atomic;
only a toxic's waits are interruptible, and an interrupted toxic hands back what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import socket
import struct
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

from quorumlog.chaos.toxiproxy.toxics import (
    END,
    NOOP_BEHAVIOUR,
    Chunk,
    Direction,
    EndOfStream,
    Item,
    Signal,
    Toxic,
)

CHUNK_SIZE = 32 * 1024
# Bytes a link may hold between its reader and its writer before it stops reading, so a
# slow toxic pushes back on the sender through TCP instead of buffering without bound.
IN_FLIGHT_LIMIT = 256 * 1024

log = logging.getLogger(__name__)


class _Receiver(Protocol):
    def deliver(self, item: Item) -> None: ...


class _Wakeable:
    """An inbox plus one wake-up event, waited on with an optional loop-time deadline."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.inbox: deque[Item] = deque()
        self._wake = asyncio.Event()

    def deliver(self, item: Item) -> None:
        self.inbox.append(item)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def _wait(self, deadline: float | None) -> None:
        self._wake.clear()
        timer = None
        if deadline is not None and not math.isinf(deadline):
            timer = self.loop.call_at(deadline, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            if timer is not None:
                timer.cancel()


class Stage(_Wakeable):
    """One toxic on one link of one connection."""

    def __init__(self, link: Link, toxic: Toxic | None) -> None:
        super().__init__(link.loop)
        self.link = link
        self.toxic = toxic  # None for the link's head, which always passes data through
        self.next: _Receiver = link.writer
        self.closed = False
        self._state: dict[str, int] = {}
        self._interrupted = False
        self._task: asyncio.Task[None] | None = None

    # -- ToxicStub ---------------------------------------------------------------------
    @property
    def state(self) -> dict[str, int]:
        return self._state

    @property
    def random(self) -> random.Random:
        return self.link.connection.random

    def now(self) -> float:
        return self.loop.time()

    async def receive(self, deadline: float | None = None) -> Item | Signal:
        while True:
            if self._interrupted:
                return Signal.INTERRUPTED
            if self.inbox:
                return self.inbox.popleft()
            if deadline is not None and self.now() >= deadline:
                return Signal.TIMED_OUT
            await self._wait(deadline)

    async def sleep_until(self, deadline: float) -> bool:
        while not self._interrupted:
            if self.now() >= deadline:
                return True
            await self._wait(deadline)
        return False

    def send(self, chunk: Chunk) -> None:
        self.next.deliver(chunk)

    def push_back(self, item: Item) -> None:
        self.inbox.appendleft(item)

    def drop(self, byte_count: int) -> None:
        self.link.release(byte_count)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.next.deliver(END)

    def reset(self) -> None:
        self.link.connection.reset()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self._task = self.link.connection.spawn(self._run())

    async def _run(self) -> None:
        toxic = self.toxic
        # Toxicity is drawn once per start on this link, not per chunk.
        if toxic is None or self.random.random() >= toxic.toxicity:
            await NOOP_BEHAVIOUR(self, {})
        else:
            await toxic.toxic_type.behaviour(self, toxic.attributes)

    async def interrupt(self) -> bool:
        """Stop the running behaviour; False if it had already finished (closed)."""
        task = self._task
        if task is None or task.done():
            return False
        self._interrupted = True
        self._wake.set()
        try:
            await asyncio.wait({task})
        finally:
            self._interrupted = False
        return not task.cancelled() and not self.closed


class _Writer(_Wakeable):
    """The end of a link: writes chunks to the destination, closes it at end of stream."""

    def __init__(self, link: Link, dest: asyncio.StreamWriter) -> None:
        super().__init__(link.loop)
        self.link = link
        self.dest = dest
        self.finished = False

    def deliver(self, item: Item) -> None:
        if self.finished:
            if isinstance(item, Chunk):
                self.link.release(len(item.data))
            return
        super().deliver(item)

    async def run(self) -> None:
        try:
            while True:
                while not self.inbox:
                    await self._wait(None)
                item = self.inbox.popleft()
                if isinstance(item, EndOfStream):
                    self.dest.close()  # a full close, after buffered data is flushed
                    return
                if self.dest.is_closing():
                    return
                self.dest.write(item.data)
                self.link.release(len(item.data))
                await self.dest.drain()
        except OSError:  # the destination reset or vanished
            self.dest.transport.abort()
        finally:
            self.finished = True
            self.inbox.clear()
            self.link.connection.writer_finished()


class Link:
    """One direction of a connection: source socket -> toxics -> destination socket."""

    def __init__(
        self,
        connection: Connection,
        direction: Direction,
        source: asyncio.StreamReader,
        dest: asyncio.StreamWriter,
        toxics: Iterable[Toxic],
    ) -> None:
        self.connection = connection
        self.direction = direction
        self.loop = asyncio.get_running_loop()
        self.source = source
        self.writer = _Writer(self, dest)
        self.stages: list[Stage] = [Stage(self, None)]
        self.in_flight = 0
        self._budget = asyncio.Event()
        self._budget.set()
        for toxic in toxics:
            self._append(Stage(self, toxic))

    def _append(self, stage: Stage) -> None:
        last = self.stages[-1]
        stage.next = last.next
        last.next = stage
        self.stages.append(stage)

    def start(self) -> None:
        self.connection.spawn(self.writer.run())
        for stage in self.stages:
            stage.start()
        self.connection.spawn(self._read())

    async def _read(self) -> None:
        head = self.stages[0]
        try:
            while True:
                while self.in_flight >= IN_FLIGHT_LIMIT:
                    self._budget.clear()
                    await self._budget.wait()
                data = await self.source.read(CHUNK_SIZE)
                if not data:
                    break
                self.in_flight += len(data)
                head.deliver(Chunk(data, self.loop.time()))
        except OSError:
            pass  # a reset source ends the stream like EOF
        head.deliver(END)

    def release(self, byte_count: int) -> None:
        self.in_flight -= byte_count
        if self.in_flight < IN_FLIGHT_LIMIT:
            self._budget.set()

    def _find(self, name: str) -> Stage | None:
        return next((s for s in self.stages[1:] if s.toxic and s.toxic.name == name), None)

    def add_toxic(self, toxic: Toxic) -> None:
        if self.writer.finished:
            return
        stage = Stage(self, toxic)
        self._append(stage)  # whatever the old last stage sends from now on goes through it
        stage.start()

    async def update_toxic(self, toxic: Toxic) -> None:
        stage = self._find(toxic.name)
        if stage is None:
            return
        restart = await stage.interrupt()
        stage.toxic = toxic
        if restart:
            stage.start()

    async def remove_toxic(self, toxic: Toxic) -> None:
        stage = self._find(toxic.name)
        if stage is None:
            return
        interrupted = await stage.interrupt()
        index = self.stages.index(stage)
        del self.stages[index]
        if interrupted and toxic.toxic_type.closes_on_removal:
            # Like Toxiproxy's cleanup: the stream ends here and the connection with it.
            stage.close()
            return
        pending = list(stage.inbox)
        stage.inbox.clear()
        for item in pending:
            if stage.closed:
                if isinstance(item, Chunk):
                    self.release(len(item.data))
            else:
                stage.next.deliver(item)
        self.stages[index - 1].next = stage.next


def _set_linger_zero(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Connection:
    """A client socket and its upstream socket, joined by an upstream and a downstream link."""

    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        toxics: Iterable[Toxic],
        rng: random.Random,
        on_closed: Callable[[Connection], None],
    ) -> None:
        self.random = rng
        self.closed = False
        self._writers = (client[1], upstream[1])
        self._on_closed = on_closed
        self._tasks: set[asyncio.Task[None]] = set()
        toxic_list = list(toxics)
        self.links: dict[Direction, Link] = {
            "upstream": Link(
                self,
                "upstream",
                client[0],
                upstream[1],
                [t for t in toxic_list if t.direction == "upstream"],
            ),
            "downstream": Link(
                self,
                "downstream",
                upstream[0],
                client[1],
                [t for t in toxic_list if t.direction == "downstream"],
            ),
        }

    def start(self) -> None:
        for link in self.links.values():
            link.start()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        if self.closed:
            coroutine.close()
            return None
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("connection task failed", exc_info=error)
            self.close(force=True)

    def writer_finished(self) -> None:
        if all(link.writer.finished for link in self.links.values()):
            self.close()

    def reset(self) -> None:
        """Reset both sockets: the peers read ECONNRESET rather than EOF."""
        for writer in self._writers:
            _set_linger_zero(writer)
        self.close(force=True)

    def close(self, force: bool = False) -> None:
        """Stop everything; ``force`` drops unsent data, otherwise sockets flush first."""
        if self.closed:
            return
        self.closed = True
        for writer in self._writers:
            if force:
                writer.transport.abort()
            elif not writer.is_closing():
                writer.close()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self._on_closed(self)
