"""Importing a group's state streamed from a peer (a follower behind the leader's snapshot).

Owns: feeding the chunks of a peer's state stream (``FetchState``) to
``StateMachine.import_state`` on a worker thread through a queue of at most a few chunks, so
a large state never sits in memory whole, and turning a broken stream or a failed import into
one exception. Must never: block the event loop on the import, or leave the worker blocked on
a queue whose other side has gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import AsyncIterator, Iterator

from quorumlog.node.replication.applier import StateMachine
from quorumlog.raft.types import NodeId

QUEUED_CHUNKS = 4


async def import_state_from(
    state_machine: StateMachine, stream: AsyncIterator[bytes], peer: NodeId, min_index: int,
) -> None:
    """Import ``stream`` (``peer``'s state) into ``state_machine``; it must reach at least
    ``min_index``, else RuntimeError."""
    loop = asyncio.get_running_loop()
    handoff: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=QUEUED_CHUNKS)

    def chunks() -> Iterator[bytes]:
        while True:
            item = handoff.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    importer = asyncio.ensure_future(asyncio.to_thread(state_machine.import_state, chunks()))

    def put(item: bytes | BaseException | None) -> bool:
        # Never block forever on a full queue whose consumer has died.
        while not importer.done():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        async for chunk in stream:
            if not await loop.run_in_executor(None, put, chunk):
                break  # the import failed: stop fetching; its error is raised below
        else:
            await loop.run_in_executor(None, put, None)
    except BaseException as error:
        failure = RuntimeError(f"state stream from n{peer} broke: {error}")
        await loop.run_in_executor(None, put, failure)
        with contextlib.suppress(Exception):
            await importer
        raise
    await importer
    if state_machine.applied_index() < min_index:
        raise RuntimeError(f"state at {state_machine.applied_index()} is older than {min_index}")
