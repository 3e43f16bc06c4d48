"""The Ready loop of every Raft group a node hosts, as one batch (docs/architecture.md#sharding).

Owns: one asyncio task that, whenever any hosted group has input (a peer message, a tick, a
proposal, a read), takes the Ready of every group that has one and runs each phase for all
of them together (``RaftNode``'s phases): their messages are queued before anything yields,
so each peer link sends every group's in one frame; their log writes go into one atomic
write of the node's storage engine with one fsync (``write_readies``: the group commit
across groups); their acknowledgements leave together; then each group applies. A round's
fixed costs (wake-ups, the write, the fsync, the frames) are paid once for all groups instead
of once per group (the batch system of TiKV's raftstore). A group that must first restore
its state from a peer does it in a task of its own while the others go on. Must never: send
a vote or acknowledgement before the write that it vouches for returned, touch a group that
is stopping, step a core itself (the groups' ``RaftNode`` does), or retry a failed write
(the exception ends this task and with it the process: docs/architecture.md, Durability).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from quorumlog.node.replication.raft_node import SEND_HOPS, RaftNode
from quorumlog.node.storage.log_store import write_readies
from quorumlog.raft import Ready


@dataclass
class WriteStats:
    """The shared writes, for metrics: how many were synced, how many group writes they
    covered and the seconds spent in them."""

    fsyncs: int = 0
    fsync_waiters: int = 0
    fsync_seconds: float = 0.0
    rounds: int = 0


class GroupDriver:
    def __init__(self) -> None:
        self._dirty: dict[RaftNode, None] = {}  # groups with input, in arrival order
        self._wake = asyncio.Event()
        self.stats = WriteStats()

    def mark(self, node: RaftNode) -> None:
        """``node`` has input (``RaftNode.attach``'s callback)."""
        self._dirty[node] = None
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                dirty, self._dirty = self._dirty, {}
                work: list[tuple[RaftNode, Ready]] = []
                for node in dirty:
                    if node.stopping or node.in_round:
                        continue  # stopped, or restoring (it marks itself when done)
                    rd = node.next_ready()
                    if rd is None:
                        node.after_pass()
                    else:
                        node.begin_round()
                        work.append((node, rd))
                if work:
                    try:
                        await self._round(work)
                    except BaseException:
                        for node, _ in work:
                            node.end_round()  # a node's stop() must not wait for ever
                        raise

    async def _round(self, work: list[tuple[RaftNode, Ready]]) -> None:
        """The phases of ``RaftNode._handle_ready`` for every group in ``work`` at once."""
        self.stats.rounds += 1
        for node, rd in work:
            node.ready_send(rd)
        modes = [(node, rd, node.persist_mode(rd)) for node, rd in work]
        writes = [(node, rd) for node, rd, mode in modes if mode is not None]
        sync = any(mode for _, _, mode in modes)
        if writes:
            if sync and any(rd.messages for _, rd in work):
                # The synced write stalls the event loop: let the peer links hand the
                # appends to gRPC first, so followers persist while we do.
                for _ in range(SEND_HOPS):
                    await asyncio.sleep(0)
            writes = [(node, rd) for node, rd in writes if not node.stopping]
            started = time.perf_counter()
            write_readies([(node.storage, rd) for node, rd in writes], sync=sync)
            seconds = time.perf_counter() - started
            if sync:
                self.stats.fsyncs += 1
                self.stats.fsync_waiters += len(writes)
                self.stats.fsync_seconds += seconds
            for node, rd in writes:
                node.persisted(rd, synced=sync, seconds=seconds)
        yield_first = False
        for node, rd in work:
            if not node.stopping:
                yield_first = node.ready_acks(rd) or yield_first
        if yield_first:
            # Acknowledgements are what the leaders wait for: let them reach gRPC, then
            # apply while they travel.
            await asyncio.sleep(0)
        for node, rd in work:
            if node.stopping:
                node.end_round()
                continue
            index = node.restore_point(rd)
            if index is not None:
                node.restore_then_apply(rd, index)
                continue
            node.ready_apply(rd)
            node.end_round()
