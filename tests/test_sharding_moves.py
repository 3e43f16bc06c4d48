"""Moving shard replicas with the cluster's membership, against real node processes: on a
3-node cluster founded with 3 shards, ``cluster add-node n4`` gives n4 its share of shard
replicas (each moved shard's leader adds n4 as a learner, promotes it once caught up, then
removes the replica it replaces) and ``cluster remove-node n1`` moves n1's replicas to the
others before n1 leaves; appends go on throughout and nothing acknowledged is lost."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from cluster_harness import running_cluster, wait_until
from ops_helpers import cli

from quorumlog.client import Client
from quorumlog.client.retry import RetryPolicy
from quorumlog.proto.sharding import shard_of

pytestmark = pytest.mark.cluster

SHARDS = 3
TIMEOUT = 90.0  # a move is several membership changes; generous on two loaded cores
RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.1)


def _placement(client: Client) -> dict[int, set[str]]:
    """shard -> its placed replicas, for the shards some node knows a leader of."""
    found: dict[int, set[str]] = {}
    for report in client.cluster_status().reachable:
        assert report.status is not None
        for shard in report.status.shards:
            if shard.leader:
                found[shard.shard] = set(shard.replicas)
    return found


def _hosted(address: str) -> set[int]:
    """The shards the node at ``address`` says it hosts (has a role in)."""
    with Client([address], deadline=10) as client:
        for report in client.cluster_status().reachable:
            if report.status is not None and report.status.address == address:
                return {shard.shard for shard in report.status.shards if shard.role}
    return set()


def test_add_and_remove_node_move_shard_replicas_without_loss(tmp_path: Path) -> None:
    sessions = [f"move/{i}" for i in range(24)]
    assert {shard_of(s, SHARDS) for s in sessions} == set(range(SHARDS))
    with running_cluster(tmp_path, 3, ["--init-shards", str(SHARDS)]) as cluster:
        addresses = ",".join(cluster.addresses)
        acked: dict[str, list[bytes]] = {s: [] for s in sessions}
        stop = threading.Event()
        errors: list[BaseException] = []

        def writer() -> None:  # appends throughout both moves, one session at a time
            try:
                with Client(cluster.addresses, deadline=60,
                            retry=RETRY) as client:
                    round_ = 0
                    while not stop.is_set() and round_ < 10_000:
                        for session in sessions:
                            data = f"{round_}".encode()
                            client.append(session, data)
                            acked[session].append(data)
                        round_ += 1
            except BaseException as error:  # reported by the test thread
                errors.append(error)

        with Client(cluster.addresses, deadline=60, retry=RETRY) as client:
            wait_until(lambda: len(_placement(client)) == SHARDS, TIMEOUT, "every shard led")
            thread = threading.Thread(target=writer, name="move-writer")
            thread.start()
            try:
                n4 = cluster.add_member("n4", ["--join", "--init-shards", str(SHARDS)])
                cluster.start("n4")
                started = time.monotonic()
                result = cli("cluster", "add-node", "n4", "--peer-addr", n4.peer_addr,
                             "--client-addr", n4.client_addr, "--cluster", addresses,
                             "--deadline", "120")
                assert result.returncode == 0, result.stderr + cluster.logs()
                print(result.stdout)
                wait_until(lambda: _hosted(n4.client_addr), TIMEOUT, "n4 hosting shards")
                placement = wait_until(
                    lambda: (p := _placement(client)) and len(p) == SHARDS
                    and sum("n4" in replicas for replicas in p.values()) >= 2
                    and all(len(r) == 3 for r in p.values()) and p,
                    TIMEOUT, "n4 holding its share of replicas",
                )
                # ... and the old replicas are gone: every node hosts exactly its placement.
                wait_until(lambda: all(
                    _hosted(node.client_addr) == {
                        shard for shard, replicas in _placement(client).items()
                        if name in replicas}
                    for name, node in cluster.nodes.items()), TIMEOUT, "old replicas closed")
                print(f"add-node n4 with replica moves: {time.monotonic() - started:.1f} s; "
                      f"placement {placement}")

                started = time.monotonic()
                result = cli("cluster", "remove-node", "n1", "--cluster", addresses,
                             "--deadline", "120")
                assert result.returncode == 0, result.stderr + cluster.logs()
                placement = wait_until(
                    lambda: (p := _placement(client)) and len(p) == SHARDS
                    and all("n1" not in r and len(r) == 3 for r in p.values()) and p,
                    TIMEOUT, "n1's replicas moved to the others",
                )
                print(f"remove-node n1 with replica moves: {time.monotonic() - started:.1f} s; "
                      f"placement {placement}")
                # n1 no longer hears a leader of its old replicas and closes them.
                wait_until(lambda: _hosted(cluster.nodes["n1"].client_addr) == set(), TIMEOUT,
                           "n1 to close its moved replicas")
            finally:
                stop.set()
                thread.join(120)
            assert not errors, errors
            assert not thread.is_alive()
        # Every acknowledged append is there, once, in order, read through the survivors.
        survivors = [node.client_addr for name, node in cluster.nodes.items() if name != "n1"]
        with Client(survivors, deadline=60, retry=RETRY) as client:
            for session in sessions:
                records = []
                offset = 0
                while True:
                    page = client.read(session, from_offset=offset)
                    records += [r.data for r in page.records]
                    if not page.records:
                        break
                    offset = page.records[-1].offset + 1
                assert records == acked[session], session
            assert sum(len(v) for v in acked.values()) > len(sessions)

