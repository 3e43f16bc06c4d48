"""The SDK against a real sharded cluster: ``quorumlog cluster up --shards 6`` (three node
processes), appends to sessions of every shard through the async and the blocking client,
everything read back, listed, accepted and consumed shard by shard and counted where the hash
says it lives; and a frozen node leading shards left within one status probe."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from cluster_up_process import addresses, cluster_up, free_base_port, up_command

from quorumlog.client.retry import RetryPolicy
from quorumlog.client.sdk import AsyncClient, Client
from quorumlog.proto.sharding import shard_of

pytestmark = pytest.mark.cluster

SHARDS = 6
DEADLINE = 30.0  # generous: two shared cores
RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.1)


def test_appends_to_sessions_of_every_shard_are_read_back(tmp_path: Path) -> None:
    base = free_base_port()
    sessions = [f"orders/{i}" for i in range(60)]
    expected = Counter(shard_of(name, SHARDS) for name in sessions)
    assert set(expected) == set(range(SHARDS))

    with cluster_up(up_command(tmp_path / "data", base, "--shards", str(SHARDS))) as up:
        up.wait_ready(90)
        cluster = addresses(base)

        async def main() -> None:
            async with AsyncClient(cluster, deadline=DEADLINE, retry=RETRY) as client:
                # First: a shard learns a group from its leader node's replica of the meta
                # group, which may apply CreateGroup a moment after the meta leader answered.
                await client.consumer.create_group("billing")
                for round_ in range(3):
                    results = await asyncio.gather(
                        *(client.append(name, f"{name}#{round_}") for name in sessions)
                    )
                    assert [r.first_offset for r in results] == [round_] * len(sessions)
                router = client._router
                assert router.shards.count == SHARDS
                assert all(router.leader_of(k) for k in range(SHARDS))
                for name in sessions:
                    page = await client.read(name)
                    assert [r.data for r in page.records] == [
                        f"{name}#{r}".encode() for r in range(3)
                    ]
                listed = await client.list_sessions("orders/")
                assert [info.session for info in listed] == sorted(sessions)
                first = await client.list_sessions("orders/", limit=7)
                rest = await client.list_sessions("orders/", start_after=first[-1].session)
                assert [i.session for i in first + rest] == sorted(sessions)
                # accept-next takes its turn on every shard; consuming goes to the shard
                leases = [await client.consumer.accept_next("billing", f"c{i}")
                          for i in range(SHARDS)]
                owned = [lease.session for lease in leases if lease is not None]
                assert {shard_of(name, SHARDS) for name in owned} == set(range(SHARDS))
                for lease in leases:
                    assert lease is not None
                    batch = await client.consumer.receive(
                        lease.session, "billing", token=lease.token
                    )
                    assert [m.data for m in batch.messages] == [
                        f"{lease.session}#{r}".encode() for r in range(3)
                    ]
                    await client.consumer.complete(batch.messages)
                    await client.consumer.release(lease)
                # the consumer side of every shard is listed, by name, each by its leader
                statuses = await client.consumer.sessions("orders/")
                assert [status.session for status in statuses] == sorted(sessions)
                by_name = {status.session: status for status in statuses}
                for name in owned:
                    groups = {group.group: group for group in by_name[name].groups}
                    assert groups["billing"].backlog == 0
                    assert groups["billing"].next_offset == 3

        asyncio.run(main())

        with Client(cluster, deadline=DEADLINE, retry=RETRY) as client:
            for name in sessions[:12]:
                assert client.append(name, b"sync").first_offset == 3
                assert client.read(name, from_offset=3).records[0].data == b"sync"
            # each shard's replicas hold exactly the sessions the hash sends there
            stored: Counter[int] = Counter()
            for report in client.cluster_status().reachable:
                assert report.status is not None and report.status.shard_count == SHARDS
                for shard in report.status.shards:
                    stored[shard.shard] = max(stored[shard.shard], shard.sessions)
            assert dict(stored) == dict(expected)


def test_a_frozen_node_leading_shards_is_left_within_seconds(tmp_path: Path) -> None:
    """SIGSTOP the node leading shards the client has been writing to: appends to every
    shard complete again well within one 3 s attempt timeout (the client gives the frozen
    leader one status probe), each exactly once."""
    base = free_base_port()
    sessions = [f"frozen/{i}" for i in range(36)]
    assert {shard_of(name, SHARDS) for name in sessions} == set(range(SHARDS))

    with cluster_up(up_command(tmp_path / "data", base, "--shards", str(SHARDS))) as up:
        _, pids = up.wait_ready(90)
        names = {f"127.0.0.1:{base + i}": f"n{i + 1}" for i in range(3)}

        async def main() -> list[float]:
            async with AsyncClient(addresses(base), deadline=DEADLINE, retry=RETRY) as client:
                await asyncio.gather(*(client.append(name, b"0") for name in sessions))
                leaders = Counter(client._router.leader_of(k) for k in range(SHARDS))
                victim = names[str(leaders.most_common(1)[0][0])]
                os.kill(pids[victim], signal.SIGSTOP)
                try:
                    loop = asyncio.get_running_loop()
                    started = loop.time()

                    async def timed(name: str) -> float:
                        assert (await client.append(name, b"1")).first_offset == 1
                        return loop.time() - started

                    took = await asyncio.gather(*(timed(name) for name in sessions))
                finally:
                    os.kill(pids[victim], signal.SIGCONT)
                for name in sessions:
                    page = await client.read(name)
                    assert [r.data for r in page.records] == [b"0", b"1"]
                return took

        took = asyncio.run(main())
        assert max(took) < 3.0, sorted(took)
