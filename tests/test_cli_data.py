"""The data-plane CLI (status, append, read, tail, sessions) run as a subprocess against a fake
in-process cluster: exact JSON shapes, exit codes, one-line errors, deadlines."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from quorumlog_fake import FakeCluster, dead_address
from waiting import wait_until

TIMEOUT = 60.0  # per CLI run; generous for a loaded 2-core machine
STATUS_KEYS = {
    "id", "address", "role", "term", "leader", "commit_index", "applied_index", "last_index", "pid",
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[FakeCluster]:
    fake = FakeCluster(3)
    try:
        yield fake
    finally:
        fake.close()


def cli(*args: str, cluster: str | None = None, env: dict[str, str] | None = None) -> (
    subprocess.CompletedProcess[str]
):
    environment = {k: v for k, v in os.environ.items() if k != "QUORUMLOG_CLUSTER"}
    environment.update(env or {})
    command = [sys.executable, "-m", "quorumlog.client.cli", *args]
    if cluster is not None:
        command += ["--cluster", cluster]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=TIMEOUT, env=environment, check=False
    )


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_status_json_and_table(cluster: FakeCluster) -> None:
    dead = dead_address()
    addresses = f"{cluster.addresses},{dead}"
    rows = ok_json(cli("status", "--json", "--deadline", "3", cluster=addresses))
    assert isinstance(rows, list) and len(rows) == 4
    for row in rows:
        assert set(row) >= STATUS_KEYS
    leader, follower, _, unreachable = rows
    assert (leader["id"], leader["role"], leader["leader"]) == ("n1", "leader", "n1")
    assert leader["address"] == cluster.nodes[0].address
    assert isinstance(leader["term"], int) and isinstance(leader["pid"], int)
    assert (follower["role"], follower["leader"]) == ("follower", "n1")
    assert unreachable["address"] == dead and unreachable["role"] == "unreachable"
    assert unreachable["reachable"] is False and "UNAVAILABLE" in unreachable["error"]

    table = cli("status", cluster=cluster.addresses)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [key.upper() for key in (
        "id", "address", "role", "term", "leader", "commit_index", "applied_index",
        "last_index", "pid",
    )]
    assert lines[1].split()[:3] == ["n1", cluster.nodes[0].address, "leader"]


def test_append_read_json_shapes(cluster: FakeCluster) -> None:
    appended = ok_json(cli("append", "orders/1", "created", "paid", "--json",
                           cluster=cluster.nodes[2].address))
    assert appended["offsets"] == [0, 1]
    assert ok_json(cli("append", "orders/1", "shipped", "--json", cluster=cluster.addresses))[
        "offsets"
    ] == [2]
    text = cli("append", "orders/1", "x", "y", cluster=cluster.addresses)
    assert (text.returncode, text.stdout) == (0, "3\n4\n")

    page = ok_json(cli("read", "orders/1", "--from", "1", "--limit", "2", "--json",
                       cluster=cluster.addresses))
    assert {"session", "messages", "next_offset"} <= set(page)
    assert page["session"] == "orders/1"
    assert page["messages"] == [{"offset": 1, "data": "paid"}, {"offset": 2, "data": "shipped"}]
    assert page["next_offset"] == 3

    plain = cli("read", "orders/1", cluster=cluster.addresses)
    assert plain.returncode == 0
    assert plain.stdout.splitlines() == ["0\tcreated", "1\tpaid", "2\tshipped", "3\tx", "4\ty"]


def test_binary_messages_get_base64(cluster: FakeCluster) -> None:
    raw = os.fsdecode(b"\xff\xfebin")  # a command-line argument that is not UTF-8
    assert ok_json(cli("append", "bin", raw, "text", "--json", cluster=cluster.addresses))[
        "offsets"
    ] == [0, 1]
    page = ok_json(cli("read", "bin", "--json", cluster=cluster.addresses))
    binary, text = page["messages"]
    assert base64.b64decode(binary["data_b64"]) == b"\xff\xfebin"
    assert binary["data"] == "\\xff\\xfebin"
    assert text == {"offset": 1, "data": "text"}


def test_tail_and_sessions(cluster: FakeCluster) -> None:
    ok_json(cli("append", "tailme", "a", "b", "c", "--json", cluster=cluster.addresses))
    tailed = cli("tail", "tailme", "--from", "1", "--limit", "2", cluster=cluster.addresses)
    assert (tailed.returncode, tailed.stdout) == (0, "1\tb\n2\tc\n"), tailed.stderr

    listed = ok_json(cli("sessions", "--json", cluster=cluster.addresses))
    names = [item["session"] for item in listed["sessions"]]
    assert names == sorted(names) and "tailme" in names  # every page was fetched
    entry = next(item for item in listed["sessions"] if item["session"] == "tailme")
    assert (entry["first_offset"], entry["next_offset"], entry["count"]) == (0, 3, 3)
    table = cli("sessions", "--prefix", "tail", cluster=cluster.addresses)
    assert table.returncode == 0 and table.stdout.splitlines()[1].split()[0] == "tailme"


def test_tail_from_end_waits_for_new_messages(cluster: FakeCluster) -> None:
    ok_json(cli("append", "live", "old", "--json", cluster=cluster.addresses))
    subscribes_before = cluster.total_calls("Subscribe")
    command = [sys.executable, "-m", "quorumlog.client.cli", "tail", "live", "--limit", "1",
               "--cluster", cluster.addresses]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        try:
            # the tail starts at the end: wait until its stream is open, then append
            wait_until(lambda: cluster.total_calls("Subscribe") != subscribes_before
                       or process.poll() is not None, TIMEOUT, "the tail's stream to open")
            assert process.poll() is None, "the tail exited before its stream opened"
            ok_json(cli("append", "live", "new", "--json", cluster=cluster.addresses))
            out, err = process.communicate(timeout=TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert (process.returncode, out) == (0, "1\tnew\n"), err


def test_cluster_defaults_to_environment(cluster: FakeCluster) -> None:
    result = cli("append", "envs", "m", "--json", env={"QUORUMLOG_CLUSTER": cluster.addresses})
    assert ok_json(result)["offsets"] == [0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["read", "s", "--limit", "-1"], "--limit must be at least 1"),
        (["read", "s", "--limit", "many"], "--limit must be an integer"),
        (["read", "s", "--from", "-3"], "--from must be at least 0"),
        (["read", ""], "SESSION must be a non-empty"),
        (["read"], "SESSION must be a non-empty"),
        (["append", "s"], "at least one MESSAGE"),
        (["append", "", "m"], "SESSION must be a non-empty"),
        (["tail", "s", "--limit", "0"], "--limit must be at least 1"),
        (["sessions", "--deadline", "soon"], "--deadline must be a number"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(
    cluster: FakeCluster, args: list[str], fragment: str
) -> None:
    assert_one_line_error(cli(*args, cluster=cluster.addresses), f"quorumlog {args[0]}:", fragment)


def test_bad_cluster_address_is_one_line() -> None:
    assert_one_line_error(cli("status", cluster="nohost"), "invalid node address")


def test_server_errors_are_one_line(cluster: FakeCluster) -> None:
    assert_one_line_error(cli("read", "missing", cluster=cluster.addresses), "not_found", "missing")


@pytest.mark.parametrize("command", [["status"], ["append", "s", "m"], ["read", "s"],
                                     ["sessions"], ["tail", "s", "--from", "0"]])
def test_unreachable_cluster_is_one_line_within_deadline(command: list[str]) -> None:
    addresses = f"{dead_address()},{dead_address()}"
    started = time.monotonic()
    result = cli(*command, "--deadline", "1", cluster=addresses)
    elapsed = time.monotonic() - started
    assert_one_line_error(result, f"quorumlog {command[0]}:", addresses)
    assert result.returncode == 1
    assert elapsed < 1 + 20  # the deadline plus interpreter start-up on a loaded machine
