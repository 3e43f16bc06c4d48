"""The Node.js example (examples/node/client.js) against a real 3-node cluster: it finds the
leader, appends, reads back, and consumes one message with peek-lock (lease, receive,
complete, release); the Python SDK then checks the effects: the messages are there, the
completed message is settled (not in flight, never redelivered) and the lease is released.

Node.js and npm come from ``make testdeps`` (Debian's packages); the test runs ``npm ci`` in
the example folder itself (the exact versions of package-lock.json), as a user would.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cluster_harness import running_cluster, wait_until

from quorumlog.client import Client
from quorumlog.client.envelope import Envelope

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "node"
NPM_TIMEOUT = 300.0
NODE_TIMEOUT = 120.0
LOCK_MS = 1000


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} not found: `make testdeps` installs Node.js and npm"
    return found


def npm_ci() -> None:
    # --prefer-offline: the exact versions of package-lock.json from npm's cache when there
    result = subprocess.run(
        [tool("npm"), "ci", "--prefer-offline", "--no-audit", "--no-fund"], cwd=EXAMPLE,
        capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False,
    )
    assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"


def test_node_example_appends_reads_and_completes_one_message(tmp_path: Path) -> None:
    npm_ci()
    session, group, consumer = "node/orders-1", "node-billing", "node-worker"
    messages = ["created from Node.js", "paid from Node.js"]
    with running_cluster(tmp_path) as cluster:
        addresses = ",".join(cluster.addresses)
        command = [
            tool("node"), "client.js", "--cluster", addresses, "--session", session,
            "--group", group, "--consumer", consumer, "--lock-ms", str(LOCK_MS),
            *[argument for text in messages for argument in ("--message", text)],
        ]
        environment = {k: v for k, v in os.environ.items() if k != "QUORUMLOG_CLUSTER"}
        result = subprocess.run(
            command, cwd=EXAMPLE, capture_output=True, text=True, timeout=NODE_TIMEOUT,
            env=environment, check=False,
        )
        print(result.stdout, result.stderr)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert re.fullmatch(r"leader: n[123] at 127\.0\.0\.1:\d+ \(asked .+\)", lines[1]), lines
        assert f"appended: session {session} offsets 0..1" in result.stdout
        assert f'read: offset 0 "{messages[0]}"' in lines
        assert f'read: offset 1 "{messages[1]}"' in lines
        envelopes = [line for line in lines if line.startswith("envelope: ")]
        assert len(envelopes) == 2 and all(
            re.fullmatch(r'envelope: offset [01] message_id [0-9a-f-]{36} content_type '
                         r'"text/plain; charset=utf-8" headers sent-by=node appended at \d{13}',
                         line) for line in envelopes), envelopes
        assert f"group: {group} lock {LOCK_MS} ms, max deliveries 10 (created)" in lines
        assert f"lease: session {session} group {group} consumer {consumer} token 1" in lines
        (received,) = [line for line in lines if line.startswith("received: ")]
        match = re.fullmatch(
            rf'received: offset 0 delivery 1 "{messages[0]}" locked until (\d+)', received
        )
        assert match, received
        locked_until_ms = int(match.group(1))
        assert lines[-3:] == [
            lines[-3], f"released: session {session} group {group}", "ok"
        ] and lines[-3].startswith("completed: offset 0 ")

        with Client(addresses, deadline=30.0) as client:
            page = client.read(session, from_offset=0)
            assert [(r.offset, r.data) for r in page.records] == [
                (0, messages[0].encode()), (1, messages[1].encode()),
            ]
            # the envelopes written from Node.js, read from Python
            node_ids = [line.split()[4] for line in envelopes]
            assert [r.envelope for r in page.records] == [
                Envelope(message_id=node_id, content_type="text/plain; charset=utf-8",
                         headers={"sent-by": "node"}) for node_id in node_ids
            ]
            (status,) = client.consumer.sessions(session=session)
            (group_status,) = [g for g in status.groups if g.group == group]
            # offset 0 settled (only offset 1 left), nothing locked, the lease released
            assert (group_status.backlog, group_status.in_flight) == (1, 0), group_status
            assert group_status.owner == "" and group_status.token == 1, group_status

            # Once offset 0's lock would have expired, a receive still starts at offset 1: a
            # completed message is never redelivered. (Leader time: this machine's clock.)
            wait_until(
                lambda: time.time() * 1000 > locked_until_ms + 200, LOCK_MS / 1000 + 30,
                "the example's lock to lapse",
            )
            batch = client.consumer.receive(session, group, max_messages=10)
            assert [(m.offset, m.delivery_count, m.data) for m in batch.messages] == [
                (1, 1, messages[1].encode())
            ]
