"""The SDK against a fake in-process cluster: leader finding, exactly-once retries,
coalescing, subscription resume, typed errors and deadlines."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator

import pytest
from quorumlog_fake import FakeCluster, dead_address
from waiting import wait_until

from quorumlog.client import errors
from quorumlog.client._grpc import NodeConnection
from quorumlog.client.leader import Router, parse_addresses
from quorumlog.client.retry import RetryPolicy
from quorumlog.client.sdk import AsyncClient, Client, Consistency

FAST_RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.1, attempt_timeout=5.0)
DEADLINE = 20.0  # generous: the suite shares two cores with CPU-heavy simulations


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    fake = FakeCluster(3)
    try:
        yield fake
    finally:
        fake.close()


def async_client(addresses: str, **kwargs: object) -> AsyncClient:
    options: dict[str, object] = {"deadline": DEADLINE, "retry": FAST_RETRY, "seed": 7}
    options.update(kwargs)
    return AsyncClient(addresses, **options)  # type: ignore[arg-type]


# -- pure pieces -------------------------------------------------------------------------------


def test_backoff_is_seeded_exponential_and_capped() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=2.0, jitter=0.5)
    first = [policy.backoff(n, random.Random(3)) for n in range(8)]
    again = [policy.backoff(n, random.Random(3)) for n in range(8)]
    assert first == again
    for attempt, delay in enumerate(first):
        base = min(1.0, 0.1 * 2**attempt)
        assert base / 2 <= delay <= base
    assert RetryPolicy(jitter=0.0, initial_backoff=0.2, max_backoff=1.0).backoff(
        0, random.Random()
    ) == 0.2
    # the default cap stays well below an election timeout (0.5-1 s): a new leader is
    # noticed within a fraction of the failover
    assert RetryPolicy(jitter=0.0).backoff(20, random.Random()) == RetryPolicy().max_backoff
    assert RetryPolicy().max_backoff <= 0.1


def test_router_ends_on_a_definite_answer_rather_than_start_a_doomed_retry() -> None:
    """With every node refusing, a retry that would start with less than ``min_retry_budget``
    left is not started: a try cut off by the deadline would turn "not done" into "unknown"."""
    policy = RetryPolicy(initial_backoff=0.05, max_backoff=0.05, jitter=0.0,
                         min_retry_budget=0.2)
    router = Router(["127.0.0.1:1"], policy=policy, rng=random.Random(1),
                    connect=lambda address: None)  # type: ignore[arg-type,return-value]
    starts: list[float] = []

    async def refused(connection: object, budget: float) -> None:
        starts.append(asyncio.get_running_loop().time())
        raise errors.Unavailable("connection refused")

    async def main() -> tuple[float, float]:
        end = asyncio.get_running_loop().time() + 0.5
        with pytest.raises(errors.Unavailable):
            await router.call(refused, end=end)
        return end, asyncio.get_running_loop().time()

    end, finished = asyncio.run(main())
    assert starts and all(end - start >= 0.2 for start in starts[1:]), (starts, end)
    assert finished <= end


def test_status_codes_map_to_typed_errors_keeping_message() -> None:
    error = errors.from_status("NOT_FOUND", "session 'x' not found")
    assert isinstance(error, errors.NotFound) and str(error) == "session 'x' not found"
    hinted = errors.from_status(
        "UNAVAILABLE", "not leader", {"quorumlog-leader-addr": "h:1", "quorumlog-leader-id": "n2"}
    )
    assert isinstance(hinted, errors.Unavailable) and hinted.retryable
    assert (hinted.leader_address, hinted.leader_id) == ("h:1", "n2")
    trimmed = errors.from_status("OUT_OF_RANGE", "offset 1 trimmed; first retained offset is 5")
    assert isinstance(trimmed, errors.OutOfRange) and trimmed.first_offset == 5
    for code, cls in [
        ("INVALID_ARGUMENT", errors.InvalidArgument),
        ("RESOURCE_EXHAUSTED", errors.ResourceExhausted),
        ("DEADLINE_EXCEEDED", errors.DeadlineExceeded),
        ("FAILED_PRECONDITION", errors.FailedPrecondition),
        ("PERMISSION_DENIED", errors.PermissionDenied),
    ]:
        assert type(errors.from_status(code, "m")) is cls
    other = errors.from_status("DATA_LOSS", "bad")
    assert type(other) is errors.QuorumLogError and other.code == "DATA_LOSS"


def test_parse_addresses_validates() -> None:
    assert parse_addresses(" a:1, b:2 ,a:1") == ["a:1", "b:2"]
    for bad in ["", "nohost", "h:0", "h:x", ":5"]:
        with pytest.raises(errors.InvalidArgument):
            parse_addresses(bad)


# -- leader finding and retries ------------------------------------------------------------------


def test_append_follows_leader_hint_and_remembers_leader(cluster: FakeCluster) -> None:
    follower, leader = cluster.nodes[1], cluster.nodes[0]

    async def main() -> None:
        async with async_client(follower.address) as client:
            first = await client.append("s", b"a", b"b")
            assert (first.first_offset, first.count, first.offsets) == (0, 2, [0, 1])
            assert client.leader == leader.address
            second = await client.append("s", "c")
            assert second.offsets == [2]

    asyncio.run(main())
    assert follower.calls["AppendBatch"] == 1  # only the first, redirected, try
    assert leader.calls["AppendBatch"] == 2
    assert cluster.log.messages("s") == [b"a", b"b", b"c"]


def test_leader_change_is_followed(cluster: FakeCluster) -> None:
    async def main() -> None:
        async with async_client(cluster.addresses) as client:
            await client.append("s", b"1")
            assert client.leader == cluster.nodes[0].address
            cluster.elect(cluster.nodes[2])
            result = await client.append("s", b"2")
            assert result.offsets == [1]
            assert client.leader == cluster.nodes[2].address

    asyncio.run(main())
    assert cluster.log.messages("s") == [b"1", b"2"]


def test_failures_before_apply_are_retried(cluster: FakeCluster) -> None:
    cluster.nodes[0].fail_before = 3

    async def main() -> None:
        async with async_client(cluster.addresses) as client:
            result = await client.append("s", b"x")
            assert result.offsets == [0] and not result.duplicate

    asyncio.run(main())
    assert cluster.log.messages("s") == [b"x"]
    assert cluster.nodes[0].calls["AppendBatch"] == 4


def test_unknown_outcome_retry_reuses_sequence_and_is_exactly_once(cluster: FakeCluster) -> None:
    leader = cluster.nodes[0]
    leader.fail_after = 2  # applied twice, answered UNAVAILABLE both times

    async def main() -> None:
        async with async_client(cluster.addresses, producer_id="p1") as client:
            result = await client.append("s", b"x", b"y")
            assert result.offsets == [0, 1]
            assert result.duplicate  # the answer came from the dedup table
            follow_up = await client.append("s", b"z")
            assert follow_up.offsets == [2] and not follow_up.duplicate

    asyncio.run(main())
    assert cluster.log.messages("s") == [b"x", b"y", b"z"]
    tries = [(r.producer_id, r.sequence, list(r.messages)) for r in cluster.log.applied]
    assert tries == [("p1", 0, [b"x", b"y"])] * 3 + [("p1", 2, [b"z"])]


def test_producer_id_is_random_hex_and_sequences_are_per_session(cluster: FakeCluster) -> None:
    async def main() -> None:
        async with async_client(cluster.addresses) as client:
            assert len(client.producer_id) == 32
            int(client.producer_id, 16)
            await client.append("a", b"1", b"2")
            await client.append("b", b"1")
            await client.append("a", b"3")
            assert (client.sequence_of("a"), client.sequence_of("b")) == (3, 1)

    asyncio.run(main())
    assert [(r.session, r.sequence) for r in cluster.log.applied] == [("a", 0), ("b", 0), ("a", 2)]


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
def test_unreachable_cluster_raises_unavailable_within_deadline() -> None:
    addresses = f"{dead_address()},{dead_address()}"

    async def main() -> None:
        # Every node refuses: the answer is a definite Unavailable, even on a loaded machine
        # (the router starts no retry it could not hear back from, and the outbox does not
        # re-send what has less time left than that: client/outbox.py _gave_up).
        async with async_client(addresses, deadline=3.0) as client:
            started = time.monotonic()
            with pytest.raises(errors.Unavailable) as raised:
                await client.append("s", b"x")
            assert time.monotonic() - started < 3.0 + 5.0
            assert "could serve it in time" in str(raised.value)

    asyncio.run(main())


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
def test_a_dead_cluster_is_not_retried_in_a_tight_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the router gives up on a definite UNAVAILABLE (too little time left to hear back
    from another try), the outbox ends the append instead of sending it again at once: before,
    the last fraction of the deadline spun through thousands of doomed tries."""
    tries = 0
    real = NodeConnection.append_batch

    async def counted(self: NodeConnection, request: object, timeout: float | None) -> object:
        nonlocal tries
        tries += 1
        return await real(self, request, timeout)  # type: ignore[arg-type]

    monkeypatch.setattr(NodeConnection, "append_batch", counted)

    async def main() -> None:
        async with async_client(f"{dead_address()},{dead_address()}", deadline=3.0) as client:
            with pytest.raises(errors.Unavailable):
                await client.append("s", b"x")

    asyncio.run(main())
    # backoff 10-100 ms over two nodes for 3 s: on the order of a hundred tries
    assert 0 < tries < 400, tries


