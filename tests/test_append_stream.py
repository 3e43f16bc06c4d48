"""AppendStream: AppendBatch calls on one long-lived stream, answered by id, refusals in-band.

Against an in-process cluster (``tests/inprocess_cluster.py``: real RaftNodes and services on
real gRPC, the Raft log in memory): pipelined requests on one stream are each answered once
with their own offsets; a follower answers in-band UNAVAILABLE naming the leader and keeps the
stream open; an invalid batch is refused in-band and changes nothing; the SDK sends every
append of a sequential producer on ONE stream call. Against the fake cluster (which has no
AppendStream, like an older server): the SDK falls back to unary AppendBatch and still works.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterator

import grpc
import pytest
from cluster_harness import wait_until
from inprocess_cluster import InProcessCluster, inprocess_cluster
from quorumlog_fake import FakeCluster

from quorumlog.client.sdk import AsyncClient
from quorumlog.proto import quorumlog_pb2 as pb
from quorumlog.proto import quorumlog_pb2_grpc

DEADLINE = 30.0  # a loaded two-core machine


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with inprocess_cluster(tmp_path_factory.mktemp("append-stream")) as running:
        yield running


class StreamCall:
    """A raw AppendStream call driven from the test thread: send requests, take answers."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.requests: queue.Queue[pb.AppendStreamRequest | None] = queue.Queue()
        stub = quorumlog_pb2_grpc.QuorumLogStub(self.channel)  # type: ignore[no-untyped-call]
        self.answers = stub.AppendStream(iter(self.requests.get, None), timeout=DEADLINE)

    def send(self, request_id: int, *appends: pb.AppendRequest) -> None:
        batch = pb.AppendBatchRequest(appends=list(appends))
        self.requests.put(pb.AppendStreamRequest(id=request_id, batch=batch, timeout_ms=20_000))

    def take(self) -> pb.AppendStreamResponse:
        return next(self.answers)  # type: ignore[no-any-return]

    def close(self) -> list[pb.AppendStreamResponse]:
        self.requests.put(None)  # half-close: the server answers what is left and ends
        rest = list(self.answers)
        self.channel.close()
        return rest


def _append(session: str, *messages: bytes) -> pb.AppendRequest:
    return pb.AppendRequest(session=session, messages=list(messages))


def _read(cluster: InProcessCluster, address: str, session: str) -> list[bytes]:
    with grpc.insecure_channel(address) as channel:
        stub = quorumlog_pb2_grpc.QuorumLogStub(channel)  # type: ignore[no-untyped-call]
        try:
            page = stub.Read(pb.ReadRequest(session=session), timeout=DEADLINE)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return []
            raise
    return [record.data for record in page.records]


def test_pipelined_requests_are_each_answered_once_with_their_offsets(
    cluster: InProcessCluster,
) -> None:
    leader = cluster.nodes[cluster.wait_leader()]
    call = StreamCall(leader.client_addr)
    for request_id in (7, 8, 9):  # three in flight before the first answer is read
        call.send(request_id, _append("pipelined", f"m{request_id}".encode()))
    answers = [call.take() for _ in range(3)]
    answers += call.close()
    assert sorted(answer.id for answer in answers) == [7, 8, 9]
    assert all(answer.code == 0 for answer in answers), answers
    offsets = {
        answer.id: answer.batch.outcomes[0].result.first_offset for answer in answers
    }
    assert sorted(offsets.values()) == [0, 1, 2]
    stored = _read(cluster, leader.client_addr, "pipelined")
    assert {stored[offset] for offset in offsets.values()} == {b"m7", b"m8", b"m9"}
    for request_id, offset in offsets.items():
        assert stored[offset] == f"m{request_id}".encode()


def test_follower_refuses_in_band_with_the_leader_and_keeps_the_stream(
    cluster: InProcessCluster,
) -> None:
    def refusals() -> tuple[str, list[pb.AppendStreamResponse]] | None:
        # Retried only while an election makes the follower not know a leader yet.
        leader_name = cluster.wait_leader()
        follower = next(node for name, node in cluster.nodes.items() if name != leader_name)
        call = StreamCall(follower.client_addr)
        call.send(1, _append("refused", b"x"))
        first = call.take()
        call.send(2, _append("refused", b"y"))  # the same stream still takes requests
        second = call.take()
        assert call.close() == []
        if not (first.leader_id and second.leader_id):
            return None
        return leader_name, [first, second]

    leader_name, answers = wait_until(refusals, DEADLINE, "a follower that knows the leader")
    for answer, request_id in zip(answers, (1, 2), strict=True):
        assert answer.id == request_id
        assert answer.code == grpc.StatusCode.UNAVAILABLE.value[0], answer
        assert answer.leader_id == leader_name
        assert answer.leader_addr == cluster.nodes[leader_name].client_addr
        assert f"leader is {leader_name}" in answer.message
        assert not answer.HasField("batch")
    assert _read(cluster, cluster.nodes[leader_name].client_addr, "refused") == []


def test_invalid_batches_are_refused_in_band_and_change_nothing(cluster: InProcessCluster) -> None:
    leader = cluster.nodes[cluster.wait_leader()]
    call = StreamCall(leader.client_addr)
    call.send(1)  # no appends at all
    empty = call.take()
    call.send(2, _append("", b"bad id"), _append("kept-apart", b"good"))
    mixed = call.take()
    assert call.close() == []
    assert empty.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "no appends" in empty.message
    assert mixed.code == 0  # per-append outcomes, like AppendBatch
    assert mixed.batch.outcomes[0].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "session id is empty" in mixed.batch.outcomes[0].message
    assert mixed.batch.outcomes[1].result.first_offset == 0
    assert _read(cluster, leader.client_addr, "kept-apart") == [b"good"]


def test_sdk_sends_a_sequential_producer_on_one_stream_call(cluster: InProcessCluster) -> None:
    async def run() -> tuple[list[int], int, int]:
        async with AsyncClient(cluster.addresses, deadline=DEADLINE, seed=3) as client:
            offsets = [
                (await client.append("one-stream", f"v{i}".encode())).first_offset
                for i in range(50)
            ]
            assert client.leader is not None
            connection = client._router.connection(client.leader)
            stream = connection._append_stream
            return offsets, stream.opened, int(stream.supported)

    offsets, opened, supported = asyncio.run(run())
    assert offsets == list(range(50))
    assert supported == 1
    assert opened == 1
    leader = cluster.nodes[cluster.wait_leader()]
    assert _read(cluster, leader.client_addr, "one-stream") == [
        f"v{i}".encode() for i in range(50)
    ]


def test_sdk_falls_back_to_append_batch_on_a_server_without_the_stream() -> None:
    fake = FakeCluster(3)
    try:
        async def run() -> tuple[list[int], bool]:
            async with AsyncClient(fake.addresses, deadline=DEADLINE, seed=3) as client:
                offsets = [
                    (await client.append("old-server", b"x")).first_offset for _ in range(5)
                ]
                assert client.leader is not None
                stream = client._router.connection(client.leader)._append_stream
                return offsets, stream.supported

        offsets, supported = asyncio.run(run())
        assert offsets == list(range(5))
        assert not supported
        assert fake.total_calls("AppendBatch") == 5
    finally:
        fake.close()
