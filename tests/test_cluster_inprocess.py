"""Tests of node logic against an in-process cluster (``tests/inprocess_cluster.py``: three
real RaftNodes and their services in this process, the Raft log in memory, the peers on an
in-memory transport, the clients on real gRPC). Moved from ``test_cluster.py``, which keeps
what needs node processes (kill -9, restart from disk, wiping a data directory).

64 appenders sharing group-commit batches exactly once; bad input answered with a precise
status that changes nothing (including UNAVAILABLE with the leader hint on a follower and
DEADLINE_EXCEEDED while the followers are cut off — paused, in the process tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cluster_checks import assert_gapless, read_all, wait_caught_up
from cluster_harness import wait_until
from inprocess_cluster import InProcessCluster, inprocess_cluster

from quorumlog.client import errors
from quorumlog.client.sdk import AsyncClient, Client
from quorumlog.proto import quorumlog_pb2 as pb
from quorumlog.proto import quorumlog_pb2_grpc

DEADLINE = 30.0  # an SDK call's whole budget (retries included)
SETTLE = 30.0  # a cluster-level wait: an election or a catch-up on a loaded machine


# -- helpers -----------------------------------------------------------------------------------

@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[InProcessCluster]:
    with inprocess_cluster(tmp_path) as running:
        yield running


# -- group commit ------------------------------------------------------------------------------


async def _appenders_over_sessions(cluster: InProcessCluster, appenders: int, rounds: int) -> None:
    sessions = [f"fan/{index:02d}" for index in range(appenders)]
    async with AsyncClient(cluster.addresses, deadline=DEADLINE, seed=41) as client:

        async def appender(session: str) -> list[int]:
            offsets: list[int] = []
            for index in range(rounds):
                result = await client.append(session, b"%s-%03d" % (session.encode(), index))
                offsets.extend(result.offsets)
            return offsets

        results = await asyncio.gather(*(appender(session) for session in sessions))
        assert all(offsets == list(range(rounds)) for offsets in results)
        for session in sessions:
            records = await read_all(client, session)
            assert_gapless(records)
            expected = [b"%s-%03d" % (session.encode(), index) for index in range(rounds)]
            assert [record.data for record in records] == expected  # once each, in order


def test_64_appenders_over_64_sessions_share_batches_exactly_once(
    cluster: InProcessCluster,
) -> None:
    asyncio.run(_appenders_over_sessions(cluster, appenders=64, rounds=20))
    # One AppendBatch mixing valid and invalid appends: each gets its own outcome, and the
    # valid ones were committed together in one entry.
    leader = cluster.wait_leader()
    api = Api(cluster.nodes[leader].client_addr)
    try:
        answer = api.stub.AppendBatch(
            pb.AppendBatchRequest(appends=[
                pb.AppendRequest(session="mixed/a", messages=[b"a0", b"a1"]),
                pb.AppendRequest(session="bad\nname", messages=[b"x"]),
                pb.AppendRequest(session="mixed/b", messages=[b"b0"]),
                pb.AppendRequest(session="fan/00", messages=[b"after"]),
            ]),
            timeout=DEADLINE,
        )
    finally:
        api.close()
    first, bad, second, third = answer.outcomes
    assert (first.code, first.result.first_offset, first.result.count) == (0, 0, 2)
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "control" in bad.message
    assert (second.code, second.result.first_offset) == (0, 0)
    assert (third.code, third.result.first_offset) == (0, 20)
    assert first.result.commit_index == second.result.commit_index == third.result.commit_index


# -- bad input -------------------------------------------------------------------------------


class Api:
    """Raw gRPC to one node, so requests the SDK would refuse reach the server."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = quorumlog_pb2_grpc.QuorumLogStub(self.channel)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.channel.close()

    def fails(
        self, method: str, request: object, code: grpc.StatusCode, timeout: float = 10.0
    ) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as caught:
            getattr(self.stub, method)(request, timeout=timeout)
        error = caught.value
        assert error.code() == code, f"{method}: {error.code()} {error.details()}"
        return error