def test_deadline_exceeded_when_leader_is_too_slow(cluster: FakeCluster) -> None:
    cluster.nodes[0].delay = 2.0

    async def main() -> None:
        async with async_client(cluster.addresses, deadline=0.5) as client:
            with pytest.raises(errors.DeadlineExceeded):
                await client.append("s", b"x")

    asyncio.run(main())


# -- coalescing ----------------------------------------------------------------------------------


def test_100_concurrent_appends_coalesce_into_few_rpcs_in_order(cluster: FakeCluster) -> None:
    leader = cluster.nodes[0]
    leader.delay = 0.05  # every RPC is slow, so later appends pile up behind it

    async def main() -> list[list[int]]:
        async with async_client(cluster.addresses, linger_ms=5) as client:
            results = await asyncio.gather(
                *(client.append("s", f"m{i}".encode()) for i in range(100))
            )
            return [result.offsets for result in results]

    offsets = asyncio.run(main())
    assert offsets == [[i] for i in range(100)]  # each caller its own offset, in call order
    assert leader.calls["AppendBatch"] <= 3, leader.calls
    assert cluster.log.messages("s") == [f"m{i}".encode() for i in range(100)]
    sequences = [r.sequence for r in cluster.log.applied]
    assert sequences == sorted(sequences) and sequences[0] == 0


