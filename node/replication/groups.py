"""A node as a host of Raft groups: one ticker, one inbox and one failure signal for all.

Owns: the node's ``RaftNode`` per group (0: the meta group; data shards' groups above),
one shared ticker that ticks every group in the same loop iteration (so the heartbeats of all
groups leave in the same frame per peer: the peer links batch whatever every group queued),
routing received peer messages to their group, telling every group when a peer is
unreachable, turning on the group commit across groups (``SyncBarrier``) once more than one
group is hosted, and one failure signal for the process (any group's loop that dies stops the
node). Must never: step a core itself, create storage or state machines (the process layer
builds groups and adds them here), or block the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from quorumlog.node.replication.codec import GroupMessage
from quorumlog.node.replication.raft_node import RaftNode
from quorumlog.node.storage.engine import SyncBarrier
from quorumlog.raft import Message
from quorumlog.raft.types import NodeId

log = logging.getLogger("quorumlog.node")


class GroupHost:
    def __init__(self, tick_seconds: float, barrier: SyncBarrier | None = None) -> None:
        self.tick_seconds = tick_seconds
        self.groups: dict[int, RaftNode] = {}
        self._barrier = barrier
        self._started = False
        self._ticker: asyncio.Task[None] | None = None
        self._failure: asyncio.Future[BaseException] | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self.dropped_unknown_group = 0  # messages for a group not (yet) hosted here

    def add(self, node: RaftNode) -> None:
        """Host ``node``'s group (started at once when the host runs)."""
        if node.group in self.groups:
            raise ValueError(f"group {node.group} is already hosted")
        node.own_ticker = False
        self.groups[node.group] = node
        if len(self.groups) > 1 and self._barrier is not None:
            for hosted in self.groups.values():
                hosted.sync_barrier = self._barrier
        if self._started:
            self._start(node)

    def get(self, group: int) -> RaftNode | None:
        return self.groups.get(group)

    async def remove(self, group: int) -> None:
        """Stop hosting ``group`` (its replica was moved away); its loop stops cleanly."""
        node = self.groups.pop(group, None)
        if node is None:
            return
        for watcher in [w for w in self._watchers if w.get_name() == f"watch-g{group}"]:
            watcher.cancel()
            self._watchers.remove(watcher)
        await node.stop()

    # -- inputs --------------------------------------------------------------------------
    def deliver(self, messages: list[GroupMessage]) -> None:
        """Hand each message to its group's loop (one wake-up per group per batch)."""
        by_group: dict[int, list[Message]] = {}
        for group, message in messages:
            by_group.setdefault(group, []).append(message)
        for group, batch in by_group.items():
            node = self.groups.get(group)
            if node is None:
                self.dropped_unknown_group += len(batch)  # Raft resends once it exists
                continue
            node.deliver(batch)

    def report_unreachable(self, peer: NodeId) -> None:
        for node in self.groups.values():
            node.report_unreachable(peer)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._failure = loop.create_future()
        self._started = True
        for node in self.groups.values():
            self._start(node)
        self._ticker = loop.create_task(self._tick(), name="raft-ticker")
        self._ticker.add_done_callback(self._ticker_ended)

    def _start(self, node: RaftNode) -> None:
        node.start()
        self._watchers.append(
            asyncio.get_running_loop().create_task(self._watch(node), name=f"watch-g{node.group}")
        )

    async def _watch(self, node: RaftNode) -> None:
        error = await node.wait_failure()
        if self._failure is not None and not self._failure.done():
            log.error("group %d's raft loop failed: %r", node.group, error)
            self._failure.set_result(error)

    def _ticker_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._failure is None or self._failure.done():
            return
        error = task.exception()
        if error is not None:
            self._failure.set_result(error)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)  # the Raft clock: a period, not a wait
            for node in self.groups.values():
                node.tick()

    async def wait_failure(self) -> BaseException:
        """The exception that ended any group's loop (or the ticker); waits while all run."""
        assert self._failure is not None, "start() first"
        return await asyncio.shield(self._failure)

    async def stop(self) -> None:
        self._started = False
        tasks = [*self._watchers, *([self._ticker] if self._ticker else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._watchers.clear()
        for node in self.groups.values():
            await node.stop()
