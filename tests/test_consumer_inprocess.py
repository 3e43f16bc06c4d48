"""Consumer groups on an in-process cluster (``tests/inprocess_cluster.py``: three real RaftNodes
and their services in this process, the Raft log in memory, clients on real gRPC): the Consumer
RPCs end to end, precise errors that change nothing, lock expiry and dead letters (resubmit,
purge and their audit entries), a group's cursor in its status, follower redirects, long-poll
receive, receive-and-delete and the leader's retention sweep. Moved from
``test_consumer_cluster.py``, which keeps what needs node processes (kill -9 of the leader, a
full restart from disk)."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from cluster_checks import status_of
from cluster_harness import wait_until
from inprocess_cluster import InProcessCluster, inprocess_cluster

from quorumlog.client import errors
from quorumlog.client.consumer import GroupStatus, ReceiveMode, StateWrite
from quorumlog.client.sdk import Client
from quorumlog.proto import consumer_pb2, consumer_pb2_grpc

DEADLINE = 30.0
SETTLE = 30.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with inprocess_cluster(tmp_path_factory.mktemp("consumer")) as running:
        yield running


@pytest.fixture
def client(cluster: InProcessCluster) -> Iterator[Client]:
    with Client(cluster.addresses, deadline=DEADLINE, seed=7) as created:
        yield created


def test_receive_settle_and_precise_errors_that_change_nothing(client: Client) -> None:
    client.append("e2e", *[f"m{i}" for i in range(20)])
    client.consumer.create_group("e2e-g", lock_ms=60_000, max_deliveries=5)
    batch = client.consumer.receive("e2e", "e2e-g", max_messages=8)
    assert [m.offset for m in batch.messages] == list(range(8))
    assert [m.data for m in batch.messages[:2]] == [b"m0", b"m1"]
    assert batch.backlog == 20
    result = client.consumer.complete(batch.messages[:5])
    assert result.completed == 5
    before = status_of(client, "e2e")
    with pytest.raises(errors.NotFound, match="session 'nope' not found"):
        client.consumer.receive("nope", "e2e-g")
    with pytest.raises(errors.NotFound, match="group 'nope' not found"):
        client.consumer.receive("e2e", "nope")
    with pytest.raises(errors.InvalidArgument, match="group is empty"):
        client.consumer.receive("e2e", "")
    with pytest.raises(errors.FailedPrecondition, match="stale"):
        client.consumer.complete([dataclasses.replace(batch.messages[5], token=9)])
    with pytest.raises(errors.FailedPrecondition, match="holds no lock"):
        client.consumer.complete(batch.messages[:1])  # settled already
    with pytest.raises(errors.ResourceExhausted, match="session state is"):
        client.consumer.complete(batch.messages[5:6], state=StateWrite(0, b"x" * (300 << 10)))
    with pytest.raises(errors.FailedPrecondition, match="version 0, not 3"):
        client.consumer.complete(batch.messages[5:6], state=StateWrite(3, b"x"))
    assert status_of(client, "e2e") == before  # nothing changed
    done = client.consumer.complete(batch.messages[5:8], state=StateWrite(0, b"s1"))
    assert done.completed == 3 and done.state_version == 1
    assert client.consumer.get_state("e2e").data == b"s1"


def lock_expired(locked_until_ms: int) -> bool:
    """The nodes run in this process, so the leader's clock is ours: the lock has lapsed."""
    return time.time() * 1000 > locked_until_ms + 50


def test_expired_lock_is_refused_and_redelivered_first(client: Client) -> None:
    client.append("exp", "a", "b", "c")
    client.consumer.create_group("exp-g", lock_ms=300, max_deliveries=2)
    first = client.consumer.receive("exp", "exp-g", max_messages=1)
    wait_until(lambda: lock_expired(first.messages[0].locked_until_ms), SETTLE, "lock expiry")
    second = client.consumer.receive("exp", "exp-g", max_messages=2)
    assert [(m.offset, m.delivery_count) for m in second.messages] == [(0, 2), (1, 1)]
    with pytest.raises(errors.FailedPrecondition, match=r"redelivered"):
        client.consumer.complete(first.messages)
    # Nothing is dropped at max deliveries: offset 0 moves to the dead letters on the first
    # receive after its second lock expired.
    wait_until(lambda: lock_expired(second.messages[0].locked_until_ms), SETTLE, "lock expiry")
    third = client.consumer.receive("exp", "exp-g", max_messages=3)
    assert [(m.offset, m.delivery_count) for m in third.messages] == [(1, 2), (2, 1)]
    (letter,) = client.consumer.dead_letters("exp")
    assert (letter.offset, letter.data, letter.delivery_count) == (0, b"a", 2)
    assert "max delivery count 2" in letter.reason
    offsets, remaining = client.consumer.resubmit("exp", [letter.sequence])
    assert client.read("exp", offsets[0]).records[0].data == b"a" and remaining == 0


def test_follower_answers_unavailable_with_the_leader_hint(cluster: InProcessCluster) -> None:
    def hinted() -> bool:
        leader = cluster.wait_leader()
        follower = next(name for name in cluster.nodes if name != leader)
        with grpc.insecure_channel(cluster.nodes[follower].client_addr) as channel:
            stub = consumer_pb2_grpc.ConsumerStub(channel)  # type: ignore[no-untyped-call]
            try:
                stub.Receive(consumer_pb2.ReceiveRequest(session="x", group="y"), timeout=10)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                metadata = dict(error.trailing_metadata() or ())
                return metadata.get("quorumlog-leader-addr") == cluster.nodes[leader].client_addr
        raise AssertionError("a follower served a receive")

    # Polled: right after a leader change a follower may not know the new leader yet.
    wait_until(hinted, SETTLE, "a follower's UNAVAILABLE naming the leader")