def test_batches_respect_max_messages_and_keep_callers_contiguous(cluster: FakeCluster) -> None:
    async def main() -> None:
        async with async_client(cluster.addresses, max_batch_messages=10, linger_ms=20) as client:
            results = await asyncio.gather(
                *(client.append("s", f"{i}a", f"{i}b") for i in range(25))
            )
            for i, result in enumerate(results):
                assert result.offsets == [2 * i, 2 * i + 1]

    asyncio.run(main())
    sizes = [len(r.messages) for r in cluster.log.applied]
    assert sizes == [10, 10, 10, 10, 10]
    expected_sequences = [0, 10, 20, 30, 40]
    assert [r.sequence for r in cluster.log.applied] == expected_sequences


def test_failed_batch_fails_only_its_callers(cluster: FakeCluster) -> None:
    cluster.nodes[0].delay = 0.05  # the first lone append is slow; the rest gather behind it

    async def main() -> None:
        async with async_client(cluster.addresses) as client:
            await client.append("warm", b"up")
            good, bad, empty_ok, also_good = await asyncio.gather(
                client.append("ok", b"fine"),
                client.append("big", b"x" * 5000),
                client.append("ok2", b""),
                client.append("ok", b"again"),
                return_exceptions=True,
            )
            assert not isinstance(good, BaseException) and good.offsets == [0]
            assert not isinstance(also_good, BaseException) and also_good.offsets == [1]
            assert not isinstance(empty_ok, BaseException) and empty_ok.offsets == [0]
            assert isinstance(bad, errors.ResourceExhausted)
            assert "larger than 1000 bytes" in str(bad)

    asyncio.run(main())
    # the three sessions' batches travelled in ONE AppendBatch after the warm-up one
    assert cluster.nodes[0].batch_sizes == [1, 3]
    assert cluster.log.messages("ok") == [b"fine", b"again"]
    assert "big" not in cluster.log.sessions


# -- cross-session coalescing (AppendBatch) ----------------------------------------------------


def test_64_sessions_share_a_handful_of_append_batch_rpcs(cluster: FakeCluster) -> None:
    leader = cluster.nodes[0]
    leader.delay = 0.05  # every RPC is slow, so appends of other sessions pile up behind it
    sessions = [f"s{i}" for i in range(64)]

    async def main() -> None:
        async with async_client(cluster.addresses) as client:
            for round_ in range(3):
                results = await asyncio.gather(
                    *(client.append(name, f"{name}-{round_}") for name in sessions)
                )
                assert [result.offsets for result in results] == [[round_]] * 64

    asyncio.run(main())
    assert cluster.total_calls("Append") == 0
    assert leader.calls["AppendBatch"] <= 6, leader.batch_sizes  # not 3 x 64
    assert sum(leader.batch_sizes) == 3 * 64
    for name in sessions:
        assert cluster.log.messages(name) == [f"{name}-{r}".encode() for r in range(3)]


