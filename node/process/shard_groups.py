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
from quorumlog.node.replication import membership
from quorumlog.node.replication.groups import GroupHost
from quorumlog.node.replication.raft_node import FetchState
from quorumlog.node.replication.transport import PeerInfo
from quorumlog.node.state import placement as placement_rule
from quorumlog.node.state.placement import Shard
from quorumlog.node.state.state_machine import SessionStateMachine
from quorumlog.node.storage.log_store import LogStore
from quorumlog.raft.types import NONE, ConfChange, ConfChangeType, NodeId

log = logging.getLogger("quorumlog.server")

PLACE_WAIT_SECONDS = 3.0  # the meta leader places shards without a silent member's host tag
BALANCE_SECONDS = 5.0  # between preferred-leader passes
KEEPER_POLL_SECONDS = 1.0
MOVE_STEP_SECONDS = 10.0  # one membership change of a replica move, proposed and applied
CAUGHT_UP_LAG = 64  # a learner this close to the leader's last index is promoted
#: A group's log store (empty until founded; it must be ``Bootstrappable``) and the state
#: machine on its state storage.
OpenStores = Callable[[int], tuple[LogStore, SessionStateMachine]]


class Links(wiring.Links, Protocol):
    """The peer links as the groups' ports see them too (``PeerTransport``)."""

    @property
    def last_heard(self) -> Mapping[NodeId, float]: ...



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
        refuse_writes: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.config = config
        self._refuse_writes = refuse_writes
        self.host = host
        self.links = links
        self.meta = meta
        self._open_stores = open_stores
        self._fetcher = fetcher
        self.local: dict[int, LocalShard] = {}  # data groups hosted here, by group
        # Set before the keeper task is cancelled: Python 3.11's asyncio.wait_for can swallow
        # a cancellation that lands as its inner wait completes, and the keeper then went on
        # for ever (an in-process cluster's stop hung once in ~10 runs).
        self.stopping = False
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
        # A founding replica bootstraps the group as it was founded (the same snapshot on
        # every founder); one added later starts empty: the shard's leader adds it as a
        # learner and catches it up (``reconcile``).
        new = log_store.is_empty()  # type: ignore[attr-defined]  # Bootstrappable stores
        new = new and placed.founded_by(self.config.id)
        if new:
            founders = placed.founders or placed.replicas
            log_store.bootstrap(tuple(sorted(founders)))  # type: ignore[attr-defined]
        node = wiring.build_raft_node(
            self.config, log_store, state_machine, self.links, self._fetcher(placed.group),
            group=placed.group,
        )
        self.host.add(node)

        port = NodePort(node, self.links, self.config.name, self._refuse_writes)
        self.local[placed.group] = LocalShard(placed.shard, placed.group, port, state_machine)
        if new and placed.replicas[0] == self.config.id:
            node.campaign()
        log.info("hosting shard %d (group %d, replicas %s)",
                 placed.shard, placed.group, list(placed.replicas))

    async def close_moved(self) -> None:
        """Stop hosting the groups whose replica here was moved away: the placement no
        longer names this node, and either the group's configuration as applied here no
        longer has it, or every placed replica is a voter here and no leader is heard (the
        leader stops sending to a removed replica, so it never applies its own removal)."""
        names = {placed.group: placed for placed in self.meta.state_machine.placement()}
        for group, local in list(self.local.items()):
            placed = names.get(group)
            if placed is None or self.config.id in placed.replicas:
                continue
            conf = local.port.configuration()
            if self.config.id in conf.all_ids():
                replaced = set(placed.replicas) <= set(conf.voters)
                if not replaced or local.port.leader_id != NONE:
                    continue  # still a member until its removal is applied here
            del self.local[group]
            await self.host.remove(group)
            log.info("no longer hosting shard %d (group %d): moved to %s",
                     placed.shard, group, list(placed.replicas))

    async def reconcile(self) -> None:
        """As the leader of a shard whose placement changed: one membership change towards
        its replicas per pass: add a missing replica as a learner, promote a learner that
        caught up, then remove a replica no longer placed (handing leadership over first
        when that is this node)."""
        for placed in self.meta.state_machine.placement():
            local = self.local.get(placed.group)
            if local is None or not local.port.is_leader:
                continue
            try:
                await self._reconcile_one(placed, local)
            except NodeError as error:  # another change in progress, leadership lost...
                log.info("shard %d: replica move waits: %s", placed.shard, error.message)

    async def _reconcile_one(self, placed: Shard, local: LocalShard) -> None:
        port = local.port
        conf = port.configuration()
        voters, learners = set(conf.voters), set(conf.learners)
        target = placed.replicas
        deadline = time.monotonic() + MOVE_STEP_SECONDS
        for node in target:
            if node not in voters and node not in learners:
                record = self.meta.state_machine.members().get(node)
                if record is None:
                    return  # not a member yet (its meta membership is still applying)
                context = membership.encode_context(
                    record.name, record.peer_address, record.client_address)
                log.info("shard %d: adding n%d as a learner", placed.shard, node)
                await port.change_membership(
                    ConfChange(ConfChangeType.ADD_LEARNER, node, context), deadline)
                return
        status = port.status()
        for node in target:
            if node in learners:
                view = status.follower(node)
                if view is None or status.last_index - view.match_index > CAUGHT_UP_LAG:
                    return  # still catching up
                log.info("shard %d: promoting n%d", placed.shard, node)
                await port.change_membership(ConfChange(ConfChangeType.ADD_NODE, node), deadline)
                return
        for node in sorted(voters | learners):
            if node in target:
                continue
            if node == self.config.id:
                successor = next((n for n in target if n in voters), None)
                if successor is not None:
                    log.info("shard %d: handing leadership to n%d before leaving",
                             placed.shard, successor)
                    port.transfer_leader(successor)
                return
            log.info("shard %d: removing n%d", placed.shard, node)
            await port.change_membership(ConfChange(ConfChangeType.REMOVE_NODE, node), deadline)
            return

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
        while not self.stopping:
            applied = meta.applied_index
            self.open_placed()
            placed = bool(state_machine.placement())
            if placed:
                try:
                    await self.close_moved()
                    await self.reconcile()
                except Exception:  # the next pass tries again; the keeper must not die
                    log.exception("shard keeper pass failed")
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
