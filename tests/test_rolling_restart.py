"""A rolling restart under load: every node of a 3-node cluster is stopped (SIGTERM), started
again and caught up, one at a time — the leader too — while one SDK client appends
steadily with its normal retries. Zero failed client operations, zero acknowledged appends
lost (each is read back at the offset it was acknowledged with), and the load kept making
progress between restarts."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from cluster_harness import LocalCluster, running_cluster, wait_until
from ops_helpers import WriteLoad

from quorumlog.client import Client

pytestmark = pytest.mark.cluster

TIMEOUT = 60.0


def caught_up(cluster: LocalCluster, name: str, commit: int) -> bool:
    status = cluster.status(name, timeout=2.0)
    return bool(status.leader) and status.applied_index >= commit


def test_rolling_restart_loses_and_fails_nothing(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as cluster:
        load = WriteLoad(cluster.addresses, limit=50_000, seconds=240, deadline=30).start()
        started = time.monotonic()
        try:
            wait_until(lambda: load.done >= 100, TIMEOUT, "the load to start")
            for name in list(cluster.nodes):
                was_leader = cluster.leader() == name
                cluster.kill(name, signal.SIGTERM)
                progress = load.done
                # The rest of the cluster keeps serving while the node is down.
                wait_until(lambda p=progress: load.done >= p + 20, TIMEOUT,
                           f"writes without {name}")
                cluster.start(name)
                leader = cluster.wait_leader(TIMEOUT)
                commit = cluster.status(leader, timeout=5).commit_index
                wait_until(lambda n=name, c=commit: caught_up(cluster, n, c), TIMEOUT,
                           f"{name} to catch up to {commit}")
                progress = load.done
                wait_until(lambda p=progress: load.done >= p + 20, TIMEOUT,
                           f"writes after {name}")
                print(f"restarted {name} (leader: {was_leader}); {load.done} appends so far")
        finally:
            load.stop()
        elapsed = time.monotonic() - started
        with Client(cluster.addresses, deadline=30) as client:
            lost = load.lost(client)
        print(f"rolling restart: {load.done} appends in {elapsed:.1f}s, "
              f"{len(load.failures)} failed, {len(lost)} lost")
        assert load.failures == [], load.failures[:5]
        assert lost == [], lost[:5]
        assert load.done >= 300
