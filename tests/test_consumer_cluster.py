"""Consumer groups on three real nodes: cursors, locks, delivery counts, fencing tokens and dead
letters identical after the leader is killed, and after a full restart
(docs/architecture.md#tests). What needs only node logic (the Consumer RPCs end to end,
precise errors, follower redirects, long poll, the retention sweep) runs in-process, in
``test_consumer_inprocess.py``."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from cluster_checks import status_of
from cluster_harness import LocalCluster, running_cluster, wait_until

from quorumlog.client import errors
from quorumlog.client.consumer import Action, Settlement
from quorumlog.client.sdk import Client

pytestmark = pytest.mark.cluster

DEADLINE = 30.0
SETTLE = 30.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("consumer")) as running:
        yield running


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
