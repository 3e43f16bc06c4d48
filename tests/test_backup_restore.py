"""``quorumlog backup`` while the cluster serves a write load, ``quorumlog restore`` into the
data directories of a new 3-node cluster on other ports, and the round trip: the new cluster
holds every append acknowledged before the backup started, exactly the original's messages
(a prefix of each session), its own membership, and keeps appending at the next offsets.
A damaged, truncated or misdirected restore exits 2 with one line and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cluster_harness import LocalCluster, running_cluster
from ops_helpers import WriteLoad, cli, members, read_all

from quorumlog.client import Client
from quorumlog.client.sdk import Consistency

pytestmark = pytest.mark.cluster

SESSIONS = [f"session-{i}" for i in range(4)]


def restore_cli(backup: Path, node_name: str, data_dir: Path, peers: str) -> object:
    return cli("restore", str(backup), "--data-dir", str(data_dir), "--id", node_name,
               "--peers", peers)


def test_backup_under_load_restores_into_a_new_cluster(tmp_path: Path) -> None:
    backup = tmp_path / "cluster.qlbackup"
    for root in ("old", "new"):
        (tmp_path / root).mkdir()
    with running_cluster(tmp_path / "old", 3) as cluster:
        with Client(cluster.addresses, deadline=30) as client:
            for i in range(400):
                client.append(SESSIONS[i % 4], f"before-{i}".encode())
        load = WriteLoad(cluster.addresses, limit=3000, seconds=60).start()
        try:
            before = {s: len(load.acknowledged.get(s, {})) for s in SESSIONS}
            result = cli("backup", "--out", str(backup), "--cluster",
                         ",".join(cluster.addresses), "--json")
        finally:
            load.stop()
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        print(f"backup: {report['bytes']} bytes at index {report['applied_index']} in "
              f"{report['seconds']}s while {load.done} appends ran, {len(load.failures)} failed")
        assert report["bytes"] == backup.stat().st_size > 0
        assert not load.failures, load.failures[:3]
        with Client(cluster.addresses, deadline=30) as client:
            original = {s: read_all(client, s, Consistency.LINEARIZABLE) for s in SESSIONS}

    restored = LocalCluster(tmp_path / "new", 3)
    peers = ",".join(f"{node.name}={node.peer_addr}" for node in restored.nodes.values())
    for node in restored.nodes.values():
        result = restore_cli(backup, node.name, node.data_dir, peers)
        assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    # A restore refuses a directory that already holds data, and leaves it as it was.
    again = restore_cli(backup, "n1", restored.nodes["n1"].data_dir, peers)
    assert again.returncode == 2 and "already holds data" in again.stderr  # type: ignore[attr-defined]
    try:
        restored.start()
        restored.wait_leader(60)
        leader = restored.wait_leader(60)
        assert set(members(restored, leader)) == {"n1", "n2", "n3"}
        status = restored.status(leader, timeout=5)
        assert {m.peer_address for m in status.members} == {
            node.peer_addr for node in restored.nodes.values()
        }
        with Client(restored.addresses, deadline=30) as client:
            for session in SESSIONS:
                copy = read_all(client, session, Consistency.LINEARIZABLE)
                assert copy == original[session][: len(copy)], session
                assert len(copy) >= 100 + before[session], session  # acknowledged before
                appended = client.append(session, b"after restore")
                assert appended.first_offset == len(copy)
    except BaseException:
        print(restored.logs())
        raise
    finally:
        restored.stop()


def test_restore_refuses_a_damaged_or_truncated_backup(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    with running_cluster(tmp_path / "old", 3) as cluster:
        with Client(cluster.addresses, deadline=30) as client:
            client.append("s", b"x" * 1000)
        backup = tmp_path / "b.qlbackup"
        result = cli("backup", "--out", str(backup), "--cluster", ",".join(cluster.addresses))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"backup {backup}: "), result.stdout
    data = bytearray(backup.read_bytes())
    damaged = tmp_path / "damaged.qlbackup"
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    truncated = tmp_path / "truncated.qlbackup"
    truncated.write_bytes(backup.read_bytes()[:-100])
    for path, reason in ((damaged, "damaged"), (truncated, "damaged"),
                         (tmp_path / "missing", "cannot read")):
        target = tmp_path / f"dir-{path.name}"
        result = restore_cli(path, "n1", target, "n1=127.0.0.1:7101")
        assert result.returncode == 2, result.stderr  # type: ignore[attr-defined]
        lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
        assert len(lines) == 1 and reason in lines[0], lines
        assert not target.exists()
    result = restore_cli(backup, "n9", tmp_path / "x", "n1=127.0.0.1:7101")
    assert result.returncode == 2 and "--id" in result.stderr  # type: ignore[attr-defined]
    # Unreachable cluster: exit 1, and no file left behind.
    out = tmp_path / "none.qlbackup"
    result = cli("backup", "--out", str(out), "--cluster", "127.0.0.1:1", "--deadline", "2")
    assert result.returncode == 1 and not out.exists(), result.stderr
    assert not list(tmp_path.glob(".none.qlbackup*"))
