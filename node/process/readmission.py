"""The node's keeper of the incarnation rule: on every group this node leads, admit replicas
heard for the first time, and readmit a replica that came back with a new incarnation once it
has caught up (``quorumlog.node.replication.incarnations`` decides; this drives it).

Owns: the periodic pass over the hosted groups (the meta group and every data group), one
:class:`Readmission` per group, and proposing its admissions through the group's node port.
Must never: propose on a group this node does not lead, or wait without a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time

from quorumlog.node.api.node_port import NodeError
from quorumlog.node.api.shards import LocalShard
from quorumlog.node.process.shard_groups import ShardGroups
from quorumlog.node.replication.groups import GroupHost
from quorumlog.node.replication.incarnations import IncarnationGate, Readmission
from quorumlog.proto import commands_pb2
from quorumlog.raft.types import StateRole

log = logging.getLogger("quorumlog.readmission")

PASS_SECONDS = 0.5  # between passes over the hosted groups
PROPOSE_SECONDS = 5.0  # deadline of one admission


class Readmitter:
    def __init__(self, gate: IncarnationGate, groups: ShardGroups, host: GroupHost) -> None:
        self.gate = gate
        self.groups = groups
        self.host = host
        self._by_group: dict[int, Readmission] = {}
        self.admitted = 0  # admissions committed (first sights and readmissions)

    async def run(self) -> None:
        """Passes until cancelled."""
        while True:
            await self.one_pass()
            await asyncio.sleep(PASS_SECONDS)  # the keeper's period, not a wait for an event

    async def one_pass(self) -> None:
        for local in [self.groups.meta, *list(self.groups.local.values())]:
            await self._group(local)

    async def _group(self, local: LocalShard) -> None:
        node = self.host.get(local.group)
        if node is None or node.role != StateRole.LEADER:
            self._by_group.pop(local.group, None)  # a later leadership starts afresh
            return
        readmission = self._by_group.setdefault(
            local.group, Readmission(self.gate, local.group))
        status = node.status()
        replicas = [*status.conf_state.voters, *status.conf_state.learners]

        def match(peer: int) -> int | None:
            progress = status.progress.get(peer)
            return None if progress is None else progress.match

        proposals = readmission.step(replicas, local.state_machine.incarnations(),
                                     status.commit, match, node.forget_progress)
        for peer, incarnation in proposals:
            command = commands_pb2.Command(admit_incarnation=commands_pb2.AdmitIncarnationCommand(
                node_id=peer, incarnation=incarnation))
            try:
                await local.port.propose(command, 32, time.monotonic() + PROPOSE_SECONDS)
            except NodeError as error:  # not the leader any more, a deadline: next pass
                log.info("group %d: admitting n%d not done: %s", local.group, peer, error)
                return
            self.admitted += 1
            log.info("group %d: n%d admitted at incarnation %x", local.group, peer, incarnation)
