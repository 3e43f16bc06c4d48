"""The node as the gRPC services see it: one small interface over the Raft driver.

Owns: proposing commands — one, or several submitted together so the Raft loop's group commit
puts them into one entry — and waiting for their results until a deadline; linearizable read
points; waiting for the applied index; membership changes and leadership transfer; read-only
views of the node (role, term, leader, indexes, configuration, each follower's progress) as
plain dataclasses; and every failure as a typed :class:`NodeError` whose ``message`` is what
the client is told (``quorumlog.node.api.rpc`` turns it into a gRPC status). Deadlines are
``time.monotonic()`` instants. Must never: import grpc, know what a command means, or reach
into the Raft core: it uses ``RaftNode``'s queues and read-only views only (:class:`Replica`),
so no service needs another service's internals or the core's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from quorumlog.node.common.limits import ErrorCode
from quorumlog.node.replication import raft_node
from quorumlog.node.replication.applier import CommandError
from quorumlog.node.replication.transport import PeerInfo
from quorumlog.proto import commands_pb2
from quorumlog.raft import Status
from quorumlog.raft.errors import ConfChangeRefused
from quorumlog.raft.types import NONE, ConfChange, ConfState, NodeId, StateRole

NOT_COMMITTED = "not committed before the deadline; retry"
NOT_CONFIRMED = "could not confirm leadership in time"


class Replica(Protocol):
    """What the port needs of the Raft driver (``RaftNode``; tests use a twin)."""

    @property
    def id(self) -> NodeId: ...
    @property
    def role(self) -> StateRole: ...
    @property
    def leader_id(self) -> NodeId: ...
    @property
    def term(self) -> int: ...
    @property
    def applied(self) -> int: ...
    @property
    def tick_seconds(self) -> float: ...
    @property
    def election_ticks(self) -> int: ...
    @property
    def snapshot_index(self) -> int: ...

    def submit(self, command: commands_pb2.Command, size: int) -> asyncio.Future[Any]: ...
    def read_index(self) -> asyncio.Future[int]: ...
    async def wait_applied(self, index: int) -> None: ...
    def propose_conf_change(self, change: ConfChange) -> asyncio.Future[tuple[int, int]]: ...
    def transfer_leader(self, to: NodeId) -> None: ...
    def status(self) -> Status: ...
    def conf_state(self) -> ConfState: ...


class PeerBook(Protocol):
    """Who the members are and when each was last heard from (``PeerTransport``)."""

    @property
    def peers(self) -> Mapping[NodeId, PeerInfo]: ...
    @property
    def last_heard(self) -> Mapping[NodeId, float]: ...  # time.monotonic() of its last batch


# -- views ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LeaderHint:
    """The leader a refused client should ask instead."""

    name: str
    client_address: str  # "" when not known yet


@dataclass(frozen=True, slots=True)
class FollowerView:
    """The leader's replication view of one other member."""

    node_id: NodeId
    name: str
    match_index: int
    next_index: int
    state: str  # probe / replicate / snapshot
    learner: bool
    lag: int  # entries behind the leader's last index
    last_contact_ms: int  # since its last batch reached us; -1: never


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One consistent reading of the node's Raft state."""

    node_id: NodeId
    role: StateRole
    term: int
    leader_id: NodeId  # NONE when no leader is known
    commit_index: int
    applied_index: int
    first_index: int
    last_index: int
    snapshot_index: int
    voters: tuple[NodeId, ...]
    learners: tuple[NodeId, ...]
    followers: tuple[FollowerView, ...]  # on the leader: every other member; else empty

    def is_member(self, node_id: NodeId) -> bool:
        return node_id in self.voters or node_id in self.learners

    def follower(self, node_id: NodeId) -> FollowerView | None:
        return next((view for view in self.followers if view.node_id == node_id), None)


#: A command applied at Raft index ``[0]``; ``[1]`` is the state machine's answer. The
#: driver's own result tuple, handed on as is: no allocation per command on the write path.
Committed = tuple[int, Any]


