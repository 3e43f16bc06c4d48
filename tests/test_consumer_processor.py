"""Session processors (``quorumlog.client.processor``) against three real nodes: competing
consumers over many sessions never process one session concurrently and lose nothing; a lease
lost to another consumer is reported and the zombie's settle changes nothing; the blocking
processor writes state atomically with its settles."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Iterator

import pytest
from cluster_harness import LocalCluster, running_cluster, wait_until
from waiting import eventually

from quorumlog.client import errors
from quorumlog.client.consumer import Lease, ReceivedMessage
from quorumlog.client.processor import AsyncSessionProcessor, SessionContext, SessionProcessor
from quorumlog.client.sdk import AsyncClient, Client

pytestmark = pytest.mark.cluster

DEADLINE = 30.0
SETTLE = 60.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("processor")) as running:
        yield running


def test_competing_consumers_never_share_a_session_and_lose_nothing(
    cluster: LocalCluster,
) -> None:
    sessions = [f"pool-{i:02d}" for i in range(12)]
    per_session = 25
    active: set[str] = set()
    overlaps: list[str] = []
    seen: dict[str, list[int]] = defaultdict(list)

    async def main() -> None:
        async with AsyncClient(cluster.addresses, deadline=DEADLINE) as client:
            await client.consumer.create_group("pool", lock_ms=30_000)
            for session in sessions:
                await client.append(session, *[f"{session}:{i}" for i in range(per_session)])

            async def handle(messages: list[ReceivedMessage], context: SessionContext) -> None:
                if context.session in active:
                    overlaps.append(context.session)
                active.add(context.session)
                await asyncio.sleep(0.01)  # let other slots run meanwhile
                seen[context.session].extend(m.offset for m in messages)
                active.discard(context.session)

            clients = [AsyncClient(cluster.addresses, deadline=DEADLINE) for _ in range(3)]
            processors = [
                AsyncSessionProcessor(c, "pool", handle, max_sessions=3, prefix="pool-",
                                      max_messages=7, name=f"p{n}")
                for n, c in enumerate(clients)
            ]
            for processor in processors:
                processor.start()
            await eventually(
                lambda: sum(p.processed for p in processors) >= len(sessions) * per_session,
                SETTLE, "every message processed")
            for processor in processors:
                await processor.stop()
            for c in clients:
                await c.close()
            status = await client.consumer.sessions("pool-")
            assert all(g.backlog == 0 and not g.owner for s in status for g in s.groups
                       if g.group == "pool")

    asyncio.run(main())
    assert not overlaps
    for session in sessions:
        assert seen[session] == list(range(per_session)), session  # in order, once each


def test_lost_lease_is_reported_and_the_zombie_settle_is_rejected(cluster: LocalCluster) -> None:
    lost: list[str] = []
    handled = threading.Event()

    async def main() -> None:
        async with AsyncClient(cluster.addresses, deadline=DEADLINE) as client:
            await client.consumer.create_group("lost", lock_ms=60_000)
            await client.append("lost-1", "a", "b")

            async def slow(messages: list[ReceivedMessage], context: SessionContext) -> None:
                handled.set()
                # Outlive the lease (never renewed here) until another consumer owns it.
                async def taken_over() -> bool:
                    status = await client.consumer.sessions(session="lost-1")
                    return status[0].groups[0].owner not in ("", context.lease.consumer)

                await eventually(taken_over, SETTLE, "another consumer owning the session")

            zombie = AsyncSessionProcessor(
                client, "lost", slow, max_sessions=1, lease_ms=1_500, renew_ms=600_000,
                prefix="lost-", on_lease_lost=lambda context, error: lost.append(str(error)),
            )
            zombie.start()
            await eventually(handled.is_set, SETTLE, "the zombie handling its messages")
            leases: list[Lease] = []

            async def accepted() -> bool:
                try:
                    leases.append(await client.consumer.accept("lost-1", "lost", "successor"))
                except errors.FailedPrecondition:
                    return False  # the zombie's lease has not lapsed yet
                return True

            await eventually(accepted, SETTLE, "the successor's lease")
            lease = leases[0]
            await zombie.stop()
            assert lost and "stale" in lost[0]
            again = await client.consumer.receive("lost-1", "lost", token=lease.token)
            assert [(m.offset, m.delivery_count) for m in again.messages] == [(0, 2), (1, 2)]
            assert zombie.processed == 0

    asyncio.run(main())


def test_blocking_processor_writes_state_with_each_settle(cluster: LocalCluster) -> None:
    with Client(cluster.addresses, deadline=DEADLINE) as client:
        client.consumer.create_group("sync")
        client.append("sync-1", *[str(i) for i in range(10)])

        def handle(messages: list[ReceivedMessage], context: SessionContext) -> None:
            total = int(context.state or b"0") + sum(int(m.data) for m in messages)
            context.set_state(str(total).encode())

        with SessionProcessor(client, "sync", handle, max_sessions=2, prefix="sync-",
                              max_messages=3) as processor:
            wait_until(lambda: processor.processed == 10, SETTLE, "ten messages processed")
        state = client.consumer.get_state("sync-1")
        assert state.data == b"45" and state.version == 4  # 4 batches of at most 3


def test_leases_and_locks_are_renewed_while_a_slow_handler_runs(cluster: LocalCluster) -> None:
    lost: list[str] = []

    async def main() -> None:
        async with AsyncClient(cluster.addresses, deadline=DEADLINE) as client:
            await client.consumer.create_group("slow", lock_ms=1_000)
            await client.append("slow-1", "a", "b")
            tokens: list[int] = []

            async def slow(messages: list[ReceivedMessage], context: SessionContext) -> None:
                tokens.append(context.token)
                # Outlive both the lease (1.5 s) and the locks (1 s) several times over: only
                # the automatic renewals (every 0.5 s) keep them.
                end = asyncio.get_running_loop().time() + 4.0
                while asyncio.get_running_loop().time() < end:
                    await asyncio.sleep(0.1)  # the slow work

            processor = AsyncSessionProcessor(
                client, "slow", slow, max_sessions=1, lease_ms=1_500, prefix="slow-",
                on_lease_lost=lambda context, error: lost.append(str(error)),
            )
            processor.start()
            await eventually(lambda: processor.processed >= 2 or bool(lost), SETTLE,
                             "both messages processed")
            assert not lost, lost
            await processor.stop()
            assert len(set(tokens)) == 1  # one lease throughout

    asyncio.run(main())
    assert not lost


def test_processors_consume_everything_across_a_leader_kill(cluster: LocalCluster) -> None:
    sessions = [f"fo-{i}" for i in range(6)]
    per_session = 40
    active: set[str] = set()
    overlaps: list[str] = []
    seen: dict[str, set[int]] = defaultdict(set)
    firsts: dict[str, list[int]] = defaultdict(list)  # offsets of first deliveries, in order

    async def main() -> None:
        async with AsyncClient(cluster.addresses, deadline=DEADLINE) as client:
            await client.consumer.create_group("fo-g")
            for session in sessions:
                await client.append(session, *[str(i) for i in range(per_session)])

            async def handle(messages: list[ReceivedMessage], context: SessionContext) -> None:
                if context.session in active:
                    overlaps.append(context.session)
                active.add(context.session)
                await asyncio.sleep(0.05)  # the work, long enough to span the failover
                for message in messages:
                    seen[context.session].add(message.offset)
                    if message.delivery_count == 1:
                        firsts[context.session].append(message.offset)
                active.discard(context.session)

            processors = [
                AsyncSessionProcessor(client, "fo-g", handle, max_sessions=3, prefix="fo-",
                                      max_messages=5, lease_ms=3_000, name=f"fo{n}")
                for n in range(2)
            ]
            for processor in processors:
                processor.start()
            await eventually(lambda: sum(len(offsets) for offsets in seen.values()) >= 40,
                             SETTLE, "40 messages handled before the kill")
            old = await asyncio.to_thread(cluster.wait_leader)
            await asyncio.to_thread(cluster.kill, old)

            async def drained() -> bool:
                status = await client.consumer.sessions("fo-")
                return all(g.backlog == 0 for s in status for g in s.groups if g.group == "fo-g")

            await eventually(drained, SETTLE, "no backlog left after the failover")
            for processor in processors:
                await processor.stop()
            await asyncio.to_thread(cluster.start, old)

    asyncio.run(main())
    assert not overlaps
    for session in sessions:
        assert seen[session] == set(range(per_session)), session  # nothing lost
        assert firsts[session] == sorted(firsts[session]), session  # first deliveries in order
