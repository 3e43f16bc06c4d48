"""The data shards a node hosts: opening their groups, placing them, balancing their leaders.

Owns: the node's data groups (``LocalShard`` per group, behind the services' ``ShardTable``):
opening the groups the meta group's placement gives this node, as the placement is applied
(a new group is founded with the placement's replicas, identically on every replica, and its
preferred leader campaigns at once); as the meta leader of a cluster founded with shards,
proposing the placement once every founding member's host tag is known (or after
``PLACE_WAIT_SECONDS``); every ``BALANCE_SECONDS``, handing the shards this node leads to
their preferred leaders. ``NodeServer`` and the tests' in-process cluster both use it, each
with its own stores. Must never: contain protocol or state-machine logic, or open a group the
placement does not give this node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from quorumlog.node.api import balance
from quorumlog.node.api.node_port import NodeError, NodePort
from quorumlog.node.api.shards import LocalShard, ShardTable
from quorumlog.node.common.config import NodeConfig
from quorumlog.node.process import wiring
from quorumlog.node.replication.groups import GroupHost
from quorumlog.node.replication.raft_node import FetchState
from quorumlog.node.replication.transport import PeerInfo
from quorumlog.node.state import placement as placement_rule
from quorumlog.node.state.placement import Shard
from quorumlog.node.state.state_machine import SessionStateMachine
from quorumlog.node.storage.log_store import LogStore
from quorumlog.raft.types import NodeId

log = logging.getLogger("quorumlog.server")

PLACE_WAIT_SECONDS = 3.0  # the meta leader places shards without a silent member's host tag
BALANCE_SECONDS = 5.0  # between preferred-leader passes
KEEPER_POLL_SECONDS = 1.0
# With several groups, a peer link gathers this many loop iterations before it sends, so the
# groups ready together share one frame (one gRPC write: ~18% of a node's CPU with 6 shards
# and a frame per group's Ready).
COALESCE_HOPS = 2

#: A group's log store (empty until founded; it must be ``Bootstrappable``) and the state
#: machine on its state storage.
OpenStores = Callable[[int], tuple[LogStore, SessionStateMachine]]


class Links(wiring.Links, Protocol):
    """The peer links as the groups' ports see them too (``PeerTransport``)."""

    @property
    def last_heard(self) -> Mapping[NodeId, float]: ...

    coalesce_hops: int  # loop iterations a woken peer link gathers before sending


class ShardGroups:
    def __init__(
        self,
        config: NodeConfig,
        *,
        host: GroupHost,
        links: Links,
        meta: LocalShard,
        open_stores: OpenStores,
        fetcher: Callable[[int], FetchState],
    ) -> None:
        self.config = config
        self.host = host
        self.links = links
        self.meta = meta
        self._open_stores = open_stores
        self._fetcher = fetcher
        self.local: dict[int, LocalShard] = {}  # data groups hosted here, by group
        self.table = ShardTable(meta, lambda: self.local, self._peers)

    def _peers(self) -> Mapping[NodeId, PeerInfo]:
        return self.links.peers

    def open_placed(self) -> None:
        """Open every group the stored placement gives this node (not yet open)."""
        for placed in self.meta.state_machine.placement():
            if self.config.id in placed.replicas and placed.group not in self.local:
                self.open_group(placed)

    def open_group(self, placed: Shard) -> None:
        """Host ``placed``'s group (see the module docstring)."""
        log_store, state_machine = self._open_stores(placed.group)
        new = log_store.is_empty()  # type: ignore[attr-defined]  # Bootstrappable stores
        if new:
            log_store.bootstrap(tuple(sorted(placed.replicas)))  # type: ignore[attr-defined]
        node = wiring.build_raft_node(
            self.config, log_store, state_machine, self.links, self._fetcher(placed.group),
            group=placed.group,
        )
        self.host.add(node)
        self.links.coalesce_hops = COALESCE_HOPS  # several groups now: share frames
        port = NodePort(node, self.links, self.config.name)
        self.local[placed.group] = LocalShard(placed.shard, placed.group, port, state_machine)
        if new and placed.replicas[0] == self.config.id:
            node.campaign()
        log.info("hosting shard %d (group %d, replicas %s)",
                 placed.shard, placed.group, list(placed.replicas))

    def state_machine(self, group: int) -> SessionStateMachine | None:
        if group == 0:
            return self.meta.state_machine
        local = self.local.get(group)
        return None if local is None else local.state_machine

    async def keep(self) -> None:
        """The keeper loop (see the module docstring); runs until cancelled."""
        state_machine, meta = self.meta.state_machine, self.meta.port
        leader_since: float | None = None
        next_balance = time.monotonic() + BALANCE_SECONDS
        while True:
            applied = meta.applied_index
            self.open_placed()
            placed = bool(state_machine.placement())
            now = time.monotonic()
            if not placed and state_machine.shard_count() > 1 and meta.is_leader:
                leader_since = leader_since if leader_since is not None else now
                await self.maybe_place(now - leader_since >= PLACE_WAIT_SECONDS)
            else:
                leader_since = None
            if placed and now >= next_balance:
                next_balance = now + BALANCE_SECONDS
                for move in balance.balance_once(self.table):
                    log.info("shard %d: leadership to its preferred leader %s",
                             move.shard, move.to)
            if state_machine.shard_count() == 1:
                # One shard: the meta group carries the data, so it applies an entry per
                # append round; nothing here needs waking for that (measured: waking on
                # each cost ~0.1 ms of a sequential append). A joining node learns a shard
                # count from its first snapshot: look again now and then.
                await asyncio.sleep(KEEPER_POLL_SECONDS)  # a period, not a wait for an event
                continue
            await meta.wait_applied(applied + 1, time.monotonic() + KEEPER_POLL_SECONDS)

    async def maybe_place(self, waited: bool) -> bool:
        """As the meta leader: propose the placement if every voter's host tag is known
        (``waited``: use names for the silent ones). Whether a placement was committed."""
        meta, config = self.meta.port, self.config
        voters = meta.configuration().voters
        tags: dict[NodeId, str] = {}
        for node_id in voters:
            info = self.links.peers.get(node_id)
            tag = info.host_tag if info is not None else ""
            if node_id == config.id:
                tag = config.host_tag or config.name
            if not tag and not waited:
                return False  # not heard from it yet: its tag decides where replicas go
            tags[node_id] = tag or (info.name if info is not None else f"n{node_id}")
        count = self.meta.state_machine.shard_count()
        shards = placement_rule.place(count, list(voters), tags)
        try:
            await meta.propose(placement_rule.command(count, shards, tags), 64 * count,
                               time.monotonic() + 5)
        except NodeError as error:
            log.warning("placing %d shards failed: %s; retrying", count, error.message)
            return False
        log.info("placed %d shards over %s", count, sorted(tags.values()))
        return True