def test_unknown_outcome_of_a_batch_is_retried_whole_and_exactly_once(cluster: FakeCluster) -> None:
    leader = cluster.nodes[0]
    leader.fail_after = 1  # the first AppendBatch is applied, then answered UNAVAILABLE
    sessions = [f"s{i}" for i in range(10)]

    async def main() -> None:
        async with async_client(cluster.addresses, producer_id="p1") as client:
            results = await asyncio.gather(*(client.append(name, name) for name in sessions))
            assert all(result.offsets == [0] and result.duplicate for result in results)
            follow_up = await client.append("s0", b"next")
            assert follow_up.offsets == [1] and not follow_up.duplicate

    asyncio.run(main())
    assert leader.batch_sizes == [10, 10, 1]  # the whole batch once more, then the follow-up
    tries = sorted((r.session, r.producer_id, r.sequence) for r in cluster.log.applied)
    expected = sorted([(name, "p1", 0) for name in sessions] * 2 + [("s0", "p1", 1)])
    assert tries == expected
    for name in sessions[1:]:
        assert cluster.log.messages(name) == [name.encode()]
    assert cluster.log.messages("s0") == [b"s0", b"next"]


def test_short_deadline_in_a_batch_does_not_fail_its_neighbours(cluster: FakeCluster) -> None:
    leader = cluster.nodes[0]
    leader.delay = 1.0

    async def main() -> None:
        async with async_client(cluster.addresses) as client:
            short, long = await asyncio.gather(
                client.append("short", b"s", deadline=0.3),
                client.append("long", b"l"),
                return_exceptions=True,
            )
            assert isinstance(short, errors.DeadlineExceeded), short
            # the RPC ran until the earliest deadline; "long" rode the next one
            assert not isinstance(long, BaseException) and long.offsets == [0]

    asyncio.run(main())
    assert leader.batch_sizes[0] == 2 and leader.batch_sizes[1:] == [1]
    assert cluster.log.messages("long") == [b"l"]  # applied by both tries, stored once


def test_batches_over_the_server_limit_are_split(cluster: FakeCluster) -> None:
    sessions = [f"s{i}" for i in range(1001)]

    async def main() -> None:
        async with async_client(cluster.addresses) as client:
            results = await asyncio.gather(*(client.append(name, b"m") for name in sessions))
            assert all(result.offsets == [0] for result in results)

    asyncio.run(main())
    sizes = cluster.nodes[0].batch_sizes
    assert sum(sizes) == 1001 and max(sizes) <= 1000 and len(sizes) >= 2, sizes
    assert all(cluster.log.messages(name) == [b"m"] for name in sessions)


def test_server_without_append_batch_falls_back_to_append(cluster: FakeCluster) -> None:
    for node in cluster.nodes:
        node.batch_unimplemented = True

    async def main() -> None:
        async with async_client(cluster.addresses) as client:
            first, second = await asyncio.gather(client.append("a", b"1"), client.append("b", b"2"))
            assert first.offsets == second.offsets == [0]
            assert (await client.append("a", b"3")).offsets == [1]

    asyncio.run(main())
    assert cluster.total_calls("AppendBatch") == 1  # asked once, then never again
    assert cluster.total_calls("Append") == 3
    assert cluster.log.messages("a") == [b"1", b"3"]


# -- reads, sessions, errors ----------------------------------------------------------------------


def test_read_sessions_trim_delete_and_typed_errors(cluster: FakeCluster) -> None:
    async def main() -> None:
        async with async_client(cluster.nodes[2].address) as client:
            await client.append("s1", b"a", b"b", b"c")
            await client.append("s2", b"x")
            await client.append("t", b"y")
            page = await client.read("s1", 1, 1)
            assert [(r.offset, r.data) for r in page.records] == [(1, b"b")]
            assert (page.next_offset, page.end_offset) == (2, 3)
            stale = await client.read("s1", consistency=Consistency.FOLLOWER)
            assert len(stale.records) == 3
            names = [info.session for info in await client.list_sessions()]
            assert names == ["s1", "s2", "t"]  # three pages of the fake's two
            assert [i.session for i in await client.list_sessions("s")] == ["s1", "s2"]
            assert len(await client.list_sessions(limit=1)) == 1
            info = await client.trim_session("s1", 2)
            assert (info.first_offset, info.next_offset) == (2, 3)
            with pytest.raises(errors.OutOfRange) as trimmed:
                await client.read("s1", 0)
            assert trimmed.value.first_offset == 2
            assert (await client.describe_session("s1")).count == 1
            await client.delete_session("s2")
            with pytest.raises(errors.NotFound, match="not found"):
                await client.describe_session("s2")
            with pytest.raises(errors.InvalidArgument):
                await client.append("", b"x")
            with pytest.raises(errors.InvalidArgument):
                await client.append("s1")
            with pytest.raises(errors.InvalidArgument):
                await client.read("s1", -1)

    asyncio.run(main())


