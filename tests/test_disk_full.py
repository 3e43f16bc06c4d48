"""A full disk (issue 21): each node's data directory on its own fault filesystem, whose
``disk_full`` makes every write fail with ENOSPC and ``statfs`` show no free block. Appends
get RESOURCE_EXHAUSTED naming the full disk, reads keep working, no node exits, and the
cluster takes writes again by itself once space returns, with every acknowledged message
there once, in order."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster_harness import LocalCluster, running, wait_until
from faultfs_harness import Mount

from quorumlog.client import Client
from quorumlog.client.errors import QuorumLogError, ResourceExhausted

pytestmark = pytest.mark.cluster


def _refused(client: Client, session: str) -> str | None:
    """The refusal of an append while the disk is full (None: it was taken)."""
    try:
        client.append(session, b"while-full")
    except ResourceExhausted as error:
        return str(error)
    return None


def _pids(cluster: LocalCluster) -> dict[str, int]:
    pids = {}
    for name, node in cluster.nodes.items():
        assert node.process is not None and node.alive, f"{name} exited"
        pids[name] = node.process.pid
    return pids


def test_every_disk_full_refuses_appends_serves_reads_and_recovers(
    tmp_path: Path, mounts: dict[str, Mount]
) -> None:
    cluster = LocalCluster(tmp_path, 3)
    with running(cluster), Client(cluster.addresses, deadline=30) as client:
        acked = [client.append("full", f"m{i}").first_offset for i in range(10)]
        pids = _pids(cluster)
        for mount in mounts.values():
            mount.command("disk-full", "on")
        refusal = wait_until(lambda: _refused(client, "full"), 30, "an append refused")
        print("refused:", refusal)
        assert "disk full" in refusal and "reserve" in refusal, refusal
        for _ in range(5):  # refused every time, and reads answer meanwhile
            assert _refused(client, "full") is not None
            records = client.read("full", 0, limit=100).records
            assert [r.data for r in records] == [f"m{i}".encode() for i in range(10)]
        for mount in mounts.values():
            mount.command("disk-full", "off")

        def taken() -> int | None:
            try:
                return client.append("full", b"after").first_offset
            except QuorumLogError:
                return None

        offset = wait_until(taken, 30, "appends taken again")
        assert _pids(cluster) == pids  # nobody exited or was restarted
        records = client.read("full", 0, limit=100).records
        assert [r.offset for r in records] == [*acked, offset] == list(range(11))


def test_a_follower_with_a_full_disk_stays_up_and_catches_up_when_space_returns(
    tmp_path: Path, mounts: dict[str, Mount]
) -> None:
    """Its own writes fail with ENOSPC: it reopens its database once space is back (never
    exiting); the other two carry on meanwhile; then it holds everything acknowledged."""
    cluster = LocalCluster(tmp_path, 3)
    with running(cluster), Client(cluster.addresses, deadline=30) as client:
        leader = cluster.wait_leader()
        victim = next(name for name in cluster.nodes if name != leader)
        pids = _pids(cluster)
        acked = [client.append("follower-full", f"a{i}").first_offset for i in range(5)]
        mounts[victim].command("disk-full", "on")
        acked += [client.append("follower-full", f"b{i}").first_offset for i in range(30)]
        log = cluster.nodes[victim].log_path
        wait_until(lambda: "ENOSPC" in log.read_text(), 30, f"{victim} to meet ENOSPC")
        acked += [client.append("follower-full", f"c{i}").first_offset for i in range(10)]
        mounts[victim].command("disk-full", "off")
        wait_until(lambda: "disk has room again" in log.read_text(), 30, "the reopen")
        assert _pids(cluster) == pids  # the follower never exited

        def caught_up() -> bool:
            return cluster.status(victim).applied_index >= cluster.status(leader).commit_index

        wait_until(caught_up, 60, f"{victim} to catch up")
        lines = log.read_text().splitlines()
        assert not [line for line in lines if '"level": "critical"' in line]
        with Client([cluster.nodes[victim].client_addr], deadline=30) as direct:
            records = direct.read("follower-full", 0, limit=100).records
        assert [r.offset for r in records] == acked == list(range(45))
