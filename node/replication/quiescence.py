"""Quiescence: idle Raft groups stop ticking (docs/architecture.md#quiescence).

Owns: what peers' beats said (:class:`PeerBeats`: when each peer was last heard and which
groups it said it leads) and the rule that lets a host skip a group's tick
(:func:`may_skip_tick`). A node beats to every peer once per tick, whatever its traffic,
naming the groups it leads that have that peer as a member (a replica removed from a group
is not named, so it notices) and the groups in which it follows that peer (one small frame
per peer pair for all groups). Then:
- a leader whose group is idle (nothing queued or in flight, everything committed, applied
  and told to every follower, a live quorum, and every live member's log matching its own
  and its beat saying it follows this leader, which a follower says only once its whole log
  is committed: a commit index lost on the way keeps the leader awake) skips its ticks: it
  sends no heartbeats;
- a follower (or learner) skips its ticks while its leader's node beats and names the
  group: its election timer stands still, as a heartbeat would have reset it.
Any input (a proposal, a read, a message) makes the group work at once, and it ticks again
as soon as the rule no longer holds. Safety never depends on this: skipping ticks only
delays elections, and every message is handled as before. A leader's node that stops
beating (killed, cut off) or stops naming the group is no longer trusted within
``LIVE_TICKS`` ticks, then followers count election time and elect as before. Must never:
step a core, or let a follower of a leader that is not beating skip its ticks.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from quorumlog.node.replication.codec import Beat
from quorumlog.raft import StateRole
from quorumlog.raft.types import NONE, NodeId

if TYPE_CHECKING:
    from quorumlog.node.replication.raft_node import RaftNode

#: beats a peer may miss before it counts as not live (a beat goes out every tick)
LIVE_TICKS = 5


class Liveness(Protocol):
    def live(self, peer: NodeId) -> bool:
        """``peer`` was heard within the window."""
        ...

    def leads(self, peer: NodeId, group: int) -> bool:
        """``peer`` beat within the window saying it leads ``group`` (with us in it)."""
        ...

    def follows(self, peer: NodeId, group: int) -> bool:
        """``peer`` beat within the window saying it follows us in ``group``."""
        ...


class PeerBeats:
    """What peers' beats said (a transport records them; the host reads them)."""

    def __init__(
        self, heard: dict[NodeId, float] | None = None, window_seconds: float = 0.25,
    ) -> None:
        """``heard``: peer -> ``time.monotonic()`` of its last batch (the transport's
        ``last_heard``, shared, not copied)."""
        self.window_seconds = window_seconds
        self._heard: dict[NodeId, float] = {} if heard is None else heard
        self._beats: dict[NodeId, tuple[float, frozenset[int], frozenset[int]]] = {}

    def heard(self, peer: NodeId, beat: Beat | None) -> None:
        """A batch from ``peer`` arrived, carrying ``beat`` (None: no beat)."""
        now = time.monotonic()
        self._heard[peer] = now
        if beat is not None:
            self._beats[peer] = (now, frozenset(beat[0]), frozenset(beat[1]))

    def forget(self, peer: NodeId) -> None:
        self._heard.pop(peer, None)
        self._beats.pop(peer, None)

    def live(self, peer: NodeId) -> bool:
        heard = self._heard.get(peer)
        return heard is not None and time.monotonic() - heard < self.window_seconds

    def leads(self, peer: NodeId, group: int) -> bool:
        beat = self._beats.get(peer)
        return (beat is not None and group in beat[1]
                and time.monotonic() - beat[0] < self.window_seconds)

    def follows(self, peer: NodeId, group: int) -> bool:
        beat = self._beats.get(peer)
        return (beat is not None and group in beat[2]
                and time.monotonic() - beat[0] < self.window_seconds)


def may_skip_tick(node: RaftNode, liveness: Liveness) -> bool:
    """Whether ``node``'s group may skip this tick (the module docstring's rule)."""
    if node.has_pending_work():
        return False
    raft = node.raw.raft
    if raft.role == StateRole.FOLLOWER:
        leader = raft.leader_id
        return leader not in (NONE, node.id) and liveness.leads(leader, node.group)
    if raft.role != StateRole.LEADER:
        return False  # candidates and pre-candidates count their election time
    log = raft.log
    last = log.last_index()
    if (log.committed != last or log.applied != last or raft.commit_unsent
            or raft.lead_transferee != NONE or len(raft.read_only) > 0):
        return False
    voters = node.conf_state().voters
    live_voters = sum(1 for voter in voters if voter == node.id or liveness.live(voter))
    if live_voters * 2 <= len(voters):
        return False  # let check-quorum step this leader down
    for peer, progress in raft.prs.items():
        if peer != node.id and liveness.live(peer) and (
                progress.match != last or not liveness.follows(peer, node.group)):
            # A live member still needs entries, or does not know this leader (it restarted,
            # or it counted election time): heartbeats tell it.
            return False
    return True


def followed_leader(node: RaftNode) -> NodeId | None:
    """The leader ``node``'s beat says it follows in its group: the one it follows, once
    its whole log is committed as far as it knows (so the leader's last commit reached it;
    a lost heartbeat or append leaves it out, and its leader stays awake and tells it)."""
    raft = node.raw.raft
    if raft.role != StateRole.FOLLOWER or raft.leader_id in (NONE, node.id):
        return None
    log = raft.log
    return raft.leader_id if log.committed == log.last_index() else None
