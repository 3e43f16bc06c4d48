"""The shard map a client routes by: how many shards, and each shard's leader and replicas.

Owns: turning one node's ``ClusterStatus`` answer into a :class:`ShardMap` (client addresses,
not node ids) and the routing key of a session. A cluster with one shard (or a server from
before sharding, which reports ``shard_count`` 0) has a single routing key, :data:`META`, so
every call goes to the one leader exactly as before sharding. Must never do I/O: the router
(``leader.py``) asks a node and hands the answer here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quorumlog.proto import quorumlog_pb2 as pb
from quorumlog.proto.sharding import shard_of

#: the routing key of cluster-wide calls (the meta group: ACLs, groups, membership) and of
#: every call when the cluster has one shard
META = -1


@dataclass(frozen=True, slots=True)
class ShardMap:
    """``count`` shards; ``leaders`` / ``replicas`` map a shard to client addresses (replicas
    in placement order, preferred leader first); a shard may be missing from either."""

    count: int = 1
    leaders: dict[int, str] = field(default_factory=dict)
    replicas: dict[int, tuple[str, ...]] = field(default_factory=dict)
    meta_leader: str | None = None  # the meta group's leader (sharded clusters only)

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def key_of(self, session: str) -> int:
        """The routing key of ``session``: its shard, or :data:`META` with one shard."""
        return shard_of(session, self.count) if self.count > 1 else META

    def key_of_shard(self, shard: int) -> int:
        return shard if self.count > 1 else META

    @classmethod
    def from_status(cls, status: pb.NodeStatus) -> ShardMap:
        """The map one node's ``ClusterStatus`` describes (its view: leaders may be stale)."""
        count = max(1, status.shard_count)
        if count == 1:
            return cls()
        addresses = {m.id: m.client_address for m in status.members if m.client_address}
        if status.id and status.address:
            addresses.setdefault(status.id, status.address)
        leaders: dict[int, str] = {}
        replicas: dict[int, tuple[str, ...]] = {}
        for shard in status.shards:
            if not 0 <= shard.shard < count:
                continue
            leader = shard.leader_address or addresses.get(shard.leader, "")
            if leader:
                leaders[shard.shard] = leader
            replicas[shard.shard] = tuple(
                addresses[node] for node in shard.replicas if node in addresses
            )
        return cls(count, leaders, replicas, addresses.get(status.leader) or None)
