"""The plain dataclasses the SDK answers with, and their conversion from protobuf.

Owns: :class:`Record`, :class:`ReadResult`, :class:`SessionInfo`, the cluster status types
(:class:`NodeStatus`, :class:`ShardStatus`, :class:`Member`, :class:`FollowerProgress`,
:class:`NodeReport`, :class:`ClusterStatus`) and the read :class:`Consistency` levels. Must
never: talk to the network, validate input or hold state (``quorumlog.client.async_client``
builds them; ``quorumlog.client.sdk`` exports them).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from quorumlog.client import errors
from quorumlog.client.envelope import Envelope, envelope_of
from quorumlog.proto import quorumlog_pb2 as pb


class Consistency(enum.IntEnum):
    LINEARIZABLE = pb.LINEARIZABLE  # reflects every acknowledged append (ReadIndex)
    FOLLOWER = pb.FOLLOWER  # any node's applied state: possibly stale, never uncommitted


@dataclass(frozen=True, slots=True)
class Record:
    offset: int
    data: bytes
    envelope: Envelope | None = None  # None: appended without one
    append_time_ms: int = 0  # the leader's clock at the append (0: stored before envelopes)

    @classmethod
    def from_pb(cls, record: pb.Record) -> Record:
        return cls(record.offset, record.data, envelope_of(record), record.append_time_ms)


@dataclass(frozen=True, slots=True)
class ReadResult:
    session: str
    records: list[Record]
    next_offset: int  # where to read from next
    first_offset: int  # the session's first retained offset
    end_offset: int  # the session's next offset to be written, as of this read


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session: str
    first_offset: int
    next_offset: int
    count: int
    bytes: int
    created_ms: int
    last_append_ms: int

    @classmethod
    def from_pb(cls, info: pb.SessionInfo) -> SessionInfo:
        return cls(
            session=info.session,
            first_offset=info.first_offset,
            next_offset=info.next_offset,
            count=info.count,
            bytes=info.bytes,
            created_ms=info.created_ms,
            last_append_ms=info.last_append_ms,
        )


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    client_address: str
    peer_address: str
    voter: bool
    learner: bool = False


@dataclass(frozen=True, slots=True)
class FollowerProgress:
    """The leader's view of one other member's replication."""

    id: str
    match_index: int
    next_index: int
    state: str  # probe, replicate, snapshot
    learner: bool
    lag: int  # entries behind the leader's last index
    last_contact_ms: int  # since the leader last heard from it; -1 never


@dataclass(frozen=True, slots=True)
class ShardStatus:
    """One data shard as the answering node sees it (role and indexes are its replica's)."""

    shard: int
    group: int  # its Raft group id
    replicas: list[str]  # node ids, the preferred leader first
    leader: str  # leader id, empty when unknown
    leader_address: str
    role: str  # this node's role in the group; empty: not a replica
    term: int
    commit_index: int
    applied_index: int
    last_index: int
    max_lag: int  # on the leader: the furthest follower's lag
    sessions: int  # sessions stored in this replica

    @classmethod
    def from_pb(cls, shard: pb.ShardStatus) -> ShardStatus:
        return cls(
            shard.shard, shard.group, list(shard.replicas), shard.leader, shard.leader_address,
            shard.role, shard.term, shard.commit_index, shard.applied_index, shard.last_index,
            shard.max_lag, shard.sessions,
        )


@dataclass(frozen=True, slots=True)
class NodeStatus:
    id: str
    address: str  # the node's advertised client address
    role: str
    term: int
    leader: str  # leader id, empty when unknown
    commit_index: int
    applied_index: int
    last_index: int
    pid: int
    members: list[Member]
    first_index: int
    snapshot_index: int
    followers: list[FollowerProgress] = field(default_factory=list)  # leader only
    shard_count: int = 1  # 1 also for a server from before sharding
    shards: list[ShardStatus] = field(default_factory=list)  # sharded clusters only
    metrics_address: str = ""  # its --metrics-addr (Prometheus /metrics); "": none

    @classmethod
    def from_pb(cls, status: pb.NodeStatus) -> NodeStatus:
        return cls(
            id=status.id,
            address=status.address,
            role=status.role,
            term=status.term,
            leader=status.leader,
            commit_index=status.commit_index,
            applied_index=status.applied_index,
            last_index=status.last_index,
            pid=status.pid,
            members=[
                Member(m.id, m.client_address, m.peer_address, m.voter, m.learner)
                for m in status.members
            ],
            first_index=status.first_index,
            snapshot_index=status.snapshot_index,
            followers=[
                FollowerProgress(
                    f.id, f.match_index, f.next_index, f.state, f.learner, f.lag,
                    f.last_contact_ms,
                )
                for f in status.followers
            ],
            shard_count=max(1, status.shard_count),
            shards=[ShardStatus.from_pb(shard) for shard in status.shards],
            metrics_address=status.metrics_address,
        )


@dataclass(frozen=True, slots=True)
class NodeReport:
    """One address's answer to a status probe: ``status`` or the ``error`` it failed with."""

    address: str  # the address that was dialed
    status: NodeStatus | None
    error: errors.QuorumLogError | None

    @property
    def reachable(self) -> bool:
        return self.status is not None


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    nodes: list[NodeReport]

    @property
    def leader(self) -> NodeReport | None:
        """The reachable node that says it is leader (highest term wins)."""
        leaders = [n for n in self.nodes if n.status is not None and n.status.role == "leader"]
        return max(leaders, key=lambda n: n.status.term if n.status else 0, default=None)

    @property
    def reachable(self) -> list[NodeReport]:
        return [node for node in self.nodes if node.reachable]
