"""Scheduled delivery, time to live and defer (issue 20, parts 3-5) on an in-process cluster
through the SDK: a scheduled message is stored in order but reaches consumer groups only once
the leader's clock passes its time, and later messages go first; cancel by offset; an expired
message is skipped and counted, or dead-lettered as "expired"; a deferred message leaves the
delivery order and comes again only by its offset; bad input is refused precisely."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_harness import wait_until
from inprocess_cluster import InProcessCluster, inprocess_cluster
from state_helpers import dump

from quorumlog.client import errors
from quorumlog.client.envelope import Envelope
from quorumlog.client.sdk import Client
from quorumlog.node.common.limits import Limits
from quorumlog.node.state.consumer_records import TIMED_PREFIX
from quorumlog.node.state.state_machine import SessionStateMachine
from quorumlog.node.storage.raft_store import RocksStorage
from quorumlog.proto import commands_pb2, envelope_pb2
from quorumlog.proto import consumer_commands_pb2 as cc
from quorumlog.raft.types import Entry

DEADLINE = 30.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with inprocess_cluster(tmp_path_factory.mktemp("timed")) as running:
        yield running


@pytest.fixture
def client(cluster: InProcessCluster) -> Iterator[Client]:
    with Client(cluster.addresses, deadline=DEADLINE, seed=5) as created:
        yield created


def now_ms() -> int:
    return int(time.time() * 1000)


def offsets(client: Client, session: str, group: str) -> list[int]:
    batch = client.consumer.receive(session, group, max_messages=100)
    client.consumer.complete(batch.messages)
    return [m.offset for m in batch.messages]


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
def test_a_scheduled_message_is_delivered_after_its_time_and_later_ones_go_first(
    client: Client,
) -> None:
    client.consumer.create_group("sched-g", lock_ms=30_000)
    at = now_ms() + 4_000  # room for three appends and a receive on a loaded machine
    client.append("sched", b"first")
    client.append("sched", b"later", envelope=Envelope(deliver_at_ms=at, subject="reminder"))
    client.append("sched", b"third")
    assert offsets(client, "sched", "sched-g") == [0, 2]
    (listed,) = client.consumer.scheduled("sched")
    assert (listed.offset, listed.deliver_at_ms, listed.canceled) == (1, at, False)
    # the raw log has it in order, with its time in the envelope
    records = client.read("sched").records
    assert [r.data for r in records] == [b"first", b"later", b"third"]
    assert records[1].envelope == Envelope(subject="reminder", deliver_at_ms=at)
    wait_until(lambda: now_ms() > at + 100, 10, "the scheduled time")
    batch = client.consumer.receive("sched", "sched-g", max_messages=10, wait_ms=5_000)
    assert [(m.offset, m.data, m.delivery_count) for m in batch.messages] == [(1, b"later", 1)]
    client.consumer.complete(batch.messages)
    assert client.consumer.scheduled("sched") == []
    assert [m.offset for m in client.consumer.scheduled("sched", include_due=True)] == [1]


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
def test_canceling_a_scheduled_message_keeps_it_from_every_group(client: Client) -> None:
    client.consumer.create_group("cancel-a", lock_ms=30_000)
    client.consumer.create_group("cancel-b", lock_ms=30_000)
    soon = now_ms() + 4_000  # not due before the cancel below, even on a loaded machine
    client.append("cancel", b"plain")
    client.append("cancel", b"never", envelope=Envelope(deliver_at_ms=soon))
    client.append("cancel", b"far", envelope=Envelope(deliver_at_ms=now_ms() + 3_600_000))
    assert offsets(client, "cancel", "cancel-a") == [0]  # group a has walked past offset 1
    client.consumer.cancel_scheduled("cancel", [1])
    assert [(m.offset, m.canceled) for m in client.consumer.scheduled("cancel")] == [
        (1, True), (2, False)]
    with pytest.raises(errors.FailedPrecondition, match="offset 1 of session 'cancel' is "
                       "canceled already"):
        client.consumer.cancel_scheduled("cancel", [2, 1])
    with pytest.raises(errors.FailedPrecondition, match="offset 0 of session 'cancel' is "
                       "not a scheduled message"):
        client.consumer.cancel_scheduled("cancel", [0])
    assert [m.canceled for m in client.consumer.scheduled("cancel")] == [True, False]
    wait_until(lambda: now_ms() > soon + 100, 10, "the canceled message's time")
    assert offsets(client, "cancel", "cancel-a") == []  # a held it: dropped when due
    assert offsets(client, "cancel", "cancel-b") == [0]  # b meets it canceled: skipped
    client.append("cancel", b"after")
    assert offsets(client, "cancel", "cancel-b") == [3]
    due = now_ms() + 300
    client.append("cancel", b"due", envelope=Envelope(deliver_at_ms=due))  # offset 4
    wait_until(lambda: now_ms() > due + 100, 10, "its time")
    with pytest.raises(errors.FailedPrecondition, match="offset 4 of session 'cancel' was "
                       "due at"):
        client.consumer.cancel_scheduled("cancel", [4])
    past = client.append("cancel", b"past", envelope=Envelope(deliver_at_ms=now_ms() - 1))
    with pytest.raises(errors.FailedPrecondition, match="is not a scheduled message"):
        client.consumer.cancel_scheduled("cancel", past.offsets)  # a past time: at once


def test_expired_messages_are_skipped_and_counted_or_dead_lettered(client: Client) -> None:
    client.consumer.create_group("ttl-g", lock_ms=30_000)
    client.append("ttl", b"keep")  # creates the session, so it can be configured
    assert offsets(client, "ttl", "ttl-g") == [0]
    client.append("ttl", b"short", envelope=Envelope(time_to_live_ms=300))
    client.append("ttl", b"long", envelope=Envelope(time_to_live_ms=600_000))
    wait_until(lambda: client.read("ttl").records[-1].append_time_ms + 400 < now_ms(), 10,
               "the short time to live")
    assert offsets(client, "ttl", "ttl-g") == [2]
    (status,) = client.consumer.sessions(session="ttl")
    assert status.messages_expired == 1
    client.consumer.configure_session("ttl", dead_letter_expired=True)
    client.append("ttl", b"doomed", envelope=Envelope(time_to_live_ms=200))
    wait_until(lambda: client.read("ttl").records[-1].append_time_ms + 300 < now_ms(), 10,
               "the time to live")
    assert offsets(client, "ttl", "ttl-g") == []
    (letter,) = client.consumer.dead_letters("ttl")
    assert letter.data == b"doomed" and letter.reason.startswith("expired: its time to live")
    assert letter.envelope == Envelope(time_to_live_ms=200)


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
def test_an_expired_redelivery_is_not_delivered_again(client: Client) -> None:
    client.consumer.create_group("ttl-r", lock_ms=200, max_deliveries=10)
    client.append("ttl-redeliver", b"brief", envelope=Envelope(time_to_live_ms=3_000))
    (first,) = client.consumer.receive("ttl-redeliver", "ttl-r").messages  # not settled
    wait_until(lambda: first.append_time_ms + 3_100 < now_ms(), 10, "the time to live")
    assert offsets(client, "ttl-redeliver", "ttl-r") == []


def test_a_deferred_message_comes_again_only_by_its_offset(client: Client) -> None:
    client.consumer.create_group("defer-g", lock_ms=30_000)
    client.append("defer", b"a", b"b", b"c")
    batch = client.consumer.receive("defer", "defer-g", max_messages=10)
    a, b, c = batch.messages
    assert client.consumer.defer([b]).deferred == 1
    client.consumer.complete([a, c])
    client.append("defer", b"d")
    assert offsets(client, "defer", "defer-g") == [3]  # b is out of the delivery order
    (again,) = client.consumer.receive("defer", "defer-g", deferred_offsets=[1]).messages
    assert (again.offset, again.data, again.delivery_count) == (1, b"b", 2)
    with pytest.raises(errors.NotFound, match="offset 1 of session 'defer' in group "
                       "'defer-g' is not deferred"):
        client.consumer.receive("defer", "defer-g", deferred_offsets=[1])  # locked now
    client.consumer.abandon([again])  # back to deferred, not into the delivery order
    assert offsets(client, "defer", "defer-g") == []
    (third,) = client.consumer.receive("defer", "defer-g", deferred_offsets=[1]).messages
    assert third.delivery_count == 3
    assert client.consumer.complete([third]).completed == 1
    with pytest.raises(errors.NotFound, match="is not deferred"):
        client.consumer.receive("defer", "defer-g", deferred_offsets=[1])


def test_bad_times_are_refused_precisely(client: Client) -> None:
    year = 366 * 24 * 3600 * 1000
    with pytest.raises(errors.InvalidArgument, match=r"message 0: deliver_at_ms \d+ is more "
                       r"than 366 days after the leader's clock"):
        client.append("bad-times", b"x", envelope=Envelope(deliver_at_ms=now_ms() + 2 * year))
    with pytest.raises(errors.InvalidArgument, match="message 0: time_to_live_ms"):
        client.append("bad-times", b"x", envelope=Envelope(time_to_live_ms=year + 1))
    with pytest.raises(errors.NotFound):
        client.read("bad-times")  # nothing was appended


def _cli(cluster: InProcessCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quorumlog.client.cli", *args, "--cluster",
         ",".join(cluster.addresses)],
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
def test_cli_schedules_lists_and_cancels(cluster: InProcessCluster) -> None:
    done = _cli(cluster, "append", "cli-sched", "soon", "--deliver-at", "+3600",
                "--ttl", "7200", "--json")
    assert done.returncode == 0, done.stderr
    later = datetime.datetime.fromtimestamp(time.time() + 100 * 86_400, tz=datetime.UTC)
    stamp = later.replace(microsecond=0).isoformat().replace("+00:00", "Z")  # ...:05Z
    at = _cli(cluster, "append", "cli-sched", "iso", "--deliver-at", stamp)
    assert at.returncode == 0, at.stderr
    listed = json.loads(_cli(cluster, "schedule", "list", "cli-sched", "--json").stdout)
    soon, iso = listed["scheduled"]
    assert (soon["offset"], soon["canceled"]) == (0, False)
    assert abs(soon["deliver_at_ms"] - (now_ms() + 3_600_000)) < 120_000
    assert (iso["offset"], iso["deliver_at"]) == (1, stamp.replace("Z", ".000Z"))
    record = json.loads(_cli(cluster, "read", "cli-sched", "--json").stdout)["messages"][0]
    assert record["envelope"]["time_to_live_ms"] == 7_200_000
    done = _cli(cluster, "schedule", "cancel", "cli-sched", "0")
    assert (done.returncode, done.stdout.strip()) == (0, "canceled 1 scheduled messages")
    text = _cli(cluster, "schedule", "list", "cli-sched").stdout.splitlines()
    assert text == [f"0\t{soon['deliver_at']}\tcanceled",
                    f"1\t{iso['deliver_at']}\tscheduled"]
    again = _cli(cluster, "schedule", "cancel", "cli-sched", "0")
    assert again.returncode == 1
    assert "offset 0 of session 'cli-sched' is canceled already" in again.stderr
    bad = _cli(cluster, "append", "cli-sched", "x", "--deliver-at", "tomorrow")
    assert bad.returncode == 2 and "--deliver-at 'tomorrow': expected an ISO 8601" in bad.stderr
    bad = _cli(cluster, "append", "cli-sched", "x", "--deliver-at", stamp.removesuffix("Z"))
    assert bad.returncode == 2 and "with a zone" in bad.stderr  # no zone: ambiguous
    bad = _cli(cluster, "append", "cli-sched", "x", "--ttl", "-1")
    assert (bad.returncode, bad.stderr.strip()) == (
        2, "quorumlog append: --ttl '-1': expected a positive number of seconds")


# -- the replicated state: grouping of entries never changes the bytes ---------------------------
def _apply_bytes(path: Path, entries: list[Entry], grouped: bool) -> list[tuple[bytes, bytes]]:
    storage = RocksStorage(path)
    try:
        machine = SessionStateMachine(storage, Limits())
        if grouped:
            machine.apply(entries)
        else:
            for one in entries:
                machine.apply([one])
        return dump(storage)
    finally:
        storage.close()


def test_timed_and_deferred_state_does_not_depend_on_apply_grouping(tmp_path: Path) -> None:
    t = 50_000_000

    def timed(**fields: int) -> bytes:
        return envelope_pb2.Envelope(**fields).SerializeToString()  # type: ignore[arg-type]

    def consumer(**kind: object) -> commands_pb2.Command:
        return commands_pb2.Command(consumer=cc.ConsumerCommand(**kind))  # type: ignore[arg-type]

    append = commands_pb2.Command(append=commands_pb2.AppendCommand(
        session="s", messages=[b"a", b"b", b"c", b"d"],
        envelopes=[b"", timed(deliver_at_ms=t + 500), timed(time_to_live_ms=100), b""],
    ))
    receive = consumer(receive=cc.ReceiveCommand(session="s", group="g", max_messages=10))
    commands = [
        [consumer(create_group=cc.CreateGroupCommand(group="g", lock_ms=1_000))],
        [append],
        [receive],  # 0 and 3; 1 scheduled, 2 not yet expired: delivered
        [consumer(settle=cc.SettleCommand(session="s", group="g", settlements=[
            cc.Settlement(offset=3, delivery_count=1, action=3)]))],  # defer 3
        [consumer(cancel_scheduled=cc.CancelScheduledCommand(session="s", offsets=[1]))],
        [receive],  # 0 and 2 redelivered after their locks lapsed (2 now expired)
        [consumer(receive=cc.ReceiveCommand(session="s", group="g", deferred=[3]))],
        [commands_pb2.Command(trim=commands_pb2.TrimCommand(session="s", before_offset=3))],
    ]
    times = [t, t, t + 10, t + 20, t + 30, t + 2_000, t + 2_010, t + 2_020]
    entries = [
        Entry(1, i + 1, commands_pb2.CommandBatch(
            leader_time_ms=times[i], commands=batch).SerializeToString())
        for i, batch in enumerate(commands)
    ]
    one_call = _apply_bytes(tmp_path / "a", entries, grouped=True)
    assert one_call == _apply_bytes(tmp_path / "b", entries, grouped=False)
    timed_keys = [key for key, _ in one_call if key.startswith(TIMED_PREFIX)]
    assert timed_keys == []  # offsets 1 and 2 trimmed: their entries went with them
