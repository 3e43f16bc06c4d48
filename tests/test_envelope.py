"""Message envelopes (issue 20, part 1): the leader's checks with their precise errors, the
stored value format (old values still read), and every path end to end on an in-process
cluster: append (one envelope, one per message, coalesced with plain appends), Read,
Subscribe, Receive, dead letters and their resubmit, and the CLI's flags and JSON."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cluster_harness import wait_until
from inprocess_cluster import InProcessCluster, inprocess_cluster
from waiting import eventually

from quorumlog.client import errors
from quorumlog.client.consumer import ReceivedMessage
from quorumlog.client.envelope import Envelope, envelopes_for
from quorumlog.client.processor import AsyncSessionProcessor, SessionContext
from quorumlog.client.sdk import AsyncClient, Client, Record
from quorumlog.node.common.envelope import (
    MAX_HEADER_VALUE_BYTES,
    MAX_HEADERS,
    check_envelope,
    check_envelopes,
    check_stored_envelopes,
)
from quorumlog.node.common.limits import ErrorCode, InvalidInput, Limits
from quorumlog.node.state.errors import StateCorrupted
from quorumlog.node.state.keys import U64
from quorumlog.node.state.session_records import (
    TIMED,
    cumulative_of,
    decode_message,
    encode_message,
)
from quorumlog.proto import envelope_pb2

DEADLINE = 30.0


# -- the leader's checks ---------------------------------------------------------------------
def _refused(envelope: envelope_pb2.Envelope) -> InvalidInput:
    with pytest.raises(InvalidInput) as raised:
        check_envelope(envelope, 3)
    assert raised.value.code == ErrorCode.INVALID_ARGUMENT
    return raised.value


def test_each_bad_envelope_field_gets_a_precise_message() -> None:
    pb = envelope_pb2
    assert _refused(pb.Envelope(content_type="json")).message == (
        "message 3: content_type 'json' is not a media type (type/subtype[; name=value]...)")
    assert "message 3: content_type" in _refused(
        pb.Envelope(content_type="text/plain; charset")).message
    assert _refused(pb.Envelope(message_id="x" * 257)).message == (
        "message 3: message_id is 257 bytes of UTF-8; the limit is 256")
    assert _refused(pb.Envelope(correlation_id="a\nb")).message == (
        "message 3: correlation_id contains control character U+000A at position 1")
    assert _refused(pb.Envelope(reply_to="bad\x00")).message.startswith("message 3: reply_to:")
    too_many = pb.Envelope(headers=[pb.Header(key=f"k{i}", text="v")
                                    for i in range(MAX_HEADERS + 1)])
    assert _refused(too_many).message == (
        f"message 3 has {MAX_HEADERS + 1} headers; the limit is {MAX_HEADERS}")
    twice = pb.Envelope(headers=[pb.Header(key="k", text="1"), pb.Header(key="k", text="2")])
    assert _refused(twice).message == "message 3: header 'k' appears twice"
    assert _refused(pb.Envelope(headers=[pb.Header(key="k")])).message == (
        "message 3: header 'k' has no value (text or binary)")
    assert _refused(pb.Envelope(headers=[pb.Header(key="", text="v")])).message == (
        "message 3: header key is empty")
    big = pb.Envelope(headers=[pb.Header(key="k", binary=b"x" * (MAX_HEADER_VALUE_BYTES + 1))])
    assert _refused(big).message == (
        f"message 3: header 'k' is {MAX_HEADER_VALUE_BYTES + 1} bytes; the limit is "
        f"{MAX_HEADER_VALUE_BYTES}")


def test_good_envelopes_are_stored_as_given_and_empty_ones_store_nothing() -> None:
    pb = envelope_pb2
    envelope = pb.Envelope(
        message_id="m-1", content_type='text/plain; charset="utf-8"', reply_to="replies",
        headers=[pb.Header(key="z", text=""), pb.Header(key="a", binary=b"\x00\xff")],
    )
    stored = check_envelope(envelope, 0)
    assert pb.Envelope.FromString(stored) == envelope
    assert [h.key for h in pb.Envelope.FromString(stored).headers] == ["z", "a"]  # order kept
    assert check_envelope(pb.Envelope(), 0) == b""
    assert check_envelopes([pb.Envelope(), pb.Envelope()], 2, 10) == []  # none at all
    assert check_envelopes([], 2, 10) == []
    with pytest.raises(InvalidInput, match="append carries 1 envelopes for 2 messages"):
        check_envelopes([envelope], 2, 10)
    # payloads and envelopes together stay within the append limit
    with pytest.raises(InvalidInput) as raised:
        check_stored_envelopes([stored], 1, 100, Limits(max_append_bytes=100))
    assert raised.value.code == ErrorCode.RESOURCE_EXHAUSTED


def test_the_sdk_refuses_an_ambiguous_envelope_before_sending() -> None:
    with pytest.raises(errors.InvalidArgument, match="one message_id for 2 messages"):
        envelopes_for(2, Envelope(message_id="x"), None)
    with pytest.raises(errors.InvalidArgument, match="not both"):
        envelopes_for(1, Envelope(), [None])
    with pytest.raises(errors.InvalidArgument, match="1 envelopes for 2 messages"):
        envelopes_for(2, None, [Envelope()])
    assert envelopes_for(2, None, [None, None]) is None
    with pytest.raises(errors.InvalidArgument, match="header 'n': a value is str"):
        Envelope(headers={"n": 1}).to_pb()  # type: ignore[dict-item]


# -- the stored value ------------------------------------------------------------------------
def test_message_values_old_timed_and_enveloped_decode() -> None:
    old = U64.pack(42) + b"payload"  # a value stored before envelopes
    assert decode_message(b"s", 0, old) == (42, 0, b"", b"payload")
    assert cumulative_of(b"s", 0, old) == 42
    timed = encode_message(42, U64.pack(1_700), b"", b"payload")
    assert U64.unpack_from(timed)[0] == 42 | TIMED
    assert decode_message(b"s", 0, timed) == (42, 1_700, b"", b"payload")
    enveloped = encode_message(42, U64.pack(1_700), b"ENV", b"payload")
    assert decode_message(b"s", 0, enveloped) == (42, 1_700, b"ENV", b"payload")
    assert cumulative_of(b"s", 0, enveloped) == 42
    with pytest.raises(StateCorrupted, match="torn envelope"):
        decode_message(b"s", 0, enveloped[:22])
    with pytest.raises(StateCorrupted):
        decode_message(b"s", 0, b"abc")


# -- end to end ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with inprocess_cluster(tmp_path_factory.mktemp("envelope")) as running:
        yield running


@pytest.fixture
def client(cluster: InProcessCluster) -> Iterator[Client]:
    with Client(cluster.addresses, deadline=DEADLINE, seed=3) as created:
        yield created


def at_once(call: Callable[[int], None], count: int) -> None:
    """``call(0) .. call(count - 1)`` on threads of their own, started together."""
    threads = [threading.Thread(target=call, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


ORDER = Envelope(
    message_id="order-7", correlation_id="req-1", reply_to="replies", subject="created",
    content_type="application/json", headers={"tenant": "acme", "raw": b"\x00\x01\xfe"},
)


def test_envelopes_come_back_byte_for_byte_on_read_and_subscribe(client: Client) -> None:
    client.append("env-read", b"plain")
    client.append("env-read", b'{"id": 7}', envelope=ORDER)
    client.append("env-read", b"a", b"b", envelopes=[Envelope(subject="first"), None])
    records = client.read("env-read").records
    assert [r.data for r in records] == [b"plain", b'{"id": 7}', b"a", b"b"]
    assert [r.envelope for r in records] == [None, ORDER, Envelope(subject="first"), None]
    assert records[1].envelope is not None
    assert list(records[1].envelope.headers) == ["tenant", "raw"]  # order kept
    # the leader stamped one time per append; every message has one
    assert all(r.append_time_ms > 1_600_000_000_000 for r in records)
    assert records[2].append_time_ms == records[3].append_time_ms
    with client.subscribe("env-read") as subscription:
        streamed = [next(subscription) for _ in range(4)]
    assert streamed == records


def test_bad_envelopes_are_refused_precisely_and_append_nothing(client: Client) -> None:
    client.append("env-bad", b"keep")
    with pytest.raises(errors.InvalidArgument, match="content_type 'nope' is not a media type"):
        client.append("env-bad", b"x", envelope=Envelope(content_type="nope"))
    with pytest.raises(errors.InvalidArgument, match="message 1: header key is empty"):
        client.append("env-bad", b"x", b"y", envelopes=[None, Envelope(headers={"": "v"})])
    assert [r.data for r in client.read("env-bad").records] == [b"keep"]


def test_concurrent_plain_and_enveloped_appends_keep_each_envelope(client: Client) -> None:
    results: dict[int, int] = {}

    def one(i: int) -> None:
        envelope = Envelope(message_id=f"m{i}") if i % 2 else None
        results[i] = client.append("env-mixed", f"p{i}", envelope=envelope).first_offset

    at_once(one, 16)
    by_offset = {r.offset: r for r in client.read("env-mixed").records}
    for i, offset in results.items():
        record = by_offset[offset]
        assert record.data == f"p{i}".encode()
        assert record.envelope == (Envelope(message_id=f"m{i}") if i % 2 else None)


def test_receive_and_dead_letters_carry_the_envelope_through_resubmit(client: Client) -> None:
    client.append("env-dlq", b"poison", envelope=ORDER)
    client.append("env-dlq", b"fine")
    client.consumer.create_group("env-g", lock_ms=60_000, max_deliveries=5)
    batch = client.consumer.receive("env-dlq", "env-g", max_messages=2)
    assert [m.envelope for m in batch.messages] == [ORDER, None]
    assert all(m.append_time_ms > 0 for m in batch.messages)
    client.consumer.dead_letter(batch.messages[:1], "cannot parse")
    client.consumer.complete(batch.messages[1:])
    (letter,) = client.consumer.dead_letters("env-dlq")
    assert (letter.data, letter.envelope, letter.reason) == (b"poison", ORDER, "cannot parse")
    assert letter.append_time_ms == batch.messages[0].append_time_ms
    offsets, _ = client.consumer.resubmit("env-dlq", [letter.sequence])
    (again,) = client.read("env-dlq", offsets[0]).records
    assert (again.data, again.envelope) == (b"poison", ORDER)
    assert again.append_time_ms >= letter.append_time_ms


def _cli(cluster: InProcessCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quorumlog.client.cli", *args, "--cluster",
         ",".join(cluster.addresses)],
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_cli_append_flags_and_read_json_show_the_envelope(cluster: InProcessCluster) -> None:
    done = _cli(cluster, "append", "env-cli", '{"a": 1}', "--header", "tenant=acme",
                "--header", "trace=x=y", "--message-id", "cli-1", "--correlation-id", "c-9",
                "--reply-to", "back", "--content-type", "application/json",
                "--subject", "hello")
    assert done.returncode == 0, done.stderr
    _cli(cluster, "append", "env-cli", "plain")
    done = _cli(cluster, "read", "env-cli", "--json")
    assert done.returncode == 0, done.stderr
    first, second = json.loads(done.stdout)["messages"]
    assert first["envelope"] == {
        "message_id": "cli-1", "correlation_id": "c-9", "reply_to": "back",
        "content_type": "application/json", "subject": "hello",
        "headers": {"tenant": "acme", "trace": "x=y"},
    }
    assert first["append_time_ms"] > 0 and "envelope" not in second
    bad = _cli(cluster, "append", "env-cli", "x", "--header", "novalue")
    assert (bad.returncode, bad.stderr.strip()) == (
        2, "quorumlog append: --header 'novalue': expected KEY=VALUE")
    bad = _cli(cluster, "append", "env-cli", "x", "--content-type", "json")
    assert (bad.returncode, bad.stderr.strip()) == (
        2, "quorumlog append: invalid argument: message 0: content_type 'json' is not a media "
        "type (type/subtype[; name=value]...)")
    bad = _cli(cluster, "append", "env-cli", "x", "y", "--message-id", "one")
    assert bad.returncode == 2 and "--message-id names one message" in bad.stderr
    done = _cli(cluster, "read", "env-cli", "--json")
    assert len(json.loads(done.stdout)["messages"]) == 2  # the refused appends added nothing


def test_an_old_data_value_reads_without_time_or_envelope(tmp_path: Path) -> None:
    from quorumlog.node.state.session_records import message_key
    from quorumlog.node.state.state_machine import SessionStateMachine
    from quorumlog.node.storage.raft_store import RocksStorage
    from quorumlog.proto import commands_pb2
    from quorumlog.raft.types import Entry

    storage = RocksStorage(tmp_path / "db")
    try:
        machine = SessionStateMachine(storage, Limits())
        batch = commands_pb2.CommandBatch(leader_time_ms=5, commands=[commands_pb2.Command(
            append=commands_pb2.AppendCommand(session="s", messages=[b"new"]))])
        machine.apply([Entry(1, 1, batch.SerializeToString())])
        # rewrite it as the previous version stored it: cumulative count, payload
        storage.db[message_key(b"s", 0)] = U64.pack(0) + b"old"
        (record,) = machine.read("s", 0).records
        assert (record.data, record.append_time_ms, record.envelope) == (b"old", 0, b"")
    finally:
        storage.close()


def test_message_id_duplicates_are_acknowledged_with_the_original_offset(
    client: Client,
) -> None:
    first = client.append("env-dedup", b"one", envelope=Envelope(message_id="m1"))
    assert (first.offsets, first.duplicate) == ([0], False)
    again = client.append("env-dedup", b"one again", envelope=Envelope(message_id="m1"))
    assert (again.offsets, again.duplicate, again.duplicates) == ([0], True, (0,))
    mixed = client.append("env-dedup", b"two", b"one", b"plain", envelopes=[
        Envelope(message_id="m2"), Envelope(message_id="m1"), None])
    assert (mixed.offsets, mixed.duplicate, mixed.duplicates) == ([1, 0, 2], False, (1,))
    assert [r.data for r in client.read("env-dedup").records] == [b"one", b"two", b"plain"]
    # concurrent callers coalesced into one request each get their own answer
    answers: dict[int, list[int]] = {}

    def one(i: int) -> None:
        envelope = Envelope(message_id="m2" if i % 2 else f"new-{i}")
        answers[i] = client.append("env-dedup", f"c{i}", envelope=envelope).offsets

    at_once(one, 8)
    assert all(answers[i] == [1] for i in range(1, 8, 2))
    records = {r.offset: r for r in client.read("env-dedup").records}
    for i in range(0, 8, 2):
        (offset,) = answers[i]
        assert records[offset].envelope == Envelope(message_id=f"new-{i}")
    assert len(records) == 3 + 4
    with pytest.raises(errors.InvalidArgument, match=r"duplicate window of .* over the limit"):
        client.consumer.configure_session("env-dedup", duplicate_window_ms=8 * 24 * 3600 * 1000)
    client.consumer.configure_session("env-dedup", duplicate_window_ms=1)
    # a 1 ms window has passed by the next append: m1 is a new message
    assert client.append("env-dedup", b"late", envelope=Envelope(message_id="m1")).offsets == [7]


def test_cli_append_of_a_known_message_id_prints_the_original_offset(
    cluster: InProcessCluster,
) -> None:
    done = _cli(cluster, "append", "env-cli-dup", "x", "--message-id", "same", "--json")
    assert json.loads(done.stdout)["offsets"] == [0]
    done = _cli(cluster, "append", "env-cli-dup", "y", "--message-id", "same", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert (answer["offsets"], answer["duplicates"]) == ([0], [0])


# -- request-response --------------------------------------------------------------------------
def _exists(client: Client, session: str) -> bool:
    try:
        client.describe_session(session)
    except errors.NotFound:
        return False
    return True


def _serve(client: Client, session: str, group: str, count: int, stop: threading.Event) -> None:
    """Answer ``count`` requests of ``session`` with their body doubled (replying twice to
    the first: the second answer must be recognized as a duplicate)."""
    wait_until(lambda: stop.is_set() or _exists(client, session), 30,
               f"the first request in {session!r}")
    answered = 0
    while answered < count and not stop.is_set():
        batch = client.consumer.receive(session, group, max_messages=10, wait_ms=200)
        for message in batch.messages:
            result = client.reply(message, message.data * 2)
            if answered == 0:
                again = client.reply(message, message.data * 2)
                assert again.duplicate and again.offsets == result.offsets
            answered += 1
        client.consumer.complete(batch.messages)


def test_send_request_returns_the_reply_matched_by_correlation_id(client: Client) -> None:
    client.consumer.create_group("rr-g", lock_ms=30_000)
    stop = threading.Event()
    server = threading.Thread(target=_serve, args=(client, "rr-requests", "rr-g", 6, stop))
    server.start()
    try:
        replies: dict[int, object] = {}

        def ask(i: int) -> None:
            replies[i] = client.send_request("rr-requests", f"q{i}", timeout=20)

        at_once(ask, 6)
    finally:
        stop.set()
        server.join()
    for i, reply in replies.items():
        assert reply.data == f"q{i}q{i}".encode()  # type: ignore[attr-defined]
    # each request carried a message id and the client's reply session; the reply's
    # correlation id is that id, and its own message id is derived from it
    requests = client.read("rr-requests").records
    assert {r.envelope.reply_to for r in requests if r.envelope} == {client.reply_session}
    by_id = {r.envelope.message_id: r for r in requests if r.envelope}
    answers = client.read(client.reply_session).records
    assert len(answers) == 6  # the second reply to the first request wrote nothing
    for answer in answers:
        assert answer.envelope is not None
        assert answer.envelope.correlation_id in by_id
        assert answer.envelope.message_id == f"{answer.envelope.correlation_id}/reply"


def test_a_request_without_a_reply_times_out_precisely(client: Client) -> None:
    with pytest.raises(errors.DeadlineExceeded, match=r"no reply to request '.+' in session "
                       r"'replies/.+' within 0\.3s"):
        client.send_request("rr-nobody", b"hello?", timeout=0.3)
    (request,) = client.read("rr-nobody").records
    client.reply(request, b"too late")  # nobody waits for it now: skipped
    client.consumer.create_group("rr-late", lock_ms=30_000)
    stop = threading.Event()
    server = threading.Thread(target=_serve, args=(client, "rr-nobody", "rr-late", 2, stop))
    server.start()
    try:
        # the old request is served again (it was never completed) and a new one gets its
        # own answer, not the late one
        assert client.send_request("rr-nobody", b"again", timeout=20).data == b"againagain"
    finally:
        stop.set()
        server.join()
    with pytest.raises(errors.InvalidArgument, match="message 0 names no reply_to session"):
        client.reply(Record(0, b"a message without an envelope"), b"x")
    with pytest.raises(errors.InvalidArgument, match="timeout must be positive"):
        client.send_request("rr-nobody", b"x", timeout=0)


# -- lock renewal ------------------------------------------------------------------------------
@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
def test_renewing_a_lock_keeps_it_past_its_first_expiry(client: Client) -> None:
    client.append("lock-renew", b"slow", b"other")
    client.consumer.create_group("lock-g", lock_ms=2_500, max_deliveries=5)
    (message,) = client.consumer.receive("lock-renew", "lock-g", max_messages=1).messages
    (renewed,) = client.consumer.renew_locks([message], lock_ms=30_000)
    assert renewed.locked_until_ms >= message.locked_until_ms - 2_500 + 30_000
    assert (renewed.offset, renewed.delivery_count) == (message.offset, message.delivery_count)
    wait_until(lambda: time.time() * 1000 > message.locked_until_ms + 200, 10,
               "the first lock's expiry")
    # still locked: the next receive skips it, and completing it succeeds
    (second,) = client.consumer.receive("lock-renew", "lock-g").messages
    assert second.offset == 1
    assert client.consumer.complete([renewed]).completed == 1
    with pytest.raises(errors.FailedPrecondition, match=r"offset 0 .* holds no lock"):
        client.consumer.renew_locks([renewed])
    with pytest.raises(errors.InvalidArgument, match="offset 1 is renewed twice"):
        client.consumer.renew_locks([second, second])


def test_an_expired_lock_cannot_be_renewed(client: Client) -> None:
    client.append("lock-expired", b"x")
    client.consumer.create_group("lock-e", lock_ms=300, max_deliveries=5)
    (message,) = client.consumer.receive("lock-expired", "lock-e").messages
    wait_until(lambda: time.time() * 1000 > message.locked_until_ms + 200, 10, "lock expiry")
    with pytest.raises(errors.FailedPrecondition, match=r"the lock on offset 0 .* expired"):
        client.consumer.renew_locks([message])


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
def test_a_processor_handler_may_run_longer_than_the_lock(cluster: InProcessCluster) -> None:
    """The processor renews its session lease every third of it, and a lease renewal extends
    the owner's message locks with it (``leases.renew``), checked against the fencing token:
    a handler slower than the group's lock still completes its batch on the first delivery."""
    session = "lock-long"
    deliveries: list[int] = []

    async def main() -> int:
        async with AsyncClient(cluster.addresses, deadline=DEADLINE) as aclient:
            await aclient.consumer.create_group("long", lock_ms=2_000, max_deliveries=5)
            await aclient.append(session, b"work")

            async def handle(messages: list[ReceivedMessage], context: SessionContext) -> None:
                deliveries.extend(m.delivery_count for m in messages)
                if messages[0].delivery_count == 1:
                    await asyncio.sleep(3.5)  # longer than the 2 s lock

            # the lease (3 s, renewed every second) carries the locks past their 2 s
            processor = AsyncSessionProcessor(
                aclient, "long", handle, prefix=session, max_sessions=1, lease_ms=3_000,
            )
            async with processor:
                await eventually(lambda: processor.processed > 0, 20,
                                 "the processor to complete the batch")
            return processor.processed

    assert asyncio.run(main()) == 1
    assert deliveries == [1]
