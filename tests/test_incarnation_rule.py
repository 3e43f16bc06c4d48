"""The incarnation rule at the core level (issue 21; FAST '18, "Protocol-Aware Recovery for
Consensus-Based Storage"): a replica whose disk was wiped comes back empty, having forgotten
its votes and the entries it acknowledged.

1. Without the rule, a committed entry is lost: it was stored on the leader and on the
   replica that is then wiped; the leader goes down; the third replica, which missed the
   entry, asks for votes and the wiped replica (its empty log is "behind" anything) grants
   it; the new leader overwrites the entry on the old leader when it comes back.
2. With the rule (the wiped replica's votes do not count: ``quorumlog.node.replication
   .incarnations`` drops them at the transport; here the test's network does), nobody wins
   until the old leader is back, and the entry survives.
3. ``forget_progress``: the leader stops counting the lost copy at once (match 0) and
   catches the empty replica up from the start.
"""

from __future__ import annotations

from quorumlog.raft import MessageType, bootstrap_memory_storage
from quorumlog.raft.testing.memcluster import MemCluster

VOTES = (MessageType.VOTE, MessageType.VOTE_RESP, MessageType.PRE_VOTE,
         MessageType.PRE_VOTE_RESP)
LEADER, WIPED, BEHIND = 1, 2, 3


def _wipe(cluster: MemCluster, node_id: int) -> None:
    """A new empty disk: the founding state every member starts from (as a node with an
    empty data directory bootstraps itself), then a restart."""
    cluster.crash(node_id)
    cluster.nodes[node_id].disk = bootstrap_memory_storage((LEADER, WIPED, BEHIND))
    cluster.restart(node_id)


def _committed_then_wiped(seed: int) -> tuple[MemCluster, int]:
    cluster = MemCluster([LEADER, WIPED, BEHIND], seed=seed)
    cluster.elect(LEADER)
    cluster.propose(LEADER, b"before")
    cluster.stabilize()
    cluster.network.isolate(BEHIND, [LEADER, WIPED])  # it misses the entry
    _, index = cluster.propose(LEADER, b"acknowledged")
    cluster.stabilize()
    assert cluster.node(LEADER).raft.log.committed >= index  # on LEADER and WIPED
    _wipe(cluster, WIPED)
    cluster.crash(LEADER)
    cluster.network.heal()
    return cluster, index


def _run(cluster: MemCluster, *, rule: bool, rounds: int = 200) -> None:
    """Tick the live nodes and deliver, dropping the wiped replica's votes under the rule."""
    def drop(message: object) -> bool:
        return rule and message.frm == WIPED and message.type in VOTES  # type: ignore[attr-defined]

    for _ in range(rounds):
        for node_id in cluster.alive_ids():
            cluster.tick(node_id)
        for _ in range(5):
            for node_id in cluster.alive_ids():
                while cluster.process_ready(node_id):
                    pass
            cluster.deliver_all(drop)


def _entries(cluster: MemCluster, node_id: int) -> list[bytes]:
    """The data of every entry in ``node_id``'s log (its disk)."""
    disk = cluster.nodes[node_id].disk
    return [entry.data for entry in disk.entries(disk.first_index(), disk.last_index() + 1)]


def test_without_the_rule_a_wiped_replica_votes_a_committed_entry_away() -> None:
    cluster, index = _committed_then_wiped(seed=5)
    _run(cluster, rule=False)
    assert cluster.leader() == BEHIND  # elected with the wiped replica's vote
    cluster.propose(BEHIND, b"after")
    _run(cluster, rule=False, rounds=20)
    cluster.restart(LEADER)
    _run(cluster, rule=False)
    for node_id in (WIPED, BEHIND):  # the leader and the majority: the entry is gone
        assert b"acknowledged" not in _entries(cluster, node_id)
        assert b"after" in _entries(cluster, node_id)
    # The old leader still holds it as committed at an index where the cluster committed
    # something else: two different committed entries at one index (safety broken).
    old = cluster.nodes[LEADER].disk.entries(index, index + 1)[0]
    new = cluster.nodes[BEHIND].disk.entries(index, index + 1)[0]
    assert old.data == b"acknowledged" and new.data != old.data
    assert cluster.node(LEADER).raft.log.committed >= index


def test_with_the_rule_nobody_wins_without_the_entry_and_it_survives() -> None:
    cluster, _ = _committed_then_wiped(seed=5)
    _run(cluster, rule=True)
    assert cluster.leader() == 0  # BEHIND asked, only the wiped replica would have said yes
    cluster.restart(LEADER)
    _run(cluster, rule=True)
    leader = cluster.leader()
    assert leader in (LEADER, BEHIND)
    cluster.propose(leader, b"after")
    _run(cluster, rule=True, rounds=50)
    for node_id in (LEADER, WIPED, BEHIND):
        entries = _entries(cluster, node_id)
        assert b"acknowledged" in entries and b"after" in entries, node_id


def test_forgetting_a_wiped_followers_progress_stops_counting_it_and_catches_it_up() -> None:
    cluster = MemCluster([LEADER, WIPED, BEHIND], seed=3)
    cluster.elect(LEADER)
    for i in range(10):
        cluster.propose(LEADER, b"e%d" % i)
    cluster.stabilize()
    last = cluster.node(LEADER).raft.log.last_index()
    assert cluster.node(LEADER).raft.prs[WIPED].match == last
    _wipe(cluster, WIPED)
    assert cluster.node(LEADER).raft.forget_progress(WIPED)
    progress = cluster.node(LEADER).raft.prs[WIPED]
    assert (progress.match, progress.next) == (0, last + 1)  # the lost copy no longer counts
    cluster.propose(LEADER, b"again")
    cluster.stabilize()
    assert cluster.node(WIPED).raft.log.last_index() == cluster.node(LEADER).raft.log.last_index()
    assert _entries(cluster, WIPED)[-1] == b"again"
    assert b"e0" in _entries(cluster, WIPED)
    assert not cluster.node(WIPED).raft.forget_progress(LEADER)  # only a leader forgets
