"""Preferred leaders: hand each shard this node leads to the first replica of its placement.

Owns: one balancing pass over the data shards hosted here (:func:`balance_once`): for every
shard this node leads whose preferred leader (the placement's first replica) is another
node that is caught up (its match index is the leader's last index) and was heard from
recently, ask the core to transfer leadership there (Kafka's preferred-leader election;
placement rotates preferred leaders, so this spreads leaders evenly). The process runs it
on a period; ``quorumlog cluster balance`` (Admin.BalanceLeaders) runs it at once. Must never:
move a shard to a lagging or silent replica (the shard would stall), or touch the meta group
or a one-shard cluster's only group.
"""

from __future__ import annotations

from dataclasses import dataclass

from quorumlog.node.api.shards import ShardTable

RECENT_CONTACT_MS = 2_000  # a preferred leader silent for longer is not handed anything


@dataclass(frozen=True, slots=True)
class Move:
    shard: int
    frm: str
    to: str


def balance_once(shards: ShardTable) -> list[Move]:
    """Start a transfer for every shard led here that has a healthy preferred leader."""
    if not shards.sharded:
        return []
    moves = []
    by_group = {local.group: local for local in shards.local_shards()}
    for placed in shards.placement():
        local = by_group.get(placed.group)
        if local is None or not local.port.is_leader or not placed.replicas:
            continue
        preferred = placed.replicas[0]
        if preferred == local.port.node_id:
            continue
        status = local.port.status()
        view = status.follower(preferred)
        if view is None or view.learner or view.match_index < status.last_index:
            continue
        if not 0 <= view.last_contact_ms <= RECENT_CONTACT_MS:
            continue
        local.port.transfer_leader(preferred)
        moves.append(Move(placed.shard, local.port.name, view.name))
    return moves


def leader_counts(shards: ShardTable) -> dict[str, int]:
    """Node name -> data shards it leads, as far as this node knows (the shards it hosts)."""
    counts: dict[str, int] = {}
    for local in shards.local_shards():
        status = local.port.status()
        leader = local.port.peers.get(status.leader_id)
        if leader is not None:
            counts[leader.name] = counts.get(leader.name, 0) + 1
    return counts
