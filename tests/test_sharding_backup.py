"""A sharded cluster's backup and restore, with real node processes: ``quorumlog backup`` of
a 3-node, 3-shard cluster writes a bundle (the meta group's backup and each shard's, each
from that group's leader), ``quorumlog restore`` seeds a new 3-node cluster on other ports
from it, and the new cluster serves every session from its hash shard with exactly the
original's messages, its consumer group and session state, and keeps appending. A bundle
with one damaged section is refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cluster_harness import LocalCluster, running_cluster, wait_until
from ops_helpers import cli, read_all

from quorumlog.client import Client
from quorumlog.client.retry import RetryPolicy
from quorumlog.client.sdk import Consistency
from quorumlog.proto import backup_bundle
from quorumlog.proto.sharding import shard_of

pytestmark = pytest.mark.cluster

SHARDS = 3
SESSIONS = [f"bk/{i}" for i in range(12)]
RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.1)


def _restore(backup: Path, cluster: LocalCluster) -> list[object]:
    peers = ",".join(f"{node.name}={node.peer_addr}" for node in cluster.nodes.values())
    return [cli("restore", str(backup), "--data-dir", str(node.data_dir), "--id", node.name,
                "--peers", peers) for node in cluster.nodes.values()]


def test_a_sharded_backup_restores_every_shard_into_a_new_cluster(tmp_path: Path) -> None:
    assert {shard_of(s, SHARDS) for s in SESSIONS} == set(range(SHARDS))
    backup = tmp_path / "sharded.qlbackup"
    for root in ("old", "new"):
        (tmp_path / root).mkdir()
    with running_cluster(tmp_path / "old", 3, ["--init-shards", str(SHARDS)]) as cluster:
        with Client(cluster.addresses, deadline=30, retry=RETRY) as client:
            for i in range(120):
                client.append(SESSIONS[i % len(SESSIONS)], f"m{i}".encode())
            client.consumer.create_group("workers", lock_ms=30_000)
            lease = client.consumer.accept(SESSIONS[0], "workers", "c1")
            client.consumer.set_state(SESSIONS[0], "workers", b"checkpoint",
                                      expected_version=0, token=lease.token)
            original = {s: read_all(client, s, Consistency.LINEARIZABLE) for s in SESSIONS}
        result = cli("backup", "--out", str(backup), "--cluster", ",".join(cluster.addresses),
                     "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["bytes"] == backup.stat().st_size > 0
        bundle = backup_bundle.read_bundle(backup)
        assert [s.section for s in bundle.sections] == ["meta", "shard 0", "shard 1", "shard 2"]
        print(f"sharded backup: {report['bytes']} bytes, sections "
              f"{[(s.section, s.size, s.applied_index) for s in bundle.sections]}")

    restored = LocalCluster(tmp_path / "new", 3)
    for outcome in _restore(backup, restored):
        assert outcome.returncode == 0, outcome.stderr  # type: ignore[attr-defined]
    try:
        restored.start()
        restored.wait_leader(60)
        with Client(restored.addresses, deadline=30, retry=RETRY) as client:
            wait_until(lambda: all(
                report.status is not None and report.status.shard_count == SHARDS
                and all(shard.leader for shard in report.status.shards)
                for report in client.cluster_status().reachable), 60, "every shard led")
            for session in SESSIONS:
                assert read_all(client, session, Consistency.LINEARIZABLE) == original[session]
                appended = client.append(session, b"after restore")
                assert appended.first_offset == len(original[session])
            state = client.consumer.get_state(SESSIONS[0])
            assert state.data == b"checkpoint"
            received = client.consumer.receive(SESSIONS[1], "workers")  # the group came too
            assert received.messages and received.messages[0].offset == 0
    except BaseException:
        print(restored.logs())
        raise
    finally:
        restored.stop()

    # One damaged byte inside a section: refused before anything is written.
    damaged = tmp_path / "damaged.qlbackup"
    data = bytearray(backup.read_bytes())
    data[bundle.sections[2].offset + 40] ^= 0xFF
    damaged.write_bytes(bytes(data))
    target = tmp_path / "untouched"
    outcome = cli("restore", str(damaged), "--data-dir", str(target), "--id", "n1",
                  "--peers", "n1=127.0.0.1:1")
    assert outcome.returncode == 2 and len(outcome.stderr.strip().splitlines()) == 1
    assert not target.exists()
