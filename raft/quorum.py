"""Majority arithmetic for one configuration of voters.

Owns: "which index has a majority", "did the vote win". Must never: know about terms,
messages or logs; it sees only numbers per voter.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

from quorumlog.raft.types import NodeId


class VoteResult(enum.Enum):
    PENDING = 0
    LOST = 1
    WON = 2


def majority(voter_count: int) -> int:
    """Smallest number of voters that forms a quorum."""
    return voter_count // 2 + 1


def committed_index(voters: Collection[NodeId], match: Mapping[NodeId, int]) -> int:
    """Largest index acknowledged by a majority of ``voters`` (Raft §5.3, §5.4.2).

    A voter missing from ``match`` counts as 0. With no voters the result is 0: nothing can
    commit in an empty configuration.
    """
    if not voters:
        return 0
    acked = sorted((match.get(voter, 0) for voter in voters), reverse=True)
    return acked[majority(len(acked)) - 1]


def vote_result(voters: Collection[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    """Tally granted and rejected votes of ``voters`` (Raft §5.2)."""
    if not voters:
        return VoteResult.WON
    granted = rejected = 0
    for voter in voters:
        vote = votes.get(voter)
        if vote is True:
            granted += 1
        elif vote is False:
            rejected += 1
    need = majority(len(voters))
    if granted >= need:
        return VoteResult.WON
    if len(voters) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Collection[NodeId], members: Collection[NodeId]) -> bool:
    """Whether ``members`` include a majority of ``voters``."""
    if not voters:
        return True
    member_set = set(members)
    return sum(1 for voter in voters if voter in member_set) >= majority(len(voters))
