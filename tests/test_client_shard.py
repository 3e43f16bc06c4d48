"""The SDK's shard routing against a fake sharded cluster (grpc.aio servers on their own loop).

The fake keeps one log of every session; which node may serve a session is decided by the
session's shard (``quorumlog.proto.sharding.shard_of``) and the fake's shard -> leader table,
exactly as the real node refuses: UNAVAILABLE with the leader hint in trailing metadata, or,
inside an AppendBatch that the node partly leads, a per-append outcome UNAVAILABLE carrying
``leader_id``, ``leader_addr`` and ``shard``. ClusterStatus reports ``shard_count``, the
members' client addresses and a ShardStatus per shard (leaders left out on request, so the
client has to follow hints). A node can be made silent (every call hangs, as under SIGSTOP).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import grpc
import pytest
from quorumlog_fake import FakeCluster

from quorumlog.client.retry import RetryPolicy
from quorumlog.client.sdk import AsyncClient, Client
from quorumlog.client.shards import META, ShardMap
from quorumlog.proto import consumer_pb2 as cpb
from quorumlog.proto import consumer_pb2_grpc, quorumlog_pb2_grpc
from quorumlog.proto import quorumlog_pb2 as pb
from quorumlog.proto.sharding import shard_of

T = TypeVar("T")

FAST_RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, attempt_timeout=5.0)
DEADLINE = 20.0  # generous: the suite shares two cores with CPU-heavy simulations
LIST_PAGE = 2  # small, so the client must follow `truncated` pages within each shard


def sessions_of(shard: int, count: int, how_many: int, prefix: str = "s") -> list[str]:
    """``how_many`` session names that hash to ``shard`` of ``count``."""
    names: list[str] = []
    number = 0
    while len(names) < how_many:
        name = f"{prefix}{number}"
        if shard_of(name, count) == shard:
            names.append(name)
        number += 1
    return names


class ShardedFake:
    """``size`` nodes n1..nN and ``shards`` shards; shard k is led by n(k mod size + 1)."""

    def __init__(self, size: int = 3, shards: int = 4) -> None:
        self.shard_count = shards
        self.ids = [f"n{i + 1}" for i in range(size)]
        self.leaders: dict[int, str] = {k: self.ids[k % size] for k in range(shards)}
        self.status_names_leaders = True  # ShardStatus.leader/leader_address filled
        self.status_fails = 0  # next N ClusterStatus calls: UNAVAILABLE
        self.log: dict[str, list[bytes]] = {}
        self.dedup: dict[tuple[str, str, int], int] = {}
        self.available: set[str] = set()  # sessions accept-next may hand out
        #: sessions whose next append is applied but answered UNAVAILABLE with no hint
        self.unknown_once: set[str] = set()
        self.calls: Counter[tuple[str, str]] = Counter()  # (node, method)
        #: (node, session, producer, sequence, code) of every append that reached a node
        self.arrivals: list[tuple[str, str, str, int, int]] = []
        self.batches: list[tuple[str, list[str]]] = []  # (node, sessions) per AppendBatch
        self.list_requests: list[tuple[str, int | None, str]] = []  # node, shard, start_after
        self.accept_requests: list[tuple[str, int | None]] = []
        self.addresses: dict[str, str] = {}
        self._silent: dict[str, asyncio.Event] = {}
        self._servers: list[grpc.aio.Server] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._run(self._start())

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    async def _start(self) -> None:
        for node in self.ids:
            server = grpc.aio.server()
            quorumlog_pb2_grpc.add_QuorumLogServicer_to_server(  # type: ignore[no-untyped-call]
                _Node(self, node), server
            )
            consumer_pb2_grpc.add_ConsumerServicer_to_server(  # type: ignore[no-untyped-call]
                _Consumer(self, node), server
            )
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            self._servers.append(server)
            self.addresses[node] = f"127.0.0.1:{port}"

    def close(self) -> None:
        async def stop() -> None:
            for event in self._silent.values():
                event.set()
            for server in self._servers:
                await server.stop(None)

        self._run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    @property
    def all_addresses(self) -> str:
        return ",".join(self.addresses[node] for node in self.ids)

    def silence(self, node: str) -> None:
        async def make() -> None:
            self._silent[node] = asyncio.Event()

        self._run(make())

    def resume(self, node: str) -> None:
        async def wake() -> None:
            event = self._silent.pop(node, None)
            if event is not None:
                event.set()

        self._run(wake())

    async def gate(self, node: str) -> None:
        event = self._silent.get(node)
        if event is not None:
            await event.wait()

    def shard_of(self, session: str) -> int:
        return shard_of(session, self.shard_count)

    def hint(self, shard: int) -> tuple[tuple[str, str], ...]:
        leader = self.leaders[shard]
        return (("quorumlog-leader-id", leader),
                ("quorumlog-leader-addr", self.addresses[leader]))

    def append(self, request: pb.AppendRequest) -> pb.AppendResponse:
        key = (request.session, request.producer_id, request.sequence)
        if key in self.dedup:
            return pb.AppendResponse(session=request.session, first_offset=self.dedup[key],
                                     count=len(request.messages), duplicate=True)
        records = self.log.setdefault(request.session, [])
        first = len(records)
        for i, message in enumerate(request.messages):
            self.dedup[(request.session, request.producer_id, request.sequence + i)] = first + i
            records.append(message)
        return pb.AppendResponse(session=request.session, first_offset=first,
                                 count=len(request.messages))

    def info(self, session: str) -> pb.SessionInfo:
        records = self.log[session]
        return pb.SessionInfo(session=session, next_offset=len(records), count=len(records))


class _Node(quorumlog_pb2_grpc.QuorumLogServicer):
    def __init__(self, fake: ShardedFake, node: str) -> None:
        self.fake = fake
        self.node = node

    async def _enter(self, method: str) -> None:
        self.fake.calls[(self.node, method)] += 1
        await self.fake.gate(self.node)

    async def _lead(self, shard: int, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if self.fake.leaders[shard] != self.node:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.node} does not lead "
                                f"shard {shard}", trailing_metadata=self.fake.hint(shard))

    async def ClusterStatus(
        self, request: pb.ClusterStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.NodeStatus:
        await self._enter("ClusterStatus")
        fake = self.fake
        if fake.status_fails > 0:
            fake.status_fails -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "injected status failure")
        shards = []
        for shard in range(fake.shard_count):
            leader = fake.leaders[shard] if fake.status_names_leaders else ""
            shards.append(pb.ShardStatus(
                shard=shard, group=shard + 1, replicas=[leader or fake.ids[0], *fake.ids],
                leader=leader, leader_address=fake.addresses[leader] if leader else "",
            ))
        return pb.NodeStatus(
            id=self.node, address=fake.addresses[self.node], role="follower",
            members=[pb.Member(id=n, client_address=a) for n, a in fake.addresses.items()],
            shard_count=fake.shard_count, shards=shards,
        )

    async def AppendBatch(
        self, request: pb.AppendBatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AppendBatchResponse:
        await self._enter("AppendBatch")
        fake = self.fake
        fake.batches.append((self.node, [a.session for a in request.appends]))
        shards = [fake.shard_of(a.session) for a in request.appends]
        if all(fake.leaders[shard] != self.node for shard in shards):
            await self._lead(shards[0], context)  # leads nothing of the batch: whole call
        outcomes = []
        for append, shard in zip(request.appends, shards, strict=True):
            leader = fake.leaders[shard]
            if leader == self.node and append.session in fake.unknown_once:
                fake.unknown_once.discard(append.session)
                fake.append(append)
                outcome = pb.AppendOutcome(code=grpc.StatusCode.UNAVAILABLE.value[0],
                                           message="outcome unknown", shard=shard)
            elif leader == self.node:
                outcome = pb.AppendOutcome(result=fake.append(append))
            else:
                outcome = pb.AppendOutcome(
                    code=grpc.StatusCode.UNAVAILABLE.value[0], message="not this shard's leader",
                    leader_id=leader, leader_addr=fake.addresses[leader], shard=shard,
                )
            fake.arrivals.append((self.node, append.session, append.producer_id,
                                  append.sequence, outcome.code))
            outcomes.append(outcome)
        return pb.AppendBatchResponse(outcomes=outcomes)

    async def Read(
        self, request: pb.ReadRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReadResponse:
        await self._enter("Read")
        await self._lead(self.fake.shard_of(request.session), context)
        records = self.fake.log.get(request.session, [])
        return pb.ReadResponse(
            session=request.session, next_offset=len(records), end_offset=len(records),
            records=[pb.Record(offset=i, data=d) for i, d in enumerate(records)
                     if i >= request.from_offset],
        )

    async def Subscribe(
        self, request: pb.SubscribeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ReadResponse]:
        await self._enter("Subscribe")
        await self._lead(self.fake.shard_of(request.session), context)
        position = request.from_offset
        while True:
            await self.fake.gate(self.node)  # a silent node sends nothing more
            records = self.fake.log.get(request.session, [])
            if len(records) > position:
                yield pb.ReadResponse(session=request.session, next_offset=len(records), records=[
                    pb.Record(offset=i, data=records[i]) for i in range(position, len(records))
                ])
                position = len(records)
            await asyncio.sleep(0.01)  # polling interval of the fake's tail

    async def DescribeSession(
        self, request: pb.DescribeSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SessionInfo:
        await self._enter("DescribeSession")
        await self._lead(self.fake.shard_of(request.session), context)
        if request.session not in self.fake.log:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"session {request.session!r}")
        return self.fake.info(request.session)

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListSessionsResponse:
        await self._enter("ListSessions")
        fake = self.fake
        shard = request.shard if request.HasField("shard") else None
        fake.list_requests.append((self.node, shard, request.start_after))
        if shard is not None:
            await self._lead(shard, context)
        names = sorted(
            name for name in fake.log
            if name.startswith(request.prefix) and name > request.start_after
            and (shard is None or fake.shard_of(name) == shard)
        )
        page = names[: min(request.limit or LIST_PAGE, LIST_PAGE)]
        return pb.ListSessionsResponse(
            sessions=[fake.info(name) for name in page], truncated=len(names) > len(page)
        )


class _Consumer(consumer_pb2_grpc.ConsumerServicer):
    def __init__(self, fake: ShardedFake, node: str) -> None:
        self.fake = fake
        self.node = node

    async def AcceptSession(
        self, request: cpb.AcceptSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> cpb.Lease:
        fake = self.fake
        fake.calls[(self.node, "AcceptSession")] += 1
        if request.session:
            shard: int | None = fake.shard_of(request.session)
        else:
            shard = request.shard if request.HasField("shard") else None
            fake.accept_requests.append((self.node, shard))
        if shard is not None and fake.leaders[shard] != self.node:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "not this shard's leader",
                                trailing_metadata=fake.hint(shard))
        if request.session:
            return cpb.Lease(session=request.session, group=request.group, token=1)
        for name in sorted(fake.available):
            if shard is None or fake.shard_of(name) == shard:
                fake.available.discard(name)
                return cpb.Lease(session=name, group=request.group, token=1)
        return cpb.Lease()


@pytest.fixture
def fake() -> Iterator[ShardedFake]:
    cluster = ShardedFake(3, 4)
    try:
        yield cluster
    finally:
        cluster.close()


def client_for(addresses: str, **kwargs: Any) -> AsyncClient:
    options: dict[str, Any] = {"deadline": DEADLINE, "retry": FAST_RETRY, "seed": 7}
    options.update(kwargs)
    return AsyncClient(addresses, **options)


async def append_all(client: AsyncClient, sessions: list[str], tag: str) -> None:
    results = await asyncio.gather(*(client.append(name, f"{name}-{tag}") for name in sessions))
    assert all(result.count == 1 for result in results)


# -- the map ---------------------------------------------------------------------------------


def test_shard_map_from_status_names_addresses_and_one_shard_routes_to_meta() -> None:
    status = pb.NodeStatus(
        id="n1", address="h:1", leader="n2", shard_count=3,
        members=[pb.Member(id="n1", client_address="h:1"),
                 pb.Member(id="n2", client_address="h:2")],
        shards=[pb.ShardStatus(shard=0, replicas=["n2", "n1", "n9"], leader="n2"),
                pb.ShardStatus(shard=1, replicas=["n1"], leader_address="h:7"),
                pb.ShardStatus(shard=9, replicas=["n1"])],  # out of range: ignored
    )
    shards = ShardMap.from_status(status)
    assert (shards.count, shards.meta_leader) == (3, "h:2")
    assert shards.leaders == {0: "h:2", 1: "h:7"}
    assert shards.replicas == {0: ("h:2", "h:1"), 1: ("h:1",)}  # unknown n9 left out
    assert shards.key_of("orders/42") == shard_of("orders/42", 3)
    # an old server (shard_count 0) and a one-shard cluster: one key for everything
    for count in (0, 1):
        single = ShardMap.from_status(pb.NodeStatus(shard_count=count, leader="n2"))
        assert single.key_of("orders/42") == META and not single.sharded


# -- routing ---------------------------------------------------------------------------------


def test_appends_go_to_each_shards_leader_by_hash(fake: ShardedFake) -> None:
    sessions = [f"order-{i}" for i in range(40)]

    async def main() -> None:
        # one address given: the map comes from its ClusterStatus
        async with client_for(fake.addresses["n2"]) as client:
            await append_all(client, sessions, "a")
            await append_all(client, sessions, "b")
            for name in sessions[:8]:
                page = await client.read(name)
                assert [r.data for r in page.records] == [f"{name}-a".encode(),
                                                          f"{name}-b".encode()]

    asyncio.run(main())
    assert {shard_of(s, 4) for s in sessions} == {0, 1, 2, 3}
    for node, batch in fake.batches:  # every part went to its shard's leader at once
        assert {fake.leaders[fake.shard_of(s)] for s in batch} == {node}, (node, batch)
    assert all(code == 0 for *_, code in fake.arrivals)
    assert sum(count for (_, m), count in fake.calls.items() if m == "ClusterStatus") == 1
    assert sum(fake.calls[(n, "Read")] for n in fake.ids) == 8  # no refusal, no redirect


def test_hints_are_followed_and_remembered_per_shard(fake: ShardedFake) -> None:
    fake.status_names_leaders = False  # the map has replicas only: leaders come from hints
    by_shard = {shard: sessions_of(shard, 4, 3) for shard in range(4)}
    everyone = [name for names in by_shard.values() for name in names]

    async def main() -> None:
        async with client_for(fake.all_addresses) as client:
            await append_all(client, everyone, "1")
            router = client._router
            assert {k: router.leader_of(k) for k in range(4)} == {
                k: fake.addresses[fake.leaders[k]] for k in range(4)
            }
            refusals = len(fake.batches)
            await append_all(client, everyone, "2")
            assert len(fake.batches) - refusals <= 4  # one part per shard, no refusal
            # shard 1 moves from n2 to n3: only its calls are redirected, once
            fake.leaders[1] = "n3"
            before = dict(fake.calls)
            for name in by_shard[1] + by_shard[2]:
                await client.read(name)
            assert fake.calls[("n2", "Read")] - before.get(("n2", "Read"), 0) == 1
            assert router.leader_of(1) == fake.addresses["n3"]
            assert router.leader_of(2) == fake.addresses[fake.leaders[2]]

    asyncio.run(main())
    for name in everyone:
        assert fake.log[name] == [f"{name}-1".encode(), f"{name}-2".encode()]


def test_mixed_batch_is_split_and_refused_appends_retried_to_the_named_leader(
    fake: ShardedFake,
) -> None:
    """With no map yet (status refused), a round goes to one node as one batch; the appends
    of shards it does not lead come back refused with their leader and are sent there, the
    same request (producer, sequence), once; the others commit on the first try."""
    fake.status_fails = 3  # every node refuses the first learning
    sessions = [f"mixed-{i}" for i in range(24)]

    async def main() -> None:
        async with client_for(fake.addresses["n1"], producer_id="p") as client:
            await append_all(client, sessions, "x")
            await append_all(client, sessions, "y")

    asyncio.run(main())
    for name in sessions:
        assert fake.log[name] == [f"{name}-x".encode(), f"{name}-y".encode()]
    refused = [(s, p, q) for node, s, p, q, code in fake.arrivals if code != 0]
    applied = [(s, p, q) for node, s, p, q, code in fake.arrivals if code == 0]
    assert refused, "the first round was expected to reach n1 unsplit"
    assert set(refused) <= set(applied)  # each refused append committed with its sequence
    assert len(applied) == len(set(applied)) == 2 * len(sessions)  # each exactly once
    first_batch_node, first_batch = fake.batches[0]
    assert first_batch_node == "n1" and len({fake.shard_of(s) for s in first_batch}) > 1


def test_an_append_answered_unavailable_without_hint_is_sent_again_exactly_once(
    fake: ShardedFake,
) -> None:
    sessions = [f"unknown-{i}" for i in range(8)]
    fake.unknown_once.update(sessions[:3])

    async def main() -> None:
        async with client_for(fake.all_addresses, producer_id="p") as client:
            results = await asyncio.gather(*(client.append(name, b"x") for name in sessions))
            assert [r.first_offset for r in results] == [0] * len(sessions)
            assert [r.duplicate for r in results] == [True] * 3 + [False] * 5

    asyncio.run(main())
    for name in sessions:
        assert fake.log[name] == [b"x"]


# -- listing and accept-next -----------------------------------------------------------------


def test_list_sessions_merges_shards_by_name_with_paging(fake: ShardedFake) -> None:
    names = sorted(f"list-{i:02d}" for i in range(13))
    for name in names:
        fake.log[name] = [b"x"]
    fake.log["other"] = [b"y"]

    async def main() -> None:
        async with client_for(fake.addresses["n1"]) as client:
            everything = await client.list_sessions("list-")
            assert [info.session for info in everything] == names
            pages: list[str] = []
            start_after = ""
            while True:
                page = await client.list_sessions("list-", limit=4, start_after=start_after)
                assert len(page) <= 4
                pages += [info.session for info in page]
                if len(page) < 4:
                    break
                start_after = page[-1].session
            assert pages == names

    asyncio.run(main())
    asked = {shard for _, shard, _ in fake.list_requests}
    assert asked == {0, 1, 2, 3}  # shard by shard, never an unscoped listing
    for node, shard, _ in fake.list_requests:
        assert shard is not None and fake.leaders[shard] == node


def test_accept_next_rotates_its_starting_shard(fake: ShardedFake) -> None:
    for shard in range(4):
        fake.available.update(sessions_of(shard, 4, 2, prefix="work-"))

    async def main() -> list[str]:
        async with client_for(fake.all_addresses) as client:
            leases = [await client.consumer.accept_next("g", "c1") for _ in range(8)]
            assert await client.consumer.accept_next("g", "c1") is None  # all taken
            return [lease.session for lease in leases if lease is not None]

    taken = asyncio.run(main())
    assert len(taken) == len(set(taken)) == 8
    # each shard had its turn in the first four calls, not shard 0 first until it is empty
    assert sorted(fake.shard_of(name) for name in taken[:4]) == [0, 1, 2, 3]
    firsts = [shard for _, shard in fake.accept_requests][:4]
    assert firsts == [0, 1, 2, 3]
    assert all(shard is not None for _, shard in fake.accept_requests)


def test_accept_next_falls_through_empty_shards(fake: ShardedFake) -> None:
    fake.available.update(sessions_of(3, 4, 1, prefix="late-"))

    async def main() -> None:
        async with client_for(fake.all_addresses) as client:
            lease = await client.consumer.accept_next("g", "c1")
            assert lease is not None and fake.shard_of(lease.session) == 3

    asyncio.run(main())
    assert [shard for _, shard in fake.accept_requests] == [0, 1, 2, 3]


def test_sync_client_routes_by_shard(fake: ShardedFake) -> None:
    sessions = [f"sync-{i}" for i in range(12)]
    with Client(fake.addresses["n3"], deadline=DEADLINE, retry=FAST_RETRY) as client:
        for name in sessions:
            client.append(name, b"1")
        assert [i.session for i in client.list_sessions("sync-")] == sorted(sessions)
        assert client.consumer.accept(sessions[0], "g", "c").session == sessions[0]
    assert all(code == 0 for *_, code in fake.arrivals)
    assert sum(fake.calls[(node, "AcceptSession")] for node in fake.ids) == 1


# -- a silent leader -------------------------------------------------------------------------


def test_a_silent_shard_leader_is_abandoned_within_one_and_a_half_seconds(
    fake: ShardedFake,
) -> None:
    """The client knows n1 leads shard 0; n1 freezes (every call hangs, as under SIGSTOP) and
    shard 0 moves to n2. The next append gives n1 one status probe, not a 3-5 s attempt."""
    (name,) = sessions_of(0, 4, 1)
    policy = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, attempt_timeout=5.0)

    async def main() -> float:
        async with client_for(fake.all_addresses, retry=policy) as client:
            await client.append(name, b"before")
            assert client._router.leader_of(0) == fake.addresses["n1"]
            fake.silence("n1")
            fake.leaders[0] = "n2"
            started = time.monotonic()
            result = await client.append(name, b"after")
            took = time.monotonic() - started
            assert result.first_offset == 1
            return took

    try:
        took = asyncio.run(main())
    finally:
        fake.resume("n1")
    assert 0.5 <= took < 1.8, took
    assert fake.log[name] == [b"before", b"after"]


def test_a_slow_but_alive_leader_keeps_its_attempt() -> None:
    """A leader that answers its status probe is waited for (a slow append is not retried)."""
    cluster = FakeCluster(3)
    cluster.nodes[0].delay = 1.6  # longer than probe_after + probe_timeout

    async def main() -> None:
        async with client_for(cluster.addresses) as client:
            result = await client.append("slow", b"x")
            assert result.first_offset == 0 and not result.duplicate

    try:
        asyncio.run(main())
    finally:
        cluster.close()
    assert cluster.total_calls("AppendBatch") == 1
    assert cluster.total_calls("ClusterStatus") >= 2  # learned once, probed at least once


# -- one shard: as before --------------------------------------------------------------------


def test_one_shard_cluster_is_routed_as_before() -> None:
    """A server from before sharding (shard_count 0): the map is asked once, requests carry
    no shard, one leader serves everything, and no further status call is made."""
    cluster = FakeCluster(3)
    sessions = [f"one-{i}" for i in range(20)]

    async def main() -> None:
        async with client_for(cluster.nodes[1].address) as client:
            for round_ in range(3):
                await append_all(client, sessions, str(round_))
            assert client.leader == cluster.nodes[0].address
            assert client._router.shards.count == 1
            listed = await client.list_sessions("one-")
            assert [info.session for info in listed] == sorted(sessions)
            await client.read(sessions[0])

    try:
        asyncio.run(main())
        assert cluster.total_calls("ClusterStatus") == 1
        assert cluster.nodes[1].calls["AppendBatch"] == 1  # the first, redirected, try only
        assert cluster.total_calls("ListSessions") == 10  # 20 names, pages of 2, one walk
        for name in sessions:
            assert cluster.log.messages(name) == [f"{name}-{r}".encode() for r in range(3)]
    finally:
        cluster.close()



def test_a_subscription_leaves_a_silent_node_and_resumes_without_gap(fake: ShardedFake) -> None:
    (name,) = sessions_of(2, 4, 1, prefix="tail-")
    fake.log[name] = [b"0", b"1"]

    async def main() -> tuple[list[int], float]:
        async with client_for(fake.all_addresses) as client:
            subscription = client.subscribe(name)
            seen = [await subscription.__anext__() for _ in range(2)]
            leader = fake.leaders[2]
            fake.silence(leader)
            fake.leaders[2] = next(node for node in fake.ids if node != leader)
            fake.log[name].append(b"2")
            started = time.monotonic()
            seen.append(await asyncio.wait_for(subscription.__anext__(), 10))
            await subscription.aclose()
            return [record.offset for record in seen], time.monotonic() - started

    try:
        offsets, took = asyncio.run(main())
    finally:
        fake.resume("n3")
    assert offsets == [0, 1, 2]
    assert took < 2.5, took