def test_cluster_status_reports_unreachable_nodes(cluster: FakeCluster) -> None:
    dead = dead_address()

    async def main() -> None:
        async with async_client(f"{cluster.addresses},{dead}", deadline=3.0) as client:
            status = await client.cluster_status()
            assert [n.address for n in status.nodes][-1] == dead
            assert [n.reachable for n in status.nodes] == [True, True, True, False]
            assert isinstance(status.nodes[-1].error, errors.Unavailable)
            assert status.leader is not None and status.leader.address == cluster.nodes[0].address
            one = await client.node_status(cluster.nodes[1].address)
            assert (one.id, one.role, one.leader) == ("n2", "follower", "n1")

    asyncio.run(main())


# -- subscriptions -------------------------------------------------------------------------------


def test_subscribe_resumes_after_stream_errors_without_gap_or_duplicate(
    cluster: FakeCluster,
) -> None:
    first, second = cluster.nodes[0], cluster.nodes[1]
    first.subscribe_cut_after = 4  # the stream dies after 4 records...
    second.subscribe_replay = 3  # ...and the next node resends 3 already delivered ones
    total = 30

    async def main() -> None:
        async with async_client(cluster.addresses, linger_ms=0) as client:
            for i in range(10):
                await client.append("s", f"m{i}".encode())
            received: list[int] = []
            async with client.subscribe("s", 0) as subscription:
                async for record in subscription:
                    received.append(record.offset)
                    assert record.data == f"m{record.offset}".encode()
                    if record.offset == 4:
                        cluster.elect(second)  # leader change while streaming
                    if record.offset == 9:
                        for i in range(10, total):
                            await client.append("s", f"m{i}".encode())
                    if len(received) == total:
                        break
                assert subscription.reconnects >= 1
                assert subscription.next_offset == total
            assert received == list(range(total))

    asyncio.run(main())
    assert second.calls["Subscribe"] >= 1


def test_subscribe_gives_up_after_deadline_without_nodes() -> None:
    async def main() -> None:
        async with async_client(dead_address(), deadline=0.5) as client:
            with pytest.raises(errors.Unavailable):
                async for _ in client.subscribe("s"):
                    pass

    asyncio.run(main())


# -- the blocking client -------------------------------------------------------------------------


def test_sync_client_same_api_and_thread_coalescing(cluster: FakeCluster) -> None:
    cluster.nodes[0].delay = 0.05
    with Client(cluster.nodes[1].address, deadline=DEADLINE, retry=FAST_RETRY, seed=1) as client:
        assert client.append("s", b"first").offsets == [0]
        offsets: list[int] = []
        lock = threading.Lock()
        barrier = threading.Barrier(20)

        def worker(i: int) -> None:
            barrier.wait(timeout=DEADLINE)
            result = client.append("s", f"t{i}")
            with lock:
                offsets.extend(result.offsets)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE)
        assert sorted(offsets) == list(range(1, 21))
        assert cluster.nodes[0].calls["AppendBatch"] < 21  # threads' appends were coalesced
        page = client.read("s", 0, 100)
        assert page.records[0].data == b"first"
        assert {r.data for r in page.records[1:]} == {f"t{i}".encode() for i in range(20)}
        with client.subscribe("s", 19) as subscription:
            got = [next(subscription).offset, next(subscription).offset]
        assert got == [19, 20]
        assert [i.session for i in client.list_sessions()] == ["s"]
        assert client.describe_session("s").next_offset == 21
        assert client.cluster_status().leader is not None
        client.delete_session("s")
        with pytest.raises(errors.NotFound):
            client.read("s")
    with pytest.raises(errors.ClientClosed):
        client.append("s", b"late")


def test_close_fails_pending_appends(cluster: FakeCluster) -> None:
    cluster.nodes[0].delay = 5.0

    async def main() -> None:
        client = async_client(cluster.addresses)
        pending = asyncio.ensure_future(client.append("s", b"x"))
        loop = asyncio.get_running_loop()
        # wait (without blocking the loop) until the append is on the wire, then close
        await loop.run_in_executor(
            None,
            lambda: wait_until(
                lambda: cluster.nodes[0].calls["AppendBatch"] == 1, DEADLINE, "append"
            ),
        )
        await client.close()
        with pytest.raises(errors.ClientClosed):
            await pending

    asyncio.run(main())
