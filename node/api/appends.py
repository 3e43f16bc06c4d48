"""The one server-side append path: ``Append``, ``AppendBatch`` and each ``AppendStream``
request all go through :meth:`Appender.append_many`.

Owns: validating each append (limits, then the caller's ``append`` rule: a refused append
gets its own outcome and is not proposed), building its ``AppendCommand`` (the caller recorded
as the producer's owner, ``quorumlog.node.state.acl``), proposing every valid one in one go —
the Raft loop's group commit puts them into one entry, split only by ``max_entry_bytes`` — and
one outcome per append, in order. A failure that leaves any outcome unknown (not the leader,
leadership lost, deadline) fails the whole call with the port's :class:`NodeError`; the
client retries the whole call and producer dedup makes that exactly-once. Must never: build
gRPC answers (the service does), or check a batch as a whole (AppendBatch's own limits are
the service's, before it calls here).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from quorumlog.node.api.guard import Rules, may_append
from quorumlog.node.api.node_port import (
    Committed,
    DeadlineError,
    LeaderHint,
    NodeError,
    NotLeaderError,
)
from quorumlog.node.common import limits
from quorumlog.node.common.envelope import check_envelopes
from quorumlog.node.common.limits import ErrorCode, InvalidInput
from quorumlog.node.replication.applier import CommandError
from quorumlog.node.state.state_machine import AppendResult
from quorumlog.proto import commands_pb2, quorumlog_pb2


class Proposer(Protocol):
    """The part of the node port appends need (``NodePort``)."""

    async def propose_many(
        self, commands: Sequence[tuple[commands_pb2.Command, int]], deadline: float
    ) -> list[Committed | CommandError]: ...


class Router(Protocol):
    """Which group's port serves a session (``ShardTable``): ``(shard, proposer)``, or
    ``NodeError`` (``NotLeaderError`` with a hint when the shard is not hosted here)."""

    def proposer(self, session: str) -> tuple[int, Proposer]: ...


#: An append applied at Raft index ``[0]`` (the reply's commit index), with its offsets.
Appended = tuple[int, AppendResult]


@dataclass(frozen=True, slots=True)
class AppendRefused:
    """An append that changed nothing (or, in a call spanning several shards, whose shard
    could not take it here: ``leader`` says where to send it): its status code and message."""

    code: ErrorCode
    message: str
    leader: LeaderHint | None = None
    shard: int = 0


AppendOutcome = Appended | AppendRefused


class RuleStore(Protocol):
    """Where the replicated ACL rules are read (``AclStore``)."""

    def state(self) -> Rules: ...


class Appender:
    def __init__(self, router: Router, rules: RuleStore, node_limits: limits.Limits) -> None:
        self._router = router
        self._rules = rules
        self._limits = node_limits

    async def append_many(
        self, items: Sequence[quorumlog_pb2.AppendRequest], principal: str, deadline: float
    ) -> list[AppendOutcome]:
        """One outcome per append of ``items``, in order (see the module docstring); raises
        ``NodeError`` when the call fails as a whole."""
        outcomes: list[AppendOutcome | None] = []
        # shard -> (its proposer, positions in ``outcomes``, commands), in first-seen order
        parts: dict[int, tuple[Proposer, list[int], list[tuple[commands_pb2.Command, int]]]] = {}
        unrouted: list[tuple[int, int, NodeError]] = []  # (position, shard, why)
        node_limits = self._limits
        rules = self._rules.state()  # one reading for the call: nothing is awaited below
        now_ms = int(time.time() * 1000)  # a deliver_at's horizon (the state decides by its own)
        for item in items:
            try:
                _, _, size = limits.check_append(
                    item.session, item.messages, item.producer_id, item.sequence, node_limits
                )
                envelopes = check_envelopes(
                    item.envelopes, len(item.messages), size, node_limits, now_ms
                ) if item.envelopes else []
                may_append(rules, principal, item.session)
            except InvalidInput as error:
                outcomes.append(AppendRefused(error.code, error.message))
                continue
            position = len(outcomes)
            outcomes.append(None)  # filled in below
            try:
                shard, proposer = self._router.proposer(item.session)
            except NodeError as error:
                unrouted.append((position, getattr(error, "shard", 0), error))
                continue
            part = parts.setdefault(shard, (proposer, [], []))
            part[1].append(position)
            append = commands_pb2.AppendCommand(
                session=item.session,
                messages=item.messages,
                producer_id=item.producer_id,
                principal=principal,
                sequence=item.sequence,
            )
            if envelopes:
                append.envelopes.extend(envelopes)
                size += sum(map(len, envelopes))
            part[2].append((commands_pb2.Command(append=append), size))
        if unrouted and not parts and len({shard for _, shard, _ in unrouted}) == 1:
            raise unrouted[0][2]  # one shard, not here: the call fails as a whole, as before
        for position, shard, why in unrouted:
            outcomes[position] = _moved(why, shard)
        if len(parts) == 1 and not unrouted:
            # One shard (always, in a one-shard cluster): its failure is the call's.
            ((proposer, positions, commands),) = parts.values()
            self._fill(outcomes, positions, await proposer.propose_many(commands, deadline))
        elif parts:
            shards = list(parts)
            answers = await asyncio.gather(
                *(parts[shard][0].propose_many(parts[shard][2], deadline) for shard in shards),
                return_exceptions=True,
            )
            for shard, answer in zip(shards, answers, strict=True):
                positions = parts[shard][1]
                if isinstance(answer, NodeError):
                    for position in positions:
                        outcomes[position] = _moved(answer, shard)
                elif isinstance(answer, BaseException):
                    raise answer
                else:
                    self._fill(outcomes, positions, answer)
        return cast(list[AppendOutcome], outcomes)  # every position is filled

    @staticmethod
    def _fill(
        outcomes: list[AppendOutcome | None],
        positions: list[int],
        proposed: list[Committed | CommandError],
    ) -> None:
        for position, outcome in zip(positions, proposed, strict=True):
            if isinstance(outcome, CommandError):
                outcomes[position] = AppendRefused(outcome.code, outcome.message)
            else:
                outcomes[position] = outcome  # (index, AppendResult)


def _moved(error: NodeError, shard: int) -> AppendRefused:
    """One append of a call spanning shards whose shard failed here: retry it (producer
    dedup makes that exactly-once), at the leader the error names when it names one."""
    code = ErrorCode.DEADLINE_EXCEEDED if isinstance(error, DeadlineError) \
        else ErrorCode.UNAVAILABLE
    leader = error.leader if isinstance(error, NotLeaderError) else None
    return AppendRefused(code, error.message, leader, shard)
