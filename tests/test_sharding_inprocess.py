"""A sharded cluster in this process (``InProcessCluster(shards=4)``: three nodes, each
hosting the meta group and the four data groups on one ``GroupHost``, placed by the meta
leader through the same ``ShardGroups`` as ``NodeServer``): routing by the session hash,
AppendBatch split by shard with per-append hints, listings merged across shards, consumer
groups carried from the meta group to each shard, and a partition of the node leading the
most shards that loses nothing acknowledged."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cluster_harness import sessions_in_every_shard, wait_until
from inprocess_cluster import InProcessCluster, inprocess_cluster
from prometheus_client import generate_latest

from quorumlog.client.retry import RetryPolicy
from quorumlog.client.sdk import AsyncClient
from quorumlog.node.process.metrics import NodeMetricsExporter
from quorumlog.node.replication.raft_node import RaftNode
from quorumlog.proto import quorumlog_pb2 as pb
from quorumlog.proto import quorumlog_pb2_grpc
from quorumlog.proto.sharding import shard_of

SHARDS = 4
DEADLINE = 30.0
SETTLE = 60.0
RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.1)

# Each test starts its own 3-node, 4-shard cluster in this process (about 4 s): make test runs
# them, make test-fast does not.
pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[InProcessCluster]:
    with inprocess_cluster(tmp_path, shards=SHARDS) as running:
        wait_until(lambda: len(_leaders(running)) == SHARDS, SETTLE, "a leader per shard")
        yield running


def _leaders(cluster: InProcessCluster) -> dict[int, str]:
    """shard -> the name of the node that says it leads it."""
    leaders: dict[int, str] = {}
    for name in cluster.nodes:
        for shard in cluster.status(name).shards:
            if shard.role == "leader":
                leaders[shard.shard] = name
    return leaders


def _sessions(prefix: str, per_shard: int = 3) -> list[str]:
    """Session names, ``per_shard`` in every shard."""
    return sessions_in_every_shard(prefix, SHARDS, per_shard)


def test_sessions_live_in_their_hash_shard_and_read_back_through_any_node(
    cluster: InProcessCluster,
) -> None:
    sessions = _sessions("route")

    async def main() -> None:
        async with AsyncClient(cluster.addresses, deadline=DEADLINE, retry=RETRY) as client:
            for round_ in range(3):
                await asyncio.gather(*(client.append(s, b"%d" % round_) for s in sessions))
            for session in sessions:
                page = await client.read(session)
                assert [r.data for r in page.records] == [b"0", b"1", b"2"]

    asyncio.run(main())
    # Each shard's replicas store exactly the sessions the hash sends there.
    expected = Counter(shard_of(s, SHARDS) for s in sessions)
    status = cluster.status("n1")
    assert status.shard_count == SHARDS
    assert {shard.shard: shard.sessions for shard in status.shards} == dict(expected)
    # A client that knows nothing of shards gets there by following the leader hint.
    leaders = _leaders(cluster)
    shard = 0
    follower = next(name for name in cluster.nodes if name != leaders[shard])
    session = next(s for s in sessions if shard_of(s, SHARDS) == shard)
    with grpc.insecure_channel(cluster.nodes[follower].client_addr) as channel:
        stub = quorumlog_pb2_grpc.QuorumLogStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as refused:
            stub.Append(pb.AppendRequest(session=session, messages=[b"x"]), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        hint = dict(refused.value.trailing_metadata() or ())
        assert hint.get("quorumlog-leader-addr") == cluster.nodes[leaders[shard]].client_addr


def test_append_batch_over_shards_answers_per_append_and_points_at_each_leader(
    cluster: InProcessCluster,
) -> None:
    sessions = _sessions("batch", per_shard=2)
    leaders = _leaders(cluster)
    node = Counter(leaders.values()).most_common(1)[0][0]
    led = {shard for shard, name in leaders.items() if name == node}
    assert led != set(range(SHARDS))  # three nodes, four shards: nobody leads all
    with grpc.insecure_channel(cluster.nodes[node].client_addr) as channel:
        stub = quorumlog_pb2_grpc.QuorumLogStub(channel)  # type: ignore[no-untyped-call]
        request = pb.AppendBatchRequest(appends=[
            pb.AppendRequest(session=s, messages=[b"m"], producer_id="p-" + s, sequence=0)
            for s in sessions
        ])
        answer = stub.AppendBatch(request, timeout=20)
    for session, outcome in zip(sessions, answer.outcomes, strict=True):
        shard = shard_of(session, SHARDS)
        if shard in led:
            assert outcome.code == 0 and outcome.result.first_offset == 0, session
        else:
            assert outcome.code == grpc.StatusCode.UNAVAILABLE.value[0], session
            assert outcome.shard == shard
            assert outcome.leader_addr == cluster.nodes[leaders[shard]].client_addr
    # Resent where the outcomes point, the refused ones commit; the others are duplicates.
    for session, outcome in zip(sessions, answer.outcomes, strict=True):
        address = outcome.leader_addr or cluster.nodes[node].client_addr
        with grpc.insecure_channel(address) as channel:
            stub = quorumlog_pb2_grpc.QuorumLogStub(channel)  # type: ignore[no-untyped-call]
            again = stub.Append(
                pb.AppendRequest(session=session, messages=[b"m"], producer_id="p-" + session,
                                 sequence=0), timeout=20)
            assert again.first_offset == 0 and again.duplicate == (outcome.code == 0)


def test_listings_merge_shards_and_consumer_groups_reach_every_shard(
    cluster: InProcessCluster,
) -> None:
    sessions = _sessions("list")

    async def main() -> None:
        async with AsyncClient(cluster.addresses, deadline=DEADLINE, retry=RETRY) as client:
            await asyncio.gather(*(client.append(s, b"work") for s in sessions))
            listed = await client.list_sessions("list/")
            assert [info.session for info in listed] == sorted(sessions, key=str.encode)
            # One group, created once (in the meta group), serves sessions of every shard.
            await client.consumer.create_group("workers", lock_ms=30_000)
            for session in sessions:
                received = await client.consumer.receive(session, "workers")
                assert [m.data for m in received.messages] == [b"work"], session

    asyncio.run(main())
    # A stale (follower) listing on one node merges every shard it hosts, paged by name.
    with grpc.insecure_channel(cluster.nodes["n2"].client_addr) as channel:
        stub = quorumlog_pb2_grpc.QuorumLogStub(channel)  # type: ignore[no-untyped-call]
        names: list[str] = []
        start_after = ""
        while True:
            page = stub.ListSessions(pb.ListSessionsRequest(
                prefix="list/", limit=5, start_after=start_after, consistency=pb.FOLLOWER,
            ), timeout=10)
            names += [info.session for info in page.sessions]
            if not page.truncated:
                break
            start_after = page.sessions[-1].session
    assert names == sorted(sessions, key=str.encode)


def test_a_partitioned_node_leading_shards_loses_nothing_acknowledged(
    cluster: InProcessCluster,
) -> None:
    sessions = _sessions("cut")
    leaders = _leaders(cluster)
    victim = Counter(leaders.values()).most_common(1)[0][0]
    others = [name for name in cluster.nodes if name != victim]

    async def write(client: AsyncClient, label: bytes) -> None:
        await asyncio.gather(*(client.append(s, label) for s in sessions))

    async def main() -> None:
        async with AsyncClient(cluster.addresses, deadline=DEADLINE, retry=RETRY) as client:
            await write(client, b"before")
            cluster.partition(victim)
            await write(client, b"during")  # every shard elects around the victim
            cluster.heal_all()
            await write(client, b"after")
            for session in sessions:
                page = await client.read(session)
                assert [r.data for r in page.records] == [b"before", b"during", b"after"]

    asyncio.run(main())
    wait_until(lambda: len(_leaders(cluster)) == SHARDS, SETTLE, "every shard led after healing")
    assert set(_leaders(cluster).values()) <= {victim, *others}


def test_metrics_carry_a_shard_label_per_hosted_group(cluster: InProcessCluster) -> None:


    node = cluster.nodes["n1"]
    assert node.raft is not None and node.groups is not None and node.host is not None

    def labelled() -> list[tuple[str, RaftNode]]:
        assert node.raft is not None and node.groups is not None and node.host is not None
        hosted = [("meta", node.raft)]
        for local in node.groups.local.values():
            group = node.host.get(local.group)
            assert group is not None
            hosted.append((str(local.shard), group))
        return hosted

    async def scrape() -> str:
        exporter = NodeMetricsExporter("n1", lambda: node.raft, labelled)
        return generate_latest(exporter.registry).decode()

    def consistent() -> str | None:
        """A scrape taken while no leadership moved (the balancer may move one)."""
        before = _leaders(cluster)
        text = cluster.call(scrape())
        return text if len(before) == SHARDS and _leaders(cluster) == before else None

    text = wait_until(consistent, SETTLE, "a scrape between leadership moves")
    leaders = _leaders(cluster)
    for shard in range(SHARDS):
        led = "1.0" if leaders[shard] == "n1" else "0.0"
        assert (f'quorumlog_raft_is_leader{{group="{shard + 1}",node="n1",shard="{shard}"}} '
                f"{led}") in text, shard
    assert 'quorumlog_raft_term{group="0",node="n1",shard="meta"}' in text
