"""Bit rot (issue 21): a byte flipped in a stored table file of a stopped node, through the
fault filesystem. On its next start the node finds it (RocksDB's block checksums, read back
by the scrub or at open; our CRC-32 on every log entry), never serves it, sets the damaged
database aside, and is caught up by its peers as a new incarnation (no vote until then);
afterwards it holds every acknowledged message."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from cluster_harness import LocalCluster, running, wait_until
from faultfs_harness import Mount

from quorumlog.client import Client
from quorumlog.node.common.config import raft_id

pytestmark = pytest.mark.cluster

SESSIONS = ("rot/a", "rot/b", "rot/c")


def test_a_flipped_byte_in_a_table_file_is_found_and_repaired_from_the_peers(
    tmp_path: Path, mounts: dict[str, Mount]
) -> None:
    cluster = LocalCluster(tmp_path, 3)
    with running(cluster), Client(cluster.addresses, deadline=30) as client:
        acked = {session: [client.append(session, f"{session}#{i}").first_offset
                           for i in range(20)] for session in SESSIONS}
        leader = cluster.wait_leader()
        victim = next(name for name in sorted(cluster.nodes) if name != leader)
        cluster.kill(victim, signal.SIGTERM)  # a clean stop: its memtables go to tables
        db = mounts[victim].point / "db"
        tables = sorted(db.glob("*.sst"), key=lambda path: path.stat().st_size)
        assert tables, sorted(path.name for path in db.iterdir())
        rotted = tables[-1]
        answer = mounts[victim].command("bitrot", f"db/{rotted.name}", "--below", "1024")
        print(f"flipped a byte of {rotted.name} ({rotted.stat().st_size} bytes): {answer}")
        cluster.start(victim)
        log = cluster.nodes[victim].log_path
        wait_until(lambda: "stored data is damaged" in log.read_text(), 60,
                   f"{victim} to find the damage")
        assert list(mounts[victim].point.glob("db.damaged-*")), "the damaged database is kept"
        victim_id = raft_id(victim)

        def readmitted() -> bool:
            text = cluster.nodes[cluster.wait_leader()].log_path.read_text()
            return f"n{victim_id} has a new incarnation" in text

        wait_until(readmitted, 60, f"{victim} to come back as a new incarnation")
        wait_until(lambda: cluster.status(victim).applied_index
                   >= cluster.status(cluster.wait_leader()).commit_index, 60, "its catch-up")
        assert cluster.nodes[victim].alive
        assert '"level": "critical"' not in log.read_text()
        with Client([cluster.nodes[victim].client_addr], deadline=30) as direct:
            for session in SESSIONS:
                records = direct.read(session, 0, limit=100).records
                assert [r.offset for r in records] == acked[session]
                assert [r.data for r in records] == [f"{session}#{i}".encode()
                                                     for i in range(20)]