def data_of(api: Api) -> tuple[object, ...]:
    """Everything a bad request could change: the sessions and all their messages."""
    sessions = api.stub.ListSessions(pb.ListSessionsRequest(), timeout=10)
    data = [
        api.stub.Read(pb.ReadRequest(session=info.session, from_offset=info.first_offset),
                      timeout=10)
        for info in sessions.sessions
    ]
    return sessions, data


def log_of(cluster: InProcessCluster, leader: str) -> tuple[int, int, int]:
    """The leader's (last index, commit index, term): unchanged when nothing was proposed."""
    status = cluster.status(leader)
    return status.last_index, status.commit_index, status.term


def test_bad_input_gets_a_precise_status_and_changes_nothing(cluster: InProcessCluster) -> None:
    leader = cluster.wait_leader()
    follower = next(name for name in cluster.nodes if name != leader)
    api = Api(cluster.nodes[leader].client_addr)
    follower_api = Api(cluster.nodes[follower].client_addr)
    try:
        api.stub.Append(pb.AppendRequest(session="kept", messages=[b"a", b"b", b"c", b"d", b"e"]),
                        timeout=10)
        api.stub.TrimSession(pb.TrimSessionRequest(session="kept", before_offset=3), timeout=10)
        wait_caught_up(cluster, [follower], leader, SETTLE)
        data_before = data_of(api)
        log_before = log_of(cluster, leader)
        invalid = grpc.StatusCode.INVALID_ARGUMENT

        # INVALID_ARGUMENT: malformed session ids, empty appends, unknown consistency.
        for session in ["", "x" * 257, "a\x00b", "line\nbreak", "del\x7f", "c1\x85"]:
            error = api.fails("Append", pb.AppendRequest(session=session, messages=[b"m"]), invalid)
            assert "session id" in error.details()
            api.fails("Read", pb.ReadRequest(session=session), invalid)
            api.fails("DescribeSession", pb.DescribeSessionRequest(session=session), invalid)
            api.fails("TrimSession", pb.TrimSessionRequest(session=session), invalid)
            api.fails("DeleteSession", pb.DeleteSessionRequest(session=session), invalid)
        error = api.fails("Append", pb.AppendRequest(session="kept"), invalid)
        assert "no messages" in error.details()
        bad_consistency = pb.ReadRequest(session="kept", from_offset=3, consistency=7)  # type: ignore[arg-type]
        error = api.fails("Read", bad_consistency, invalid)
        assert "consistency" in error.details()
        api.fails(
            "DescribeSession",
            pb.DescribeSessionRequest(session="kept", consistency=9),  # type: ignore[arg-type]
            invalid,
        )

        # Nothing above reached the Raft log: it was refused before anything was proposed.
        assert log_of(cluster, leader) == log_before

        # NOT_FOUND: an unknown session, on every call that names one. (Trim and delete are
        # decided when applied, because only then is the answer linearizable: they occupy a
        # log entry that every replica applies as a no-op.)
        missing = grpc.StatusCode.NOT_FOUND
        for method, request in [
            ("DescribeSession", pb.DescribeSessionRequest(session="nope")),
            ("Read", pb.ReadRequest(session="nope")),
            ("TrimSession", pb.TrimSessionRequest(session="nope", before_offset=1)),
            ("DeleteSession", pb.DeleteSessionRequest(session="nope")),
        ]:
            assert "'nope' not found" in api.fails(method, request, missing).details()

        # OUT_OF_RANGE: below the first retained offset after a trim; a trim past the end.
        out = grpc.StatusCode.OUT_OF_RANGE
        error = api.fails("Read", pb.ReadRequest(session="kept", from_offset=1), out)
        assert "first retained offset is 3" in error.details()
        api.fails("TrimSession", pb.TrimSessionRequest(session="kept", before_offset=99), out)

        # RESOURCE_EXHAUSTED: a message over 1 MiB, more than 10,000 messages, over 4 MiB in
        # one append; refused before anything is proposed.
        log_before = log_of(cluster, leader)
        big = grpc.StatusCode.RESOURCE_EXHAUSTED
        error = api.fails(
            "Append", pb.AppendRequest(session="kept", messages=[b"x" * ((1 << 20) + 1)]), big
        )
        assert "limit is 1048576" in error.details()
        api.fails("Append", pb.AppendRequest(session="kept", messages=[b"m"] * 10_001), big)
        api.fails("Append", pb.AppendRequest(session="kept", messages=[b"m" * (1 << 20)] * 5),
                  big)
        assert log_of(cluster, leader) == log_before

        # AppendBatch as a whole: empty, over 1,000 appends, over 4 MiB of messages in all.
        error = api.fails("AppendBatch", pb.AppendBatchRequest(), invalid)
        assert "no appends" in error.details()
        one = pb.AppendRequest(session="kept", messages=[b"m"])
        error = api.fails("AppendBatch", pb.AppendBatchRequest(appends=[one] * 1001), big)
        assert "1001 appends; the limit is 1000" in error.details()
        mib = pb.AppendRequest(session="kept", messages=[b"m" * (1 << 20)])
        error = api.fails("AppendBatch", pb.AppendBatchRequest(appends=[mib] * 5), big)
        assert "the limit is 4194304" in error.details()
        # Every append of a batch invalid: each gets its own answer, nothing is proposed.
        answer = api.stub.AppendBatch(
            pb.AppendBatchRequest(appends=[
                pb.AppendRequest(session="", messages=[b"m"]),
                pb.AppendRequest(session="kept"),
                pb.AppendRequest(session="kept", messages=[b"x" * ((1 << 20) + 1)]),
            ]),
            timeout=10,
        )
        assert [(o.code, o.HasField("result")) for o in answer.outcomes] == [
            (invalid.value[0], False), (invalid.value[0], False), (big.value[0], False)
        ]
        assert "session id is empty" in answer.outcomes[0].message
        assert "no messages" in answer.outcomes[1].message
        assert "limit is 1048576" in answer.outcomes[2].message
        assert log_of(cluster, leader) == log_before

        # UNAVAILABLE from a follower, naming the leader, for appends and linearizable reads;
        # the follower still serves a FOLLOWER read.
        leader_node = cluster.nodes[leader]
        for method, request in [
            ("Append", pb.AppendRequest(session="kept", messages=[b"via follower"])),
            ("AppendBatch", pb.AppendBatchRequest(
                appends=[pb.AppendRequest(session="kept", messages=[b"via follower"])]
            )),
            ("Read", pb.ReadRequest(session="kept", from_offset=3)),
            ("DescribeSession", pb.DescribeSessionRequest(session="kept")),
        ]:
            error = follower_api.fails(method, request, grpc.StatusCode.UNAVAILABLE)
            hint = dict(error.trailing_metadata() or ())
            assert hint.get("quorumlog-leader-id") == leader, (method, hint)
            assert hint.get("quorumlog-leader-addr") == leader_node.client_addr, (method, hint)
            assert f"leader is {leader}" in error.details()
        page = follower_api.stub.Read(
            pb.ReadRequest(session="kept", from_offset=3, consistency=pb.FOLLOWER), timeout=10
        )
        assert [record.data for record in page.records] == [b"d", b"e"]

        # The SDK surfaces the same answers as typed errors.
        with Client(cluster.addresses, deadline=DEADLINE, seed=1) as client:
            with pytest.raises(errors.NotFound):
                client.read("nope")
            with pytest.raises(errors.OutOfRange) as trimmed:
                client.read("kept", 0)
            assert trimmed.value.first_offset == 3
            with pytest.raises(errors.ResourceExhausted):
                client.append("kept", b"m" * ((1 << 20) + 1))

        assert log_of(cluster, leader) == log_before  # nor did the follower's refusals
        assert data_of(api) == data_before

        # DEADLINE_EXCEEDED: with both followers paused the leader can neither confirm a read
        # point nor commit. Each call is made right after pausing them, before CheckQuorum
        # makes the leader step down (one election timeout, 0.5-1 s); on a loaded machine it
        # can step down first (UNAVAILABLE: not the leader / outcome unknown), and then the
        # pause is tried again once a leader is back.
        retried = pb.AppendRequest(
            session="unknown-outcome", messages=[b"once"], producer_id="p1", sequence=0
        )
        for method, request in (
            ("Read", pb.ReadRequest(session="kept", from_offset=3)),
            ("Append", retried),
            ("AppendBatch", pb.AppendBatchRequest(appends=[retried])),
        ):
            def deadline_exceeded(method: str = method, request: object = request) -> bool:
                current = cluster.wait_leader()
                leader_api = Api(cluster.nodes[current].client_addr)
                others = [name for name in cluster.nodes if name != current]
                for name in others:
                    cluster.pause(name)
                try:
                    with pytest.raises(grpc.RpcError) as caught:
                        getattr(leader_api.stub, method)(request, timeout=0.3)
                finally:
                    for name in others:
                        cluster.resume(name)
                    leader_api.close()
                error = caught.value
                if error.code() == grpc.StatusCode.UNAVAILABLE:
                    return False  # it stepped down before the deadline: pause again
                assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, (
                    f"{method}: {error.code()} {error.details()}"
                )
                return True

            wait_until(deadline_exceeded, SETTLE, f"{method} to exceed its deadline")
        # A read-only timeout changed nothing; the append's outcome was unknown, and resending
        # the same (producer, sequence) writes it exactly once whichever way it went.
        with Client(cluster.addresses, deadline=DEADLINE, seed=2) as client:
            assert [(r.offset, r.data) for r in client.read("kept", 3).records] == [
                (3, b"d"), (4, b"e")
            ]
            assert client.describe_session("kept").next_offset == 5

        def resend() -> pb.AppendResponse | None:
            address = cluster.nodes[cluster.wait_leader()].client_addr
            with grpc.insecure_channel(address) as channel:
                stub = quorumlog_pb2_grpc.QuorumLogStub(channel)  # type: ignore[no-untyped-call]
                response: pb.AppendResponse = stub.Append(retried, timeout=5)
                return response

        response = wait_until(resend, SETTLE, "the resent append")
        assert (response.first_offset, response.count) == (0, 1)
        again = resend()
        assert again is not None and again.duplicate and again.first_offset == 0
        with Client(cluster.addresses, deadline=DEADLINE, seed=2) as client:
            assert [(r.offset, r.data) for r in client.read("unknown-outcome").records] == [
                (0, b"once")
            ]
    finally:
        api.close()
        follower_api.close()


