"""Which of this node's Raft groups serves a session: the shard table the services route by.

Owns: the services' view of the node's groups — the meta group (group 0: members, ACLs,
placement; in a one-shard cluster also the only data shard) and the data shards hosted here,
each as a :class:`LocalShard` (its ``NodePort`` and state machine) — the session-to-shard
rule (``quorumlog.proto.sharding.shard_of`` over the shard count fixed at founding), and
the refusal of a session whose shard is not hosted here: ``NotLeaderError`` naming the
shard's leader when known, else one of its replicas, so a client that knows nothing of
shards still gets there by following hints. Must never: propose, read session data, or
import grpc (the services do that with the :class:`LocalShard` it returns).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from quorumlog.node.api.node_port import LeaderHint, NodeError, NodePort, NotLeaderError
from quorumlog.node.replication.transport import PeerInfo
from quorumlog.node.state.placement import Shard
from quorumlog.node.state.state_machine import SessionStateMachine
from quorumlog.proto.sharding import shard_of
from quorumlog.raft.types import NONE, NodeId


@dataclass(frozen=True, slots=True)
class LocalShard:
    """A group hosted on this node: which shard it holds (-1: the meta group only)."""

    shard: int
    group: int
    port: NodePort
    state_machine: SessionStateMachine


class ShardsNotPlaced(NodeError):
    """A sharded cluster whose meta leader has not placed the shards yet (just founded)."""


class ShardElsewhere(NotLeaderError):
    """The session's shard is not hosted on this node; ``leader`` names a replica."""

    def __init__(self, message: str, leader: LeaderHint | None, shard: int) -> None:
        super().__init__(message, leader)
        self.shard = shard


class ShardTable:
    """Routes sessions to this node's groups (see the module docstring)."""

    def __init__(
        self,
        meta: LocalShard,
        local: Callable[[], Mapping[int, LocalShard]],
        peers: Callable[[], Mapping[NodeId, PeerInfo]],
    ) -> None:
        self.meta = meta
        self._local = local  # group -> LocalShard, data groups hosted here (grows)
        self._peers = peers

    @property
    def shard_count(self) -> int:
        return self.meta.state_machine.shard_count()

    @property
    def sharded(self) -> bool:
        return self.shard_count > 1

    def placement(self) -> list[Shard]:
        return self.meta.state_machine.placement()

    def local_shards(self) -> list[LocalShard]:
        """Every data shard hosted here, by shard (the meta group when there is one)."""
        if not self.sharded:
            return [self.meta]
        return sorted(self._local().values(), key=lambda local: local.shard)

    def shard_of(self, session: str) -> int:
        return shard_of(session, self.shard_count)

    def route(self, session: str) -> LocalShard:
        """The local replica of ``session``'s shard; raises :class:`NotLeaderError` (with a
        hint) when this node hosts none, :class:`ShardsNotPlaced` before placement."""
        if not self.sharded:
            return self.meta
        return self.for_shard(self.shard_of(session))

    def for_shard(self, shard: int) -> LocalShard:
        if not self.sharded:
            if shard != 0:
                raise NodeError(f"shard {shard} does not exist: the cluster has 1 shard")
            return self.meta
        placement = self.placement()
        if not placement:
            raise ShardsNotPlaced(
                f"node {self.meta.port.name}: the cluster's {self.shard_count} shards are "
                "being placed; retry"
            )
        if not 0 <= shard < len(placement):
            raise NodeError(f"shard {shard} does not exist: the cluster has "
                            f"{len(placement)} shards")
        placed = placement[shard]
        local = self._local().get(placed.group)
        if local is not None:
            return local
        raise ShardElsewhere(
            f"node {self.meta.port.name}: shard {shard} is not hosted here; its replicas are "
            + ", ".join(self._name(node) for node in placed.replicas),
            self.hint(placed),
            shard,
        )

    def proposer(self, session: str) -> tuple[int, NodePort]:
        """``(shard, port of its local group)`` for the append path (``Appender``)."""
        local = self.route(session)
        return max(local.shard, 0), local.port

    def hint(self, placed: Shard) -> LeaderHint | None:
        """Where to send a call for ``placed``'s shard from a node that does not host it:
        its preferred leader (the hint is followed again from there if it moved)."""
        for node in placed.replicas:
            info = self._peers().get(node)
            if info is not None and node != NONE:
                return LeaderHint(info.name, info.client_address)
        return None

    def _name(self, node: NodeId) -> str:
        info = self._peers().get(node)
        return info.name if info is not None else f"n{node}"
