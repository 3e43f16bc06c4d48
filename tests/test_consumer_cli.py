"""The consumer CLI (``consume``, ``dlq list|resubmit|purge``, ``sessions --json`` owner, lag and
cursor), the ``bench-consume`` command, and every pattern in ``examples/``, each run as a
subprocess against three real nodes started on free ports."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_harness import LocalCluster, running_cluster

from quorumlog.client.sdk import Client

pytestmark = pytest.mark.cluster

TIMEOUT = 120.0  # per subprocess; generous for a loaded 2-core machine
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("consumer-cli")) as running:
        yield running


def cli(
    cluster: LocalCluster, *args: str, deadline: bool = True
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "quorumlog.client.cli", *args,
               "--cluster", ",".join(cluster.addresses)]
    if deadline:
        command += ["--deadline", "30"]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_consume_completes_and_sessions_json_gains_owner_and_lag(cluster: LocalCluster) -> None:
    with Client(cluster.addresses) as client:
        client.append("cli-orders", "created", "paid", "shipped")
    first = ok_json(cli(cluster, "consume", "cli-orders", "--group", "cli-g", "--max", "2",
                        "--json"))
    assert [(m["offset"], m["data"], m["delivery_count"]) for m in first["messages"]] == [
        (0, "created", 1), (1, "paid", 1)
    ]
    assert first["settled"] == "complete" and first["backlog"] == 3
    text = cli(cluster, "consume", "cli-orders", "--group", "cli-g")
    assert text.returncode == 0, text.stderr
    assert text.stdout == "2\t1\tshipped\n"
    with Client(cluster.addresses) as client:
        lease = client.consumer.accept("cli-orders", "cli-g", "worker-7")
        client.append("cli-orders", "returned")
    listed = ok_json(cli(cluster, "sessions", "--json"))
    entry = next(item for item in listed["sessions"] if item["session"] == "cli-orders")
    assert {"session", "first_offset", "next_offset", "count", "bytes"} <= entry.keys()
    assert entry["owner"] == {"cli-g": "worker-7"}
    assert entry["lease_expires_ms"] == {"cli-g": lease.expires_ms}
    assert entry["lag"]["cli-g"] == 1 and entry["dead_letters"] == 0
    # The group's cursor: offsets 0..2 delivered and completed, 3 ("returned") not yet.
    assert entry["cursor"] == {"cli-g": 3} and entry["first_unsettled"] == {"cli-g": 3}
    assert entry["next_offset"] == 4  # the session's own key, unchanged
    refused = cli(cluster, "consume", "cli-orders", "--group", "cli-g")
    assert refused.returncode == 1 and "owned by consumer 'worker-7'" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_consume_errors_are_one_line(cluster: LocalCluster) -> None:
    with Client(cluster.addresses) as client:
        client.append("cli-errors", "x")
    missing = cli(cluster, "consume", "no-such-session", "--group", "cli-g")
    assert missing.returncode == 1 and "not_found" in missing.stderr
    unknown = cli(cluster, "consume", "cli-errors", "--group", "nope", "--no-create")
    assert unknown.returncode == 1 and "group 'nope' not found" in unknown.stderr
    usage = cli(cluster, "consume", "cli-errors")
    assert usage.returncode == 2 and "--group G is required" in usage.stderr


def test_dlq_list_and_resubmit(cluster: LocalCluster) -> None:
    with Client(cluster.addresses) as client:
        client.append("cli-dlq", "poison", "fine")
        client.consumer.create_group("cli-d")
        batch = client.consumer.receive("cli-dlq", "cli-d", max_messages=1)
        client.consumer.dead_letter(batch.messages, "cannot parse")
    listed = ok_json(cli(cluster, "dlq", "list", "cli-dlq", "--json"))
    assert [(d["sequence"], d["offset"], d["group"], d["reason"], d["data"])
            for d in listed["dead_letters"]] == [(0, 0, "cli-d", "cannot parse", "poison")]
    (letter,) = listed["dead_letters"]  # why (reason) and when, in ms and as UTC ISO 8601
    when = datetime.datetime.fromisoformat(letter["dead_lettered"].replace("Z", "+00:00"))
    assert round(when.timestamp() * 1000) == letter["dead_lettered_ms"] > 0
    resubmitted = ok_json(cli(cluster, "dlq", "resubmit", "cli-dlq", "--json"))
    assert resubmitted == {"session": "cli-dlq", "offsets": [2], "remaining": 0}
    assert ok_json(cli(cluster, "dlq", "list", "cli-dlq", "--json"))["dead_letters"] == []
    again = ok_json(cli(cluster, "consume", "cli-dlq", "--group", "cli-d", "--json"))
    assert [m["data"] for m in again["messages"]] == ["fine", "poison"]


def test_dlq_purge_text_json_and_refusal(cluster: LocalCluster) -> None:
    with Client(cluster.addresses) as client:
        client.append("cli-purge", "a", "b", "c")
        client.consumer.create_group("cli-p")
        batch = client.consumer.receive("cli-purge", "cli-p", max_messages=3)
        client.consumer.dead_letter(batch.messages, "bad")
    refused = cli(cluster, "dlq", "purge", "cli-purge", "--sequence", "1", "--sequence", "7")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "not_found: dead letter 7 of session 'cli-purge' not found" in refused.stderr
    text = cli(cluster, "dlq", "purge", "cli-purge", "--sequence", "1")
    assert text.returncode == 0, text.stderr
    assert text.stdout == "purged 1 dead letters; 2 remain\n"
    listed = ok_json(cli(cluster, "dlq", "list", "cli-purge", "--json"))
    assert [d["sequence"] for d in listed["dead_letters"]] == [0, 2]
    purged = ok_json(cli(cluster, "dlq", "purge", "cli-purge", "--json"))
    assert purged == {"session": "cli-purge", "purged": 2, "remaining": 0}
    assert ok_json(cli(cluster, "dlq", "list", "cli-purge", "--json"))["dead_letters"] == []
    usage = cli(cluster, "dlq", "purge", "cli-purge", "--sequence", "x")
    assert usage.returncode == 2 and "--sequence" in usage.stderr


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        ("request_response.py", "request-response: 5 answers matched by correlation id"),
        ("publish_subscribe.py", "publish-subscribe: 2 subscribers each received all 10"),
        ("fan_out.py", "fan-out: each of 3 groups processed all 5 events"),
        ("competing_consumers.py", "competing consumers: 12 sessions x 10 jobs over 3"),
    ],
)
def test_example_runs_against_a_cluster(
    cluster: LocalCluster, example: str, expected: str
) -> None:
    environment = {**os.environ, "QUORUMLOG_CLUSTER": ",".join(cluster.addresses)}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / example)], capture_output=True, text=True,
        timeout=TIMEOUT, env=environment, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout, result.stdout
    if example == "request_response.py":  # each answer matched its own request
        assert all(f"request x={x} -> {x * x}" in result.stdout for x in range(5))


def test_bench_consume_prints_the_figure(cluster: LocalCluster) -> None:
    report = ok_json(cli(cluster, "bench-consume", "--sessions", "4", "--messages", "200",
                         "--batch", "50", "--json", deadline=False))
    assert report["messages"] == 800 and report["sessions"] == 4
    assert report["messages_per_s"] > 0 and report["receives"] >= 16