def test_long_poll_receive_and_delete_and_the_leaders_sweep(client: Client) -> None:
    client.append("lp", "first")
    client.consumer.create_group("lp-g")
    gone = client.consumer.receive("lp", "lp-g", mode=ReceiveMode.RECEIVE_AND_DELETE)
    assert [m.data for m in gone.messages] == [b"first"] and gone.messages[0].locked_until_ms == 0
    assert status_of_group(client, "lp", "lp-g").backlog == 0  # at-most-once: settled already

    def append_later() -> None:
        with Client(client.addresses, deadline=DEADLINE) as other:
            other.append("lp", "second")

    threading.Timer(0.5, append_later).start()
    waited = client.consumer.receive("lp", "lp-g", wait_ms=20_000)
    assert [m.data for m in waited.messages] == [b"second"]
    # Retention by size is applied by the sweep the leader proposes by itself.
    client.append("lp", *[b"x" * 10 for _ in range(10)])
    client.consumer.configure_session("lp", retention_bytes=30)
    wait_until(lambda: client.describe_session("lp").first_offset == 9, SETTLE,
               "retention trims all but the last 3 messages")
    client.consumer.close_session("lp")
    with pytest.raises(errors.FailedPrecondition, match="closed"):
        client.append("lp", "late")


def _audited(caplog: pytest.LogCaptureFixture, method: str) -> list[dict[str, object]]:
    """The audit entries of ``method`` logged so far (``quorumlog.audit``, one JSON each),
    less a follower's UNAVAILABLE (a call the client then sent on to the leader)."""
    entries = [json.loads(record.getMessage().removeprefix("audit "))
               for record in caplog.records if record.name == "quorumlog.audit"]
    return [entry for entry in entries
            if entry["method"] == method and entry["outcome"] != "UNAVAILABLE"]


def test_purge_dead_letters_removes_them_for_good_and_is_audited(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="quorumlog.audit")
    client.append("purge", "a", "b", "c", "d")
    client.consumer.create_group("purge-g")
    batch = client.consumer.receive("purge", "purge-g", max_messages=3)
    client.consumer.dead_letter(batch.messages, "poison")
    letters = client.consumer.dead_letters("purge")
    assert [letter.sequence for letter in letters] == [0, 1, 2]
    with pytest.raises(errors.NotFound, match="dead letter 9 of session 'purge' not found"):
        client.consumer.purge_dead_letters("purge", [1, 9])
    with pytest.raises(errors.NotFound, match="session 'nope' not found"):
        client.consumer.purge_dead_letters("nope")
    assert client.consumer.dead_letters("purge") == letters  # a refusal removed nothing
    assert client.consumer.purge_dead_letters("purge", [1]) == (1, 2)
    assert [letter.sequence for letter in client.consumer.dead_letters("purge")] == [0, 2]
    (status,) = client.consumer.sessions(session="purge")
    assert status.dead_letters == 2
    assert client.consumer.purge_dead_letters("purge") == (2, 0)
    assert client.consumer.dead_letters("purge") == []
    assert client.describe_session("purge").next_offset == 4  # nothing appended again
    client.append("purge", "e")
    client.consumer.dead_letter(
        client.consumer.receive("purge", "purge-g", max_messages=1).messages, "again")
    offsets, remaining = client.consumer.resubmit("purge")
    assert offsets == [5] and remaining == 0
    # Both calls that change the dead-letter log are audited, refusals included.
    purges = _audited(caplog, "/quorumlog.v1.Consumer/PurgeDeadLetters")
    assert [entry["outcome"] for entry in purges] == ["NOT_FOUND", "NOT_FOUND", "OK", "OK"]
    assert 'session: "purge"' in str(purges[2]["request"])
    assert "sequences: 1" in str(purges[2]["request"])
    resubmits = _audited(caplog, "/quorumlog.v1.Consumer/ResubmitDeadLetters")
    assert [entry["outcome"] for entry in resubmits] == ["OK"]
    assert _audited(caplog, "/quorumlog.v1.Consumer/Receive") == []  # not an audited call


def test_group_status_reports_the_cursor_and_the_first_unsettled_offset(client: Client) -> None:
    client.append("cur", *[f"m{i}" for i in range(6)])
    client.consumer.create_group("cur-g", lock_ms=60_000)
    status = status_of_group(client, "cur", "cur-g")
    assert (status.next_offset, status.first_unsettled, status.backlog) == (0, 0, 6)
    batch = client.consumer.receive("cur", "cur-g", max_messages=4)
    client.consumer.complete([batch.messages[0], batch.messages[2]])
    status = status_of_group(client, "cur", "cur-g")
    assert (status.next_offset, status.first_unsettled, status.backlog) == (4, 1, 4)
    client.consumer.complete([batch.messages[1], batch.messages[3]])
    status = status_of_group(client, "cur", "cur-g")
    assert (status.next_offset, status.first_unsettled, status.backlog) == (4, 4, 2)


def status_of_group(client: Client, session: str, group: str) -> GroupStatus:
    (status,) = client.consumer.sessions(session=session)
    return next(g for g in status.groups if g.group == group)
