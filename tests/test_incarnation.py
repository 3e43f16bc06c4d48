"""The incarnation rule with real nodes (issue 21): a node whose data directory was wiped
comes back with a new incarnation; its votes do not count until it has caught up and its
leader admitted it again, so it cannot help a candidate that misses committed entries win.

The lost-commit scenario (FAST '18): S (a follower) is down and misses an acknowledged
message E, which L (the leader) and W (the other follower) hold; W's disk is wiped and L is
killed; W comes back empty and S comes back. Without the rule (``--unsafe-no-incarnation-check``)
W votes for S, S leads without E, and E is gone for good once L is back; with it, nobody leads
until L is back, and E survives."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster_harness import LocalCluster, running, wait_until

from quorumlog.client import Client
from quorumlog.client.errors import QuorumLogError
from quorumlog.node.common.config import raft_id

pytestmark = pytest.mark.cluster


def _log(cluster: LocalCluster, name: str) -> str:
    return cluster.nodes[name].log_path.read_text()


def _admitted_everyone(cluster: LocalCluster, leader: str) -> None:
    """The leader admitted both followers' incarnations and every node applied that."""
    others = [name for name in cluster.nodes if name != leader]
    wait_until(lambda: all(f"n{raft_id(name)} admitted at incarnation" in _log(cluster, leader)
                           for name in others), 30, "the first admissions")

    def level() -> bool:
        commit = cluster.status(leader).commit_index
        return all(cluster.status(name).applied_index >= commit for name in cluster.nodes)

    wait_until(level, 30, "every node to apply the admissions")


def _values(client: Client, session: str) -> list[bytes]:
    return [record.data for record in client.read(session, 0, limit=1000).records]


def _scenario(tmp_path: Path, extra: list[str]) -> tuple[LocalCluster, list[bytes], str]:
    """Run the scenario up to S awake and W back empty, L down. Returns the cluster (still
    running), what was acknowledged, and S's name."""
    cluster = LocalCluster(tmp_path, 3, extra)
    cluster.start()
    cluster.wait_ready()
    leader = cluster.wait_leader()
    _admitted_everyone(cluster, leader)
    wiped, behind = (name for name in sorted(cluster.nodes) if name != leader)
    with Client(cluster.addresses, deadline=30) as client:
        acked = [client.append("fast18", b"before").first_offset]
    cluster.kill(behind)  # down (not paused: a paused node's sockets would still take E)
    with Client([cluster.nodes[leader].client_addr, cluster.nodes[wiped].client_addr],
                deadline=30) as client:
        acked.append(client.append("fast18", b"E").first_offset)
    cluster.kill(wiped)
    cluster.wipe(wiped)
    cluster.kill(leader)
    cluster.start(wiped)
    cluster.start(behind)
    print(f"leader {leader} killed, {wiped} wiped and back, {behind} behind and back")
    return cluster, [b"before", b"E"], behind


def test_without_the_rule_a_wiped_node_votes_an_acknowledged_message_away(
    tmp_path: Path
) -> None:
    cluster, _, behind = _scenario(tmp_path, ["--unsafe-no-incarnation-check"])
    try:
        new_leader = wait_until(cluster.leader, 60, "a leader without the old one")
        assert new_leader == behind  # elected with the wiped node's vote
        with Client([cluster.nodes[behind].client_addr],
                    deadline=30) as client:
            client.append("fast18", b"after")
        cluster.start()  # the old leader, holding E, comes back
        cluster.wait_ready()
        with Client(cluster.addresses, deadline=30) as client:
            values = wait_until(lambda: _values(client, "fast18"), 30, "a read")
        print("read back:", values)
        assert b"E" not in values  # acknowledged, then lost: the scenario is real
        assert values[0] == b"before" and b"after" in values
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


def test_with_the_rule_nobody_leads_without_the_message_and_it_survives(
    tmp_path: Path
) -> None:
    cluster, acked, behind = _scenario(tmp_path, [])
    try:
        wait_until(lambda: "its votes do not count" in _log(cluster, behind), 60,
                   f"{behind} to refuse the wiped node's votes")
        assert cluster.leader() is None
        cluster.start()  # the old leader is back: it has E, and wins
        leader = cluster.wait_ready()
        with Client(cluster.addresses, deadline=30) as client:
            values = wait_until(lambda: _values(client, "fast18"), 30, "a read")
            assert values == acked
            client.append("fast18", b"after")
        # The wiped node is caught up and admitted again at its new incarnation.
        wiped = next(name for name in cluster.nodes if name not in (leader, behind))
        wait_until(lambda: _log(cluster, leader).count(
            f"n{raft_id(wiped)} admitted at incarnation") >= 1 and
            cluster.status(wiped).applied_index >= cluster.status(leader).commit_index,
            60, f"{wiped} to be admitted again and caught up")
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


def test_a_wiped_follower_rejoins_and_holds_everything(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, 3)
    with running(cluster), Client(cluster.addresses, deadline=30) as client:
        leader = cluster.wait_leader()
        _admitted_everyone(cluster, leader)
        acked = [client.append("rejoin", f"m{i}").first_offset for i in range(20)]
        victim = next(name for name in sorted(cluster.nodes) if name != leader)
        cluster.kill(victim)
        cluster.wipe(victim)
        cluster.start(victim)
        acked += [client.append("rejoin", f"n{i}").first_offset for i in range(10)]
        victim_id = raft_id(victim)

        def readmitted() -> bool:
            text = _log(cluster, cluster.wait_leader())
            return (f"n{victim_id} has a new incarnation" in text
                    and text.count(f"n{victim_id} admitted at incarnation") >= 2)

        wait_until(readmitted, 60, f"{victim} to be readmitted")
        wait_until(lambda: cluster.status(victim).applied_index
                   >= cluster.status(cluster.wait_leader()).commit_index, 60, "its catch-up")
        try:
            with Client([cluster.nodes[victim].client_addr], deadline=30) as direct:
                records = direct.read("rejoin", 0, limit=100).records
        except QuorumLogError as error:
            raise AssertionError(f"{victim} could not serve a read: {error}") from error
        assert [r.offset for r in records] == acked == list(range(30))
