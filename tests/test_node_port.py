"""Unit tests of the services' interface to their node (``quorumlog.node.api.node_port``),
its gRPC status mapping (``quorumlog.node.api.rpc``) and the one append path
(``quorumlog.node.api.appends``), against an in-memory twin of the Raft driver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import grpc
import pytest

from quorumlog.node.api import rpc
from quorumlog.node.api.appends import Appender, AppendRefused
from quorumlog.node.api.node_port import (
    ChangeRefused,
    CommandRefused,
    Committed,
    DeadlineError,
    NodeError,
    NodePort,
    NotLeaderError,
    OutcomeUnknownError,
)
from quorumlog.node.common.limits import DEFAULT_LIMITS, ErrorCode
from quorumlog.node.replication import raft_node
from quorumlog.node.replication.applier import CommandError
from quorumlog.node.replication.transport import PeerInfo
from quorumlog.node.state.state_machine import AppendResult
from quorumlog.proto import commands_pb2, quorumlog_pb2
from quorumlog.raft import Status
from quorumlog.raft.errors import ConfChangeRefused
from quorumlog.raft.rawnode import ProgressView
from quorumlog.raft.types import NONE, ConfChange, ConfChangeType, ConfState, NodeId, StateRole

T = TypeVar("T")
SOON = 0.05  # seconds: a deadline that passes within the test


class FakeReplica:
    """The Raft driver's twin: queues what the port submits; the test resolves it."""

    def __init__(self) -> None:
        self.id: NodeId = 1
        self.role = StateRole.LEADER
        self.leader_id: NodeId = 1
        self.term = 3
        self.applied = 10
        self.tick_seconds = 0.01
        self.election_ticks = 10
        self.snapshot_index = 4
        self.submitted: list[tuple[commands_pb2.Command, int, asyncio.Future[Any]]] = []
        self.reads: list[asyncio.Future[int]] = []
        self.changes: list[tuple[ConfChange, asyncio.Future[tuple[int, int]]]] = []
        self.transfers: list[NodeId] = []
        self.progress: dict[NodeId, ProgressView] = {}
        self.conf = ConfState(voters=(1, 2, 3), learners=(4,))
        self._applied_changed = asyncio.Event()

    def submit(self, command: commands_pb2.Command, size: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.role != StateRole.LEADER:
            future.set_exception(raft_node.NotLeader(self.leader_id, "not the leader"))
        self.submitted.append((command, size, future))
        return future

    def read_index(self) -> asyncio.Future[int]:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.reads.append(future)
        return future

    async def wait_applied(self, index: int) -> None:
        while self.applied < index:
            self._applied_changed.clear()
            await self._applied_changed.wait()

    def apply_to(self, index: int) -> None:
        self.applied = index
        self._applied_changed.set()

    def propose_conf_change(self, change: ConfChange) -> asyncio.Future[tuple[int, int]]:
        future: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self.changes.append((change, future))
        return future

    def transfer_leader(self, to: NodeId) -> None:
        self.transfers.append(to)

    def conf_state(self) -> ConfState:
        return self.conf

    def status(self) -> Status:
        return Status(
            id=self.id, term=self.term, vote=self.id, commit=12, applied=self.applied,
            last_index=15, first_index=5, role=self.role, leader_id=self.leader_id,
            lead_transferee=NONE, conf_state=self.conf, progress=dict(self.progress),
        )


class FakePeers:
    def __init__(self) -> None:
        self.peers: dict[NodeId, PeerInfo] = {
            1: PeerInfo("n1", "127.0.0.1:8001", "127.0.0.1:7001"),
            2: PeerInfo("n2", "127.0.0.1:8002", "127.0.0.1:7002"),
            3: PeerInfo("n3", "127.0.0.1:8003", ""),  # client address not learned yet
        }
        self.last_heard: dict[NodeId, float] = {}


def _port() -> tuple[NodePort, FakeReplica, FakePeers]:
    replica = FakeReplica()
    peers = FakePeers()
    return NodePort(replica, peers, "n1"), replica, peers


def _command(session: str = "s") -> commands_pb2.Command:
    return commands_pb2.Command(trim=commands_pb2.TrimCommand(session=session))


def run(test: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(test())


async def _started(coroutine: Awaitable[T]) -> asyncio.Task[T]:
    """``coroutine`` as a task that has run up to its first real wait."""
    task = asyncio.ensure_future(coroutine)
    await asyncio.sleep(0)
    return task


# -- proposals -------------------------------------------------------------------------------------
def test_propose_many_submits_all_in_one_go_and_answers_each_in_order() -> None:
    async def scenario() -> list[Committed | CommandError]:
        port, replica, _ = _port()
        task = await _started(port.propose_many(
            [(_command("a"), 10), (_command("b"), 20), (_command("c"), 30)],
            time.monotonic() + 5,
        ))
        # every command was handed to the driver before the port waited: one group commit
        assert [size for _, size, _ in replica.submitted] == [10, 20, 30]
        refused = CommandError(ErrorCode.NOT_FOUND, "session 'b' not found")
        replica.submitted[0][2].set_result((7, "first"))
        replica.submitted[1][2].set_result((7, refused))
        replica.submitted[2][2].set_exception(raft_node.CommandFailed(
            CommandError(ErrorCode.INVALID_ARGUMENT, "not a command batch")
        ))
        return await task

    outcomes = run(scenario)
    assert outcomes[0] == (7, "first")
    assert outcomes[1] == CommandError(ErrorCode.NOT_FOUND, "session 'b' not found")
    assert outcomes[2] == CommandError(ErrorCode.INVALID_ARGUMENT, "not a command batch")


def test_propose_refuses_on_a_follower_naming_the_leader_and_submits_nothing() -> None:
    async def scenario() -> tuple[NotLeaderError, int]:
        port, replica, _ = _port()
        replica.role, replica.leader_id = StateRole.FOLLOWER, 2
        with pytest.raises(NotLeaderError) as raised:
            await port.propose(_command(), 8, time.monotonic() + 5)
        return raised.value, len(replica.submitted)

    error, submitted = run(scenario)
    assert submitted == 0
    assert error.message == "node n1: not the leader; leader is n2"
    answer = rpc.refusal(error)
    assert answer.code == grpc.StatusCode.UNAVAILABLE
    assert answer.metadata == (
        (rpc.LEADER_ID_KEY, "n2"), (rpc.LEADER_ADDR_KEY, "127.0.0.1:7002")
    )


def test_leader_hint_leaves_out_an_unknown_address_and_an_unknown_leader() -> None:
    port, replica, _ = _port()
    replica.leader_id = 3
    error = port.not_leader("x")
    assert error.message == "node n1: x; leader is n3"
    assert rpc.refusal(error).metadata == ((rpc.LEADER_ID_KEY, "n3"),)
    replica.leader_id = NONE
    assert port.not_leader("x").message == "node n1: x; no leader known"
    assert rpc.refusal(port.not_leader("x")).metadata == ()
    replica.leader_id = 1  # this node: nobody else to ask
    assert port.leader() is None
    assert port.not_leader("x").message == "node n1: x; no leader known"


@pytest.mark.parametrize("commands", [1, 3])
def test_a_lost_leadership_fails_the_whole_call(commands: int) -> None:
    async def scenario() -> NodeError:
        port, replica, _ = _port()
        task = await _started(
            port.propose_many([(_command(), 8)] * commands, time.monotonic() + 5)
        )
        replica.leader_id = 2
        for position, (_, _, future) in enumerate(replica.submitted):
            if position == commands - 1:
                future.set_exception(raft_node.NotLeader(2, "leadership changed; not written"))
            else:
                future.set_result((9, "ok"))
        with pytest.raises(NodeError) as raised:
            await task
        return raised.value

    error = run(scenario)
    assert isinstance(error, NotLeaderError)
    assert error.message == "node n1: leadership changed; not written; leader is n2"


@pytest.mark.parametrize("commands", [1, 3])
def test_an_unknown_outcome_fails_the_whole_call(commands: int) -> None:
    async def scenario() -> NodeError:
        port, replica, _ = _port()
        task = await _started(
            port.propose_many([(_command(), 8)] * commands, time.monotonic() + 5)
        )
        for _, _, future in replica.submitted:
            future.set_exception(raft_node.OutcomeUnknown("leadership lost in flight"))
        with pytest.raises(NodeError) as raised:
            await task
        return raised.value

    error = run(scenario)
    assert isinstance(error, OutcomeUnknownError)
    assert error.message == "outcome unknown: leadership lost in flight; retry"
    assert rpc.refusal(error).code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("commands", [1, 3])
def test_the_deadline_cancels_what_was_not_proposed(commands: int) -> None:
    async def scenario() -> tuple[NodeError, list[bool]]:
        port, replica, _ = _port()
        with pytest.raises(NodeError) as raised:
            await port.propose_many([(_command(), 8)] * commands, time.monotonic() + SOON)
        return raised.value, [future.cancelled() for _, _, future in replica.submitted]

    error, cancelled = run(scenario)
    assert isinstance(error, DeadlineError)
    assert error.message == "not committed before the deadline; retry"
    assert rpc.refusal(error).code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert cancelled == [True] * commands  # the driver skips them: never proposed


@pytest.mark.parametrize("commands", [1, 3])
def test_a_caller_that_goes_away_cancels_its_commands(commands: int) -> None:
    async def scenario() -> list[bool]:
        port, replica, _ = _port()
        task = await _started(
            port.propose_many([(_command(), 8)] * commands, time.monotonic() + 5)
        )
        task.cancel()  # the client left
        with pytest.raises(asyncio.CancelledError):
            await task
        return [future.cancelled() for _, _, future in replica.submitted]

    assert run(scenario) == [True] * commands  # the driver skips them: never proposed


def test_propose_raises_a_refused_command_with_its_code() -> None:
    async def scenario() -> CommandRefused:
        port, replica, _ = _port()
        task = await _started(port.propose(_command(), 8, time.monotonic() + 5))
        replica.submitted[0][2].set_result(
            (5, CommandError(ErrorCode.FAILED_PRECONDITION, "stale token"))
        )
        with pytest.raises(CommandRefused) as raised:
            await task
        return raised.value

    error = run(scenario)
    assert error.message == "stale token"
    assert rpc.refusal(error).code == grpc.StatusCode.FAILED_PRECONDITION


# -- reads and waits -----------------------------------------------------------------------------
def test_linearizable_waits_for_the_read_index_to_be_applied() -> None:
    async def scenario() -> bool:
        port, replica, _ = _port()
        task = await _started(port.linearizable(time.monotonic() + 5))
        replica.reads[0].set_result(12)
        await asyncio.sleep(0)
        waiting = not task.done()  # read index 12, applied 10
        replica.apply_to(12)
        await task
        return waiting

    assert run(scenario)


def test_linearizable_refusals() -> None:
    async def scenario() -> tuple[NodeError, NodeError, NodeError]:
        port, replica, _ = _port()
        with pytest.raises(DeadlineError) as late:
            await port.linearizable(time.monotonic() + SOON)
        task = await _started(port.linearizable(time.monotonic() + 5))
        replica.reads[-1].set_exception(raft_node.NotLeader(NONE, "not the leader"))
        with pytest.raises(NotLeaderError) as lost:
            await task
        replica.role = StateRole.FOLLOWER
        with pytest.raises(NotLeaderError) as follower:
            await port.linearizable(time.monotonic() + 5)
        return late.value, lost.value, follower.value

    late, lost, follower = run(scenario)
    assert late.message == "could not confirm leadership in time"
    assert lost.message == "node n1: not the leader; no leader known"
    assert follower.message == (
        "node n1: linearizable reads are served by the leader; no leader known"
    )


def test_wait_applied_answers_whether_the_index_was_reached() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        port, replica, _ = _port()
        already = await port.wait_applied(10, time.monotonic())
        late = await port.wait_applied(11, time.monotonic() + SOON)
        task = await _started(port.wait_applied(11, time.monotonic() + 5))
        replica.apply_to(11)
        return already, late, await task

    assert run(scenario) == (True, False, True)


# -- membership and status -----------------------------------------------------------------------
def test_change_membership_waits_until_applied_and_maps_refusals() -> None:
    change = ConfChange(ConfChangeType.ADD_LEARNER, 4)

    async def scenario() -> tuple[tuple[int, int], NodeError, NodeError]:
        port, replica, _ = _port()
        task = await _started(port.change_membership(change, time.monotonic() + 5))
        replica.changes[0][1].set_result((3, 11))
        await asyncio.sleep(0)
        assert not task.done()
        replica.apply_to(11)
        applied = await task
        task = await _started(port.change_membership(change, time.monotonic() + 5))
        replica.changes[1][1].set_exception(ConfChangeRefused("a change is in progress"))
        with pytest.raises(ChangeRefused) as refused:
            await task
        with pytest.raises(DeadlineError) as late:
            await port.change_membership(change, time.monotonic() + SOON)
        return applied, refused.value, late.value

    applied, refused, late = run(scenario)
    assert applied == (3, 11)
    assert rpc.refusal(refused).code == grpc.StatusCode.FAILED_PRECONDITION
    assert late.message == (
        "ADD_LEARNER n4 not applied before the deadline; check `quorumlog status` before retrying"
    )


def test_status_is_plain_data_with_each_followers_progress() -> None:
    port, replica, peers = _port()
    replica.progress = {
        1: ProgressView(15, 16, "replicate", False, True),
        2: ProgressView(15, 16, "replicate", False, True),
        4: ProgressView(3, 4, "probe", True, False),
    }
    peers.last_heard[2] = time.monotonic() - 0.5
    status = port.status()
    assert (status.role, status.term, status.leader_id) == (StateRole.LEADER, 3, 1)
    assert (status.commit_index, status.applied_index) == (12, 10)
    assert (status.first_index, status.last_index, status.snapshot_index) == (5, 15, 4)
    assert (status.voters, status.learners) == ((1, 2, 3), (4,))
    assert status.is_member(4) and not status.is_member(5)
    assert [view.node_id for view in status.followers] == [2, 4]  # not this node
    follower = status.follower(2)
    assert follower is not None and follower.name == "n2" and follower.lag == 0
    assert 400 <= follower.last_contact_ms <= 5000
    learner = status.follower(4)
    assert learner is not None
    assert (learner.name, learner.learner, learner.lag, learner.last_contact_ms) == (
        "n4", True, 12, -1
    )
    assert port.election_seconds == pytest.approx(0.1)
    port.transfer_leader(2)
    assert replica.transfers == [2]


# -- the append path -----------------------------------------------------------------------------
class RecordingProposer:
    """Answers each proposed append with offsets, and records what was proposed."""

    def __init__(self, error: NodeError | None = None) -> None:
        self.calls: list[list[commands_pb2.Command]] = []
        self.error = error

    def proposer(self, session: str) -> tuple[int, RecordingProposer]:
        """The router of a one-shard node: every session is shard 0, here."""
        return 0, self

    async def propose_many(
        self, commands: Sequence[tuple[commands_pb2.Command, int]], deadline: float
    ) -> list[Committed | CommandError]:
        self.calls.append([command for command, _ in commands])
        if self.error is not None:
            raise self.error
        outcomes: list[Committed | CommandError] = []
        for command, _ in commands:
            append = command.append
            if append.session == "gone":
                outcomes.append(CommandError(ErrorCode.NOT_FOUND, "session 'gone' was deleted"))
            else:
                outcomes.append((21, AppendResult(
                    append.session, 5, len(append.messages), False
                )))
        return outcomes


class Rules:
    """ACL rules: nobody may append to ``secret*``."""

    def state(self) -> Rules:
        return self

    def allows(self, principal: str, verb: str, name: str) -> bool:
        return not name.startswith("secret")


def _append(session: str, *messages: bytes) -> quorumlog_pb2.AppendRequest:
    return quorumlog_pb2.AppendRequest(
        session=session, messages=messages, producer_id="p", sequence=3
    )


def test_append_many_validates_each_and_proposes_the_valid_ones_together() -> None:
    proposer = RecordingProposer()
    appender = Appender(proposer, Rules(), DEFAULT_LIMITS)
    items = [
        _append("a", b"1", b"2"),
        _append("", b"x"),  # invalid id
        _append("secret/b", b"x"),  # ACL
        _append("gone", b"x"),  # refused at apply
        _append("c", b"3"),
    ]
    outcomes = asyncio.run(appender.append_many(items, "alice", time.monotonic() + 5))
    assert len(proposer.calls) == 1  # one propose_many: one group commit
    proposed = proposer.calls[0]
    assert [command.append.session for command in proposed] == ["a", "gone", "c"]
    assert {command.append.principal for command in proposed} == {"alice"}
    assert [list(command.append.messages) for command in proposed] == [[b"1", b"2"], [b"x"],
                                                                        [b"3"]]
    assert outcomes[0] == (21, AppendResult("a", 5, 2, False))
    assert isinstance(outcomes[1], AppendRefused)
    assert outcomes[1].code == ErrorCode.INVALID_ARGUMENT
    assert outcomes[2] == AppendRefused(
        ErrorCode.PERMISSION_DENIED, "principal 'alice' may not append session 'secret/b'"
    )
    assert outcomes[3] == AppendRefused(ErrorCode.NOT_FOUND, "session 'gone' was deleted")
    assert outcomes[4] == (21, AppendResult("c", 5, 1, False))


def test_append_many_proposes_nothing_when_nothing_is_valid() -> None:
    proposer = RecordingProposer(OutcomeUnknownError("must not be called"))
    appender = Appender(proposer, Rules(), DEFAULT_LIMITS)
    outcomes = asyncio.run(appender.append_many([_append("secret", b"x")], "", time.monotonic()))
    assert proposer.calls == []
    assert outcomes == [
        AppendRefused(ErrorCode.PERMISSION_DENIED, "principal '' may not append session 'secret'")
    ]


def test_append_many_fails_as_a_whole_when_the_node_cannot_serve() -> None:
    error = NotLeaderError("node n1: not the leader; no leader known", None)
    appender = Appender(RecordingProposer(error), Rules(), DEFAULT_LIMITS)
    with pytest.raises(NotLeaderError):
        asyncio.run(appender.append_many([_append("a", b"x")], "", time.monotonic() + 5))
