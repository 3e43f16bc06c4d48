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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from quorumlog.node.api.guard import Rules, may_append
from quorumlog.node.api.node_port import Committed
from quorumlog.node.common import limits
from quorumlog.node.common.limits import ErrorCode, InvalidInput
from quorumlog.node.replication.applier import CommandError
from quorumlog.node.state.state_machine import AppendResult
from quorumlog.proto import commands_pb2, quorumlog_pb2


class Proposer(Protocol):
    """The part of the node port appends need (``NodePort``)."""

    async def propose_many(
        self, commands: Sequence[tuple[commands_pb2.Command, int]], deadline: float
    ) -> list[Committed | CommandError]: ...


#: An append applied at Raft index ``[0]`` (the reply's commit index), with its offsets.
Appended = tuple[int, AppendResult]


@dataclass(frozen=True, slots=True)
class AppendRefused:
    """An append that changed nothing: its status code and message."""

    code: ErrorCode
    message: str


AppendOutcome = Appended | AppendRefused


class RuleStore(Protocol):
    """Where the replicated ACL rules are read (``AclStore``)."""

    def state(self) -> Rules: ...


class Appender:
    def __init__(self, port: Proposer, rules: RuleStore, node_limits: limits.Limits) -> None:
        self._port = port
        self._rules = rules
        self._limits = node_limits

    async def append_many(
        self, items: Sequence[quorumlog_pb2.AppendRequest], principal: str, deadline: float
    ) -> list[AppendOutcome]:
        """One outcome per append of ``items``, in order (see the module docstring); raises
        ``NodeError`` when the call fails as a whole."""
        outcomes: list[AppendOutcome | None] = []
        positions: list[int] = []
        commands: list[tuple[commands_pb2.Command, int]] = []
        node_limits = self._limits
        rules = self._rules.state()  # one reading for the call: nothing is awaited below
        for item in items:
            try:
                _, _, size = limits.check_append(
                    item.session, item.messages, item.producer_id, item.sequence, node_limits
                )
                may_append(rules, principal, item.session)
            except InvalidInput as error:
                outcomes.append(AppendRefused(error.code, error.message))
                continue
            positions.append(len(outcomes))
            outcomes.append(None)  # filled in below
            commands.append((
                commands_pb2.Command(
                    append=commands_pb2.AppendCommand(
                        session=item.session,
                        messages=item.messages,
                        producer_id=item.producer_id,
                        principal=principal,
                        sequence=item.sequence,
                    )
                ),
                size,
            ))
        if commands:
            proposed = await self._port.propose_many(commands, deadline)
            for position, outcome in zip(positions, proposed, strict=True):
                if isinstance(outcome, CommandError):
                    outcomes[position] = AppendRefused(outcome.code, outcome.message)
                else:
                    outcomes[position] = outcome  # (index, AppendResult)
        return cast(list[AppendOutcome], outcomes)  # every position is filled
