"""Consumer groups on three real nodes: the Consumer RPCs end to end, precise errors that change
nothing, follower redirects, and cursors, locks, delivery counts, fencing tokens and dead
letters identical after the leader is killed (docs/architecture.md#tests)."""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from cluster_harness import LocalCluster, running_cluster, wait_until

from quorumlog.client import errors
from quorumlog.client.consumer import Action, GroupStatus, ReceiveMode, Settlement, StateWrite
from quorumlog.client.sdk import Client
from quorumlog.proto import consumer_pb2, consumer_pb2_grpc

pytestmark = pytest.mark.cluster

DEADLINE = 30.0
SETTLE = 30.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("consumer")) as running:
        yield running


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster.addresses, deadline=DEADLINE, seed=7) as created:
        yield created


def status_of(client: Client, session: str) -> object:
    (status,) = client.consumer.sessions(session=session)
    return status


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
    """The nodes run on this host, so the leader's clock is ours: the lock has lapsed."""
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


def test_follower_answers_unavailable_with_the_leader_hint(cluster: LocalCluster) -> None:
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


def test_consumer_state_is_identical_after_the_leader_is_killed(cluster: LocalCluster) -> None:
    with Client(cluster.addresses, deadline=DEADLINE, seed=3) as client:
        client.append("fo", *[f"m{i}" for i in range(10)])
        client.consumer.create_group("fo-g", lock_ms=120_000, max_deliveries=2)
        client.consumer.create_group("fo-h", lock_ms=120_000)
        zombie = client.consumer.accept("fo", "fo-g", "zombie", lease_ms=120_000)
        owned = client.consumer.receive("fo", "fo-g", max_messages=4, token=zombie.token)
        client.consumer.complete(owned.messages[:1])
        client.consumer.abandon(owned.messages[1:2])
        client.consumer.dead_letter(owned.messages[2:3], "bad")
        client.consumer.receive("fo", "fo-h", max_messages=6)
        client.consumer.set_state("fo", "fo-g", b"st", expected_version=0, token=zombie.token)
        before = status_of(client, "fo")
        letters = client.consumer.dead_letters("fo")
        old = cluster.wait_leader()
        cluster.kill(old, signal.SIGKILL)
        cluster.wait_leader(exclude=(old,), timeout=SETTLE)
        assert status_of(client, "fo") == before
        assert client.consumer.dead_letters("fo") == letters
        assert client.consumer.get_state("fo").data == b"st"
        # The lock on offset 3 survived: the owner settles it with its token.
        assert client.consumer.complete(owned.messages[3:4]).completed == 1
        # A new owner after the lease is released: the zombie's late settle is rejected.
        client.consumer.release(zombie)
        successor = client.consumer.accept("fo", "fo-g", "successor")
        assert successor.token == zombie.token + 1
        with pytest.raises(errors.FailedPrecondition, match="stale"):
            client.consumer.settle("fo", "fo-g", [Settlement(4, 1)], token=zombie.token)
        again = client.consumer.receive("fo", "fo-g", max_messages=3, token=successor.token)
        # Abandoned offset 1 first (its second delivery), then new ones.
        assert [(m.offset, m.delivery_count) for m in again.messages] == [(1, 2), (4, 1), (5, 1)]
        client.consumer.settle(
            "fo", "fo-g", [Settlement.of(again.messages[0], Action.ABANDON)],
            token=successor.token,
        )
        assert [d.offset for d in client.consumer.dead_letters("fo")] == [2, 1]
        cluster.start(old)
        wait_until(
            lambda: cluster.status(old).applied_index >= cluster.status(
                cluster.wait_leader()).applied_index,
            SETTLE, "the restarted node catches up",
        )


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


def status_of_group(client: Client, session: str, group: str) -> GroupStatus:
    (status,) = client.consumer.sessions(session=session)
    return next(g for g in status.groups if g.group == group)


def test_state_survives_a_full_restart(cluster: LocalCluster) -> None:
    with Client(cluster.addresses, deadline=DEADLINE) as client:
        client.append("rs", "a", "b")
        client.consumer.create_group("rs-g")
        client.consumer.receive("rs", "rs-g", max_messages=1)
        before = status_of(client, "rs")
    for name in cluster.nodes:
        cluster.kill(name, signal.SIGTERM)
    cluster.start()
    cluster.wait_leader(timeout=SETTLE)
    with Client(cluster.addresses, deadline=DEADLINE) as client:
        assert status_of(client, "rs") == before