# -- a failed write is fatal -------------------------------------------------------------------

class DiskFailed(OSError):
    """What the failing store raises (an fsync's EIO, say)."""


def test_a_failed_write_ends_the_raft_loop_and_the_cluster_carries_on(
    cluster: InProcessCluster,
) -> None:
    """A follower whose log write raises stops its Raft loop (never retried) and reports the
    error through ``wait_failure`` (what the process layer exits on); the other two nodes keep
    committing."""
    leader = cluster.wait_ready()
    victim = next(name for name in cluster.nodes if name != leader)
    node = cluster.nodes[victim]
    assert node.raft is not None
    store = node.log_store
    healthy = store.write_ready

    def failing_write(*args: object, **kwargs: object) -> None:
        raise DiskFailed(5, "Input/output error")

    store.write_ready = failing_write  # type: ignore[method-assign]
    try:
        waiting = asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(node.raft.wait_failure(), SETTLE), cluster.loop
        )
        with Client(cluster.addresses, deadline=DEADLINE) as client:
            for i in range(5):
                client.append("after-failure", f"m{i}".encode())
            error = waiting.result(SETTLE)
            assert isinstance(error, DiskFailed), error
            # the survivors are a majority: appends go on and are read back whole
            client.append("after-failure", b"m5")
            records = client.read("after-failure", 0).records
        assert [record.data for record in records] == [f"m{i}".encode() for i in range(6)]
    finally:
        store.write_ready = healthy  # type: ignore[method-assign]
