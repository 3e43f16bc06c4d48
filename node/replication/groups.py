"""A node as a host of Raft groups: one ticker, one driver, one inbox and one failure signal.

Owns: the node's ``RaftNode`` per group (0: the meta group; data shards' groups above),
one shared ticker that ticks every group in the same loop iteration (so the heartbeats of all
groups leave in the same frame per peer) and skips the ticks of idle groups (quiescence:
the host beats to every peer each tick instead), the one task that runs every group's Readies
together (``GroupDriver``: one write, one fsync and one frame per peer for all groups ready
together), routing received peer messages to their group, telling every group when a peer is
unreachable, and one failure signal for the process (the driver, the ticker or any group's
restore that dies stops the node). Must never: step a core itself, create storage or state
machines (the process layer builds groups and adds them here), or block the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from quorumlog.node.replication.codec import Beat, GroupMessage
from quorumlog.node.replication.driver import GroupDriver
from quorumlog.node.replication.quiescence import (
    LIVE_TICKS,
    PeerBeats,
    followed_leader,
    may_skip_tick,
)
from quorumlog.node.replication.raft_node import RaftNode
from quorumlog.raft import Message, StateRole
from quorumlog.raft.types import NodeId

log = logging.getLogger("quorumlog.node")


class BeatingLinks(Protocol):
    """The peer links as the host uses them for quiescence (both transports)."""

    beats: PeerBeats  # what peers' beats said

    def beat(self, beats: dict[NodeId, Beat]) -> None:
        """Send every peer its beat (``GroupHost.beats``; an empty one when not named)."""
        ...


class GroupHost:
    def __init__(self, tick_seconds: float, links: BeatingLinks | None = None) -> None:
        self.tick_seconds = tick_seconds
        # With links, the host beats every tick and idle groups quiesce (``quiescence``).
        self.links = links
        if links is not None:
            links.beats.window_seconds = LIVE_TICKS * tick_seconds
        self.groups: dict[int, RaftNode] = {}
        self.driver = GroupDriver()
        self._started = False
        self._ticker: asyncio.Task[None] | None = None
        self._driving: asyncio.Task[None] | None = None
        self._failure: asyncio.Future[BaseException] | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self.dropped_unknown_group = 0  # messages for a group not (yet) hosted here

    def add(self, node: RaftNode) -> None:
        """Host ``node``'s group (started at once when the host runs)."""
        if node.group in self.groups:
            raise ValueError(f"group {node.group} is already hosted")
        self.groups[node.group] = node
        if len(self.groups) == 1:
            # Alone, a group runs its own loop (the host ticks it): the driver's extra steps
            # cost a lone group ~0.05 ms of sequential append latency. With a second group
            # every group moves to the driver.
            node.own_ticker = False
        else:
            for hosted in self.groups.values():
                hosted.hand_over(self.driver.mark)
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
        self._ticker.add_done_callback(self._task_ended)
        self._driving = loop.create_task(self.driver.run(), name="raft-driver")
        self._driving.add_done_callback(self._task_ended)

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

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._failure is None or self._failure.done():
            return
        error = task.exception()
        if error is not None:
            self._failure.set_result(error)

    def beats(self) -> dict[NodeId, Beat]:
        """Per peer, the beat to send it: the groups this node leads that have the peer as a
        member (a replica removed from a group is not named to it, so it counts election
        time again and finds out it was removed instead of waiting for a leader that stopped
        sending), and the groups in which this node follows the peer with its whole log
        committed (``quiescence.followed_leader``)."""
        by_peer: dict[NodeId, Beat] = {}
        for group, node in self.groups.items():
            if node.role == StateRole.LEADER:
                for member in node.conf_state().all_ids():
                    by_peer.setdefault(member, ([], []))[0].append(group)
            elif (leader := followed_leader(node)) is not None:
                by_peer.setdefault(leader, ([], []))[1].append(group)
        return by_peer

    async def _tick(self) -> None:
        links = self.links
        while True:
            await asyncio.sleep(self.tick_seconds)  # the Raft clock: a period, not a wait
            if links is not None:
                links.beat(self.beats())
            for node in self.groups.values():
                if links is not None and may_skip_tick(node, links.beats):
                    node.metrics.ticks_skipped += 1
                    continue
                node.tick()

    async def wait_failure(self) -> BaseException:
        """The exception that ended the driver, the ticker or a group's restore; waits while
        all run."""
        assert self._failure is not None, "start() first"
        return await asyncio.shield(self._failure)

    async def stop(self) -> None:
        self._started = False
        tasks = [*self._watchers, *(task for task in (self._ticker, self._driving) if task)]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._watchers.clear()
        for node in self.groups.values():
            await node.stop()
