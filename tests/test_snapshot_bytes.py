"""Byte-bounded log (``--snapshot-bytes``): big batched appends reach any size in few entries,
so a node also snapshots after that many bytes and cuts the log kept behind the snapshot to
about 4x that. Checked on real nodes: every node's log is compacted although the entry count
never reaches ``--snapshot-every``, and a follower killed with -9 restarts on that state and
serves every message."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from cluster_harness import running_cluster, wait_until

from quorumlog.client import Client

pytestmark = pytest.mark.cluster

SNAPSHOT_BYTES = 200_000
MESSAGE = b"m" * 1000
BATCH = 100  # 100 kB per append: a few appends per snapshot
APPENDS = 30  # ~3 MB in all, so the log must have been cut several times


def test_big_entries_are_snapshotted_and_compacted_by_bytes(tmp_path: Path) -> None:
    extra = ["--snapshot-bytes", str(SNAPSHOT_BYTES)]  # --snapshot-every stays at 50000
    with running_cluster(tmp_path, extra_args=extra) as cluster, Client(
        ",".join(cluster.addresses), deadline=30
    ) as client:
        for i in range(APPENDS):
            client.append(f"s{i % 3}", *[MESSAGE] * BATCH)
        leader = cluster.wait_leader()

        def compacted_everywhere() -> bool:
            statuses = [cluster.status(name) for name in cluster.nodes]
            return all(s.snapshot_index > 1 and s.first_index > 1 for s in statuses)

        wait_until(compacted_everywhere, 30, "every node to snapshot and compact by bytes")
        for name in cluster.nodes:
            status = cluster.status(name)
            assert status.last_index < 200  # never near --snapshot-every: the bytes did it
        follower = next(name for name in cluster.nodes if name != leader)
        cluster.kill(follower, signal.SIGKILL)
        client.append("s0", b"while one is down")
        cluster.start(follower)
        commit = cluster.status(leader).commit_index
        wait_until(lambda: cluster.status(follower).applied_index >= commit, 30,
                   "the restarted follower to catch up")
        total = sum(client.describe_session(f"s{i}").count for i in range(3))
        assert total == APPENDS * BATCH + 1
