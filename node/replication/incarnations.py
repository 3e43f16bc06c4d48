"""The incarnation rule: a replica whose disk was wiped or replaced gets no vote until it has
caught up and been admitted again.

Owns: what this node heard each peer's incarnation to be (every peer batch carries the
sender's: ``MessageBatch.incarnation``), dropping vote messages (requests and answers, votes
and pre-votes) of a group from a peer whose incarnation is not the one the group admitted
(``quorumlog.node.state.incarnations``), and :class:`Readmission`, what a group's leader does
about it: admit a replica heard for the first time; for a replica heard with a new
incarnation, forget its progress at once (its log is gone: ``Raft.forget_progress``), and admit
the new incarnation once its match reaches the commit index the leader had when it noticed
(every entry that could have been committed with the lost copy's help). The FAST '18 lesson
("Protocol-Aware Recovery for Consensus-Based Storage"): a node that lost its log must not
vote as if it had not, or a candidate missing committed entries can win with its vote.

Its acknowledgements still count toward commits once its progress is forgotten: each one is
for an entry it really stored again, and a winner of any election still needs the votes of a
majority of the other replicas, which intersects every commit quorum. A replica never heard
before its records were written (a founding member, a group just created) is admitted on
first sight: there is nothing it could have forgotten that anybody counted. Must never:
drop anything but vote messages (the replica must keep receiving the log), or admit on a
follower (only the leader knows the commit index that must be reached).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from quorumlog.node.replication.codec import GroupMessage
from quorumlog.raft.types import MessageType, NodeId

log = logging.getLogger("quorumlog.incarnations")

VOTE_MESSAGES = frozenset((MessageType.VOTE, MessageType.VOTE_RESP, MessageType.PRE_VOTE,
                           MessageType.PRE_VOTE_RESP))

#: group -> each replica's admitted incarnation in it ({} for a group not hosted here)
Admitted = Callable[[int], Mapping[NodeId, int]]


class IncarnationGate:
    """This node's view of its peers' incarnations, and the vote filter built on it."""

    def __init__(self, admitted: Admitted, *, enforce: bool = True) -> None:
        self._admitted = admitted
        # UNSAFE when False (``--unsafe-no-incarnation-check``, the rule's own test only):
        # votes of a wiped replica count as if it remembered its log.
        self.enforce = enforce
        self.heard: dict[NodeId, int] = {}  # peer -> incarnation of its latest batch
        self.dropped_votes = 0
        self._warned: set[tuple[NodeId, int]] = set()

    def admits(self, group: int, peer: NodeId, incarnation: int) -> bool:
        """Whether ``peer``'s votes at ``incarnation`` count in ``group``."""
        recorded = self._admitted(group).get(peer)
        return recorded is None or recorded == incarnation

    def accept(self, sender: NodeId, incarnation: int, messages: list[GroupMessage]
               ) -> list[GroupMessage]:
        """``messages`` of one batch from ``sender``, without the votes that must not count
        (0: a sender that carries no incarnation, which cannot be judged)."""
        if not incarnation:
            return messages
        self.heard[sender] = incarnation
        if not self.enforce:
            return messages
        kept = [item for item in messages
                if item[1].type not in VOTE_MESSAGES or self.admits(item[0], sender, incarnation)]
        if len(kept) != len(messages):
            self.dropped_votes += len(messages) - len(kept)
            if (sender, incarnation) not in self._warned:
                self._warned.add((sender, incarnation))
                log.warning("n%d came back with a new incarnation %x (its disk was wiped or "
                            "replaced): its votes do not count until it has caught up and been "
                            "admitted", sender, incarnation)
        return kept


@dataclass
class _Noticed:
    incarnation: int
    commit: int  # the leader's commit index when it noticed: the catch-up target


class Readmission:
    """One group's leader side of the rule (see the module docstring); ``step`` is called
    periodically while this node leads the group."""

    def __init__(self, gate: IncarnationGate, group: int) -> None:
        self.gate = gate
        self.group = group
        self._noticed: dict[NodeId, _Noticed] = {}

    def step(self, replicas: list[NodeId], admitted: Mapping[NodeId, int], commit: int,
             match: Callable[[NodeId], int | None], forget: Callable[[NodeId], None]
             ) -> list[tuple[NodeId, int]]:
        """The admissions to propose now: ``(replica, incarnation)``. ``match`` gives a
        replica's match index as this leader tracks it; ``forget`` resets it."""
        proposals: list[tuple[NodeId, int]] = []
        for peer in replicas:
            heard = self.gate.heard.get(peer)
            if heard is None:
                continue
            recorded = admitted.get(peer)
            if recorded == heard:
                self._noticed.pop(peer, None)
                continue
            if recorded is None or not self.gate.enforce:
                proposals.append((peer, heard))  # first sight: nothing to forget
                continue
            noticed = self._noticed.get(peer)
            if noticed is None or noticed.incarnation != heard:
                forget(peer)
                self._noticed[peer] = _Noticed(heard, commit)
                log.warning("group %d: n%d has a new incarnation %x; its progress is forgotten "
                            "and it is admitted once it holds the log up to %d", self.group,
                            peer, heard, commit)
                continue
            matched = match(peer)
            if matched is not None and matched >= noticed.commit:
                proposals.append((peer, heard))
        return proposals
