"""Membership operations against real node processes: ``quorumlog cluster add-node`` (a node
started with ``--join`` is added as a learner, catches up, is promoted and serves every
message), ``transfer-leader``, ``remove-node`` (the leader too), the refusals — conflicting id
or address, unknown node, a learner as transfer target, the last voter — each with exit code
2, one clear line and the membership unchanged, and a restarted node that still knows the
membership changes it had applied (they are not in its snapshot)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cluster_harness import LocalCluster, running_cluster, wait_until
from ops_helpers import cli, members, read_all

from quorumlog.client import Client
from quorumlog.client.sdk import Consistency

pytestmark = pytest.mark.cluster

TIMEOUT = 60.0  # condition deadlines; generous for a loaded 2-core machine


def refused(result: object, code: str, fragment: str) -> None:
    assert hasattr(result, "returncode")
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{code}: " in lines[0] and fragment in lines[0], lines[0]


def leader_members(cluster: LocalCluster) -> dict[str, str]:
    return members(cluster, cluster.wait_leader(TIMEOUT))


def test_add_transfer_remove_and_every_refusal(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as cluster:
        addresses = ",".join(cluster.addresses)
        with Client(cluster.addresses, deadline=30) as client:
            for i in range(200):
                client.append(f"s{i % 4}", f"m{i}".encode())

        # -- add n4: started empty with --join, added by the CLI -------------------------
        n4 = cluster.add_member("n4", ["--join"])
        cluster.start("n4")
        started = time.monotonic()
        result = cli(
            "cluster", "add-node", "n4", "--peer-addr", n4.peer_addr,
            "--client-addr", n4.client_addr, "--cluster", addresses, "--json",
        )
        assert result.returncode == 0, result.stderr + cluster.logs()
        print(f"add-node n4: {time.monotonic() - started:.2f}s, {result.stdout.strip()}")
        assert leader_members(cluster) == {
            "n1": "voter", "n2": "voter", "n3": "voter", "n4": "voter"
        }
        # The same add-node again (a client that gave up on a call that had succeeded asks
        # again): nothing to change, and it says so.
        again = cli("cluster", "add-node", "n4", "--peer-addr", n4.peer_addr,
                    "--client-addr", n4.client_addr, "--cluster", addresses)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == "n4 was already a voter at these addresses (nothing changed)"
        assert leader_members(cluster) == {
            "n1": "voter", "n2": "voter", "n3": "voter", "n4": "voter"
        }
        with Client([n4.client_addr], deadline=30) as on_n4:
            wait_until(
                lambda: len(read_all(on_n4, "s0", Consistency.FOLLOWER)) == 50,
                TIMEOUT, "n4 to serve every message of s0",
            )
            assert read_all(on_n4, "s3", Consistency.FOLLOWER) == [
                f"m{i}".encode() for i in range(3, 200, 4)
            ]

        # -- a restarted node still knows n4 (the change is in its log, not its snapshot) --
        cluster.kill("n1")
        cluster.start("n1")
        wait_until(lambda: members(cluster, "n1").get("n4") == "voter", TIMEOUT, "n1 back")

        # -- refusals: exit 2, one line, nothing changed ---------------------------------
        before = leader_members(cluster)
        refused(
            cli("cluster", "add-node", "n2", "--peer-addr", "127.0.0.1:1", "--client-addr",
                "127.0.0.1:2", "--cluster", addresses),
            "already_exists", "n2 is already a voter",
        )
        refused(
            cli("cluster", "add-node", "n5", "--peer-addr", cluster.nodes["n1"].peer_addr,
                "--client-addr", "127.0.0.1:3", "--cluster", addresses),
            "already_exists", f"address {cluster.nodes['n1'].peer_addr} is already used by n1",
        )
        refused(cli("cluster", "remove-node", "n9", "--cluster", addresses),
                "not_found", "n9 is not a member")
        refused(cli("cluster", "transfer-leader", "n9", "--cluster", addresses),
                "not_found", "n9 is not a member")
        assert leader_members(cluster) == before

        # -- transfer to n4, then remove the leader n4 (it hands over) --------------------
        result = cli("cluster", "transfer-leader", "n4", "--cluster", addresses)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().startswith("n4 is the leader"), result.stdout
        assert cluster.wait_leader(TIMEOUT) == "n4"
        result = cli("cluster", "remove-node", "n4", "--cluster", addresses)
        assert result.returncode == 0, result.stderr
        new_leader = cluster.wait_leader(TIMEOUT, exclude=("n4",))
        wait_until(lambda: "n4" not in members(cluster, new_leader), TIMEOUT, "n4 gone")
        cluster.kill("n4")
        with Client(cluster.addresses[:3], deadline=30) as client:
            client.append("s0", b"after n4 left")

        # -- a learner that never catches up (its process is not running) -----------------
        result = cli(
            "cluster", "add-node", "n5", "--peer-addr", "127.0.0.1:9", "--client-addr",
            "127.0.0.1:10", "--cluster", addresses, "--deadline", "4",
        )
        assert result.returncode == 1, result.stderr
        assert "learner" in result.stderr, result.stderr
        assert leader_members(cluster).get("n5") == "learner"
        before = leader_members(cluster)
        refused(cli("cluster", "transfer-leader", "n5", "--cluster", addresses),
                "failed_precondition", "n5 is a learner")
        assert leader_members(cluster) == before
        assert cli("cluster", "remove-node", "n5", "--cluster", addresses).returncode == 0

        # -- shrink to one voter; the last one cannot go ----------------------------------
        for name in ("n3", "n2"):
            result = cli("cluster", "remove-node", name, "--cluster", addresses)
            assert result.returncode == 0, result.stderr
        wait_until(lambda: leader_members(cluster) == {"n1": "voter"}, TIMEOUT, "only n1")
        refused(cli("cluster", "remove-node", "n1", "--cluster", addresses),
                "failed_precondition", "n1 is the last voter")
        assert leader_members(cluster) == {"n1": "voter"}
        with Client([cluster.nodes["n1"].client_addr], deadline=30) as client:
            assert len(read_all(client, "s0", Consistency.LINEARIZABLE)) == 51