# -- errors --------------------------------------------------------------------------------------
class NodeError(Exception):
    """The node did not do what was asked; ``message`` is the client's answer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotLeaderError(NodeError):
    """This node cannot serve the call (it is not the leader, or lost leadership before the
    command was written: nothing changed); ``leader`` is whom to ask, when known."""

    def __init__(self, message: str, leader: LeaderHint | None) -> None:
        super().__init__(message)
        self.leader = leader


class OutcomeUnknownError(NodeError):
    """Leadership changed while the command was in flight: it may or may not commit."""


class DeadlineError(NodeError):
    """The deadline passed first; a command may still commit."""


class CommandRefused(NodeError):
    """The command was applied and changed nothing; ``error`` says why (its code too)."""

    def __init__(self, error: CommandError) -> None:
        super().__init__(error.message)
        self.error = error


class ChangeRefused(NodeError):
    """The core refused a membership change (e.g. another one is still in progress)."""


# -- the port ------------------------------------------------------------------------------------
class NodePort:
    """The services' one way into their node (see the module docstring)."""

    def __init__(
        self, replica: Replica, peers: PeerBook, name: str,
        refuse_writes: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._replica = replica
        self._peers = peers
        self.name = name  # this node's name, as messages show it
        # Why this node takes no write now (its disk is below the reserve:
        # ``quorumlog.node.storage.disk_space``), or None.
        self._refuse_writes = refuse_writes

    # -- read-only views -------------------------------------------------------------------
    @property
    def node_id(self) -> NodeId:
        return self._replica.id

    @property
    def is_leader(self) -> bool:
        return self._replica.role == StateRole.LEADER

    @property
    def leader_id(self) -> NodeId:
        return self._replica.leader_id

    @property
    def term(self) -> int:
        return self._replica.term

    @property
    def applied_index(self) -> int:
        return self._replica.applied

    @property
    def tick_seconds(self) -> float:
        return self._replica.tick_seconds

    @property
    def election_seconds(self) -> float:
        """How long followers wait for a leader before campaigning."""
        return self._replica.tick_seconds * self._replica.election_ticks

    @property
    def peers(self) -> Mapping[NodeId, PeerInfo]:
        """Every known member's name and addresses (this node's included)."""
        return self._peers.peers

    def configuration(self) -> ConfState:
        """The current voters and learners."""
        return self._replica.conf_state()

    def leader(self) -> LeaderHint | None:
        """The leader to send clients to: None when unknown or when it is this node."""
        leader_id = self._replica.leader_id
        if leader_id in (NONE, self._replica.id):
            return None
        info = self._peers.peers.get(leader_id)
        return None if info is None else LeaderHint(info.name, info.client_address)

    def not_leader(self, detail: str) -> NotLeaderError:
        """The refusal of a call this node cannot serve, naming the leader when known."""
        leader = self.leader()
        hint = f"; leader is {leader.name}" if leader is not None else "; no leader known"
        return NotLeaderError(f"node {self.name}: {detail}{hint}", leader)

    def status(self) -> NodeStatus:
        raw = self._replica.status()
        peers = self._peers.peers
        last_heard = self._peers.last_heard
        now = time.monotonic()
        followers = []
        for node_id, progress in sorted(raw.progress.items()):
            if node_id == raw.id:
                continue
            info = peers.get(node_id)
            heard = last_heard.get(node_id)
            followers.append(FollowerView(
                node_id=node_id,
                name=info.name if info is not None else f"n{node_id}",
                match_index=progress.match,
                next_index=progress.next,
                state=progress.state,
                learner=progress.is_learner,
                lag=max(0, raw.last_index - progress.match),
                last_contact_ms=-1 if heard is None else int((now - heard) * 1000),
            ))
        return NodeStatus(
            node_id=raw.id,
            role=raw.role,
            term=raw.term,
            leader_id=raw.leader_id,
            commit_index=raw.commit,
            applied_index=raw.applied,
            first_index=raw.first_index,
            last_index=raw.last_index,
            snapshot_index=self._replica.snapshot_index,
            voters=raw.conf_state.voters,
            learners=raw.conf_state.learners,
            followers=tuple(followers),
        )

    # -- writes ----------------------------------------------------------------------------
    async def propose(
        self, command: commands_pb2.Command, size: int, deadline: float
    ) -> tuple[int, Any]:
        """Replicate one command: (its Raft index, its apply result). Raises
        :class:`NotLeaderError`, :class:`OutcomeUnknownError`, :class:`DeadlineError`, or
        :class:`CommandRefused` when it was applied and changed nothing."""
        outcome = (await self.propose_many(((command, size),), deadline))[0]
        if isinstance(outcome, CommandError):
            raise CommandRefused(outcome)
        return outcome

    async def propose_many(
        self, commands: Sequence[tuple[commands_pb2.Command, int]], deadline: float
    ) -> list[Committed | CommandError]:
        """Replicate ``(command, size)`` pairs submitted in one go (no await in between: one
        group commit, one entry, split only by ``max_entry_bytes``); one outcome each, in
        order: ``(index, result)`` (:data:`Committed`), or the :class:`CommandError` of one
        that changed nothing.

        A failure that leaves any command's outcome unknown fails the whole call, so the
        caller retries all of them (producer dedup makes that exactly-once): not the leader
        (:class:`NotLeaderError`, nothing was written), :class:`OutcomeUnknownError`,
        :class:`DeadlineError`. Commands not yet proposed at the deadline never will be.
        """
        if not commands:
            return []
        if self._replica.role != StateRole.LEADER:
            raise self.not_leader("not the leader")
        refused = self._refuse_writes()
        if refused is not None:  # nothing proposed: the disk could not hold it
            error = CommandError(ErrorCode.RESOURCE_EXHAUSTED, f"node {self.name}: {refused}")
            return [error] * len(commands)
        if len(commands) == 1:
            # One command (Append, a consumer call): the future itself is awaited under a
            # timer that cancels it at the deadline (unproposed, it is then never proposed).
            # Same outcome as asyncio.wait_for, whose waiter and callbacks cost more per
            # append (measured: ~6 us against ~2.5 us over a bare await).
            command, size = commands[0]
            future = self._replica.submit(command, size)
            expired = False

            def expire() -> None:
                nonlocal expired
                expired = True
                future.cancel()

            timer = asyncio.get_running_loop().call_later(deadline - time.monotonic(), expire)
            try:
                committed: Committed = await future
            except asyncio.CancelledError:
                if not expired:
                    raise  # the caller went away: the future was cancelled with it
                raise DeadlineError(NOT_COMMITTED) from None
            except raft_node.NotLeader as error:
                raise self.not_leader(str(error)) from None
            except raft_node.CommandFailed as error:
                return [error.error]
            except Exception as error:
                raise OutcomeUnknownError(f"outcome unknown: {error}; retry") from None
            finally:
                timer.cancel()
            answer = committed[1]
            return [answer if isinstance(answer, CommandError) else committed]
        submit = self._replica.submit
        futures = [submit(command, size) for command, size in commands]
        timeout = deadline - time.monotonic()
        try:
            _, pending = await asyncio.wait(futures, timeout=timeout)
        finally:
            for future in futures:
                future.cancel()  # no-op when done; an unproposed one is never proposed
        if pending:
            raise DeadlineError(NOT_COMMITTED)
        failures = [future.exception() for future in futures]  # marks them retrieved
        if any(failures):
            for failure in failures:
                if isinstance(failure, raft_node.NotLeader):
                    raise self.not_leader(str(failure))
            for failure in failures:
                if failure is not None and not isinstance(failure, raft_node.CommandFailed):
                    raise OutcomeUnknownError(f"outcome unknown: {failure}; retry")
        outcomes: list[Committed | CommandError] = []
        for future, failure in zip(futures, failures, strict=True):
            if isinstance(failure, raft_node.CommandFailed):
                outcomes.append(failure.error)  # the entry was not a command batch
                continue
            committed = future.result()
            answer = committed[1]
            outcomes.append(answer if isinstance(answer, CommandError) else committed)
        return outcomes

    async def change_membership(self, change: ConfChange, deadline: float) -> tuple[int, int]:
        """Propose one membership change and wait until it is applied here: its (term,
        index). Raises :class:`NotLeaderError`, :class:`ChangeRefused` (nothing appended) or
        :class:`DeadlineError`. Whether it took effect is for the caller to check in
        :meth:`configuration`: a new leader may have replaced the entry."""
        replica = self._replica
        try:
            term, index = await asyncio.wait_for(
                replica.propose_conf_change(change), deadline - time.monotonic()
            )
            await asyncio.wait_for(replica.wait_applied(index), deadline - time.monotonic())
        except raft_node.NotLeader as error:
            raise self.not_leader(str(error)) from None
        except ConfChangeRefused as error:
            raise ChangeRefused(str(error)) from None
        except TimeoutError:
            raise DeadlineError(
                f"{change.type.name} n{change.node_id} not applied before the deadline; "
                "check `quorumlog status` before retrying"
            ) from None
        return term, index

    def transfer_leader(self, to: NodeId) -> None:
        """Ask the core to hand leadership to ``to`` (it gives up after an election
        timeout; ask again to keep trying)."""
        self._replica.transfer_leader(to)

    # -- reads -----------------------------------------------------------------------------
    async def linearizable(self, deadline: float) -> None:
        """Return once this node's applied state reflects every write acknowledged before
        the call (ReadIndex, Raft §6.4). Raises :class:`NotLeaderError` or
        :class:`DeadlineError`."""
        if self._replica.role != StateRole.LEADER:
            raise self.not_leader("linearizable reads are served by the leader")
        replica = self._replica
        try:
            index = await asyncio.wait_for(replica.read_index(), deadline - time.monotonic())
            await asyncio.wait_for(replica.wait_applied(index), deadline - time.monotonic())
        except (raft_node.NotLeader, raft_node.OutcomeUnknown) as error:
            raise self.not_leader(str(error)) from None
        except TimeoutError:
            raise DeadlineError(NOT_CONFIRMED) from None

    async def wait_applied(self, index: int, deadline: float) -> bool:
        """Whether the applied index reached ``index`` by ``deadline`` (waits until then)."""
        if self._replica.applied >= index:
            return True
        try:
            await asyncio.wait_for(self._replica.wait_applied(index), deadline - time.monotonic())
        except TimeoutError:
            return False
        return True
