"""Quiescence (``quorumlog.node.replication.quiescence``): idle groups of a sharded node stop
ticking and sending, wake at the next write, and a node that stops beating is no longer
trusted as a leader, so its shards elect again."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cluster_harness import sessions_in_every_shard, wait_until
from inprocess_cluster import InProcessCluster, inprocess_cluster

from quorumlog.client.retry import RetryPolicy
from quorumlog.client.sdk import AsyncClient
from quorumlog.node.replication.quiescence import PeerBeats, followed_leader, may_skip_tick
from quorumlog.node.replication.raft_node import RaftNode
from quorumlog.raft import StateRole
from quorumlog.raft.types import NONE, ConfState

SHARDS = 4
DEADLINE = 30.0
SETTLE = 60.0
RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.1)
# A restarted node's groups know their leader within a few ticks; the preferred-leader
# balancer (every 5 s) would also wake a leader, so the deadline stays below its period.
REJOIN = 4.0
QUIET_TICKS = 20  # ticks every group must skip, with no Raft message sent, to count as quiet


def test_a_peer_is_trusted_as_leader_or_follower_only_while_its_beats_say_so() -> None:
    beats = PeerBeats(window_seconds=0.2)
    assert not beats.live(2) and not beats.leads(2, 1) and not beats.follows(2, 1)
    beats.heard(2, None)  # a batch without a beat: alive, leads and follows nothing we know of
    assert beats.live(2) and not beats.leads(2, 1) and not beats.follows(2, 1)
    beats.heard(2, ([1, 3], [5]))
    assert beats.leads(2, 1) and beats.leads(2, 3) and not beats.leads(2, 0)
    assert beats.follows(2, 5) and not beats.follows(2, 1)
    beats.heard(2, None)  # later traffic without a beat keeps the last beat's groups
    assert beats.leads(2, 1) and beats.follows(2, 5)
    beats.heard(2, ([3], []))  # it stopped leading group 1 and following us in group 5
    assert not beats.leads(2, 1) and beats.leads(2, 3) and not beats.follows(2, 5)
    wait_until(lambda: not beats.live(2) and not beats.leads(2, 3), 5.0, "the beat to age out")
    beats.heard(4, ([0], [1]))
    beats.forget(4)
    assert not beats.live(4) and not beats.leads(4, 0) and not beats.follows(4, 1)


def _groups(cluster: InProcessCluster) -> dict[tuple[str, int], RaftNode]:
    """Every hosted group of every running node (the meta group is group 0)."""
    found: dict[tuple[str, int], RaftNode] = {}
    for name, node in cluster.nodes.items():
        if node.host is not None:
            for group, raft in node.host.groups.items():
                found[(name, group)] = raft
    return found


def _leaders(cluster: InProcessCluster) -> dict[int, str]:
    leaders: dict[int, str] = {}
    for name in cluster.nodes:
        status = cluster._status_or_none(name)
        if status is None:
            continue
        for shard in status.shards:
            if shard.role == "leader":
                leaders[shard.shard] = name
    return leaders


def _quiet(cluster: InProcessCluster) -> bool:
    """True once, over a stretch of QUIET_TICKS skipped ticks of every group, no group on
    any node sent a Raft message (the stretch restarts whenever one did)."""
    groups = _groups(cluster)
    before = {key: (raft.metrics.messages_sent, raft.metrics.ticks_skipped)
              for key, raft in groups.items()}

    def skipped_enough() -> bool:
        return all(raft.metrics.ticks_skipped - before[key][1] >= QUIET_TICKS
                   or raft.metrics.messages_sent != before[key][0]
                   for key, raft in groups.items())

    wait_until(skipped_enough, DEADLINE, "every group to skip ticks or send")
    return all(raft.metrics.messages_sent == before[key][0] for key, raft in groups.items())


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
def test_idle_groups_stop_sending_wake_on_a_write_and_fail_over(tmp_path: Path) -> None:
    sessions = sessions_in_every_shard("quiet", SHARDS, 2)
    with inprocess_cluster(tmp_path, shards=SHARDS) as cluster:
        wait_until(lambda: len(_leaders(cluster)) == SHARDS, SETTLE, "a leader per shard")

        async def write(label: bytes, addresses: list[str]) -> None:
            async with AsyncClient(addresses, deadline=DEADLINE, retry=RETRY) as client:
                await asyncio.gather(*(client.append(s, label) for s in sessions))

        asyncio.run(write(b"first", cluster.addresses))
        wait_until(lambda: _quiet(cluster), SETTLE, "every group quiescent on every node")
        assert len(_groups(cluster)) == 3 * (SHARDS + 1)
        # The next write wakes its group at once; afterwards everything quiesces again.
        asyncio.run(write(b"second", cluster.addresses))
        wait_until(lambda: _quiet(cluster), SETTLE, "quiescent again after the write")

        # The node leading the most shards stops: its beats stop, the followers count
        # election time again and every shard elects among the two others.
        leaders = _leaders(cluster)
        victim = Counter(leaders.values()).most_common(1)[0][0]
        others = [name for name in cluster.nodes if name != victim]
        started = time.monotonic()
        cluster.stop_node(victim)
        wait_until(
            lambda: (led := _leaders(cluster)) and len(led) == SHARDS
            and set(led.values()) <= set(others),
            SETTLE, "every shard led by a running node",
        )
        print(f"every shard led again {time.monotonic() - started:.2f} s after stopping {victim}")
        addresses = [cluster.nodes[name].client_addr for name in others]
        asyncio.run(write(b"third", addresses))

        async def read_back() -> None:
            async with AsyncClient(addresses, deadline=DEADLINE, retry=RETRY) as client:
                for session in sessions:
                    page = await client.read(session)
                    assert [r.data for r in page.records] == [b"first", b"second", b"third"]

        asyncio.run(read_back())

        # The stopped node comes back while the others' groups are quiescent: its replicas
        # start with no leader, their beats name no group as followed, so each leader
        # heartbeats until it is followed again; then everything quiesces once more.
        wait_until(lambda: _quiet(cluster), SETTLE, "quiescent without the stopped node")
        started = time.monotonic()
        cluster.start_node(victim)

        def rejoined(name: str) -> bool:
            node = cluster.nodes[name]
            if node.host is None or len(node.host.groups) != SHARDS + 1:
                return False
            return all(raft.leader_id != NONE for raft in node.host.groups.values())

        wait_until(lambda: rejoined(victim), REJOIN, f"every group on {victim} led")
        print(f"{victim} followed in every group {time.monotonic() - started:.2f} s after start")
        wait_until(lambda: _quiet(cluster), SETTLE, "quiescent again with every node")

        # The same with nothing written while a node was down: the leaders that stayed still
        # count its log as matching theirs, so only its beats (following no one) wake them.
        follower = next(name for name in cluster.nodes if name != victim)
        cluster.stop_node(follower)
        wait_until(lambda: _quiet(cluster), SETTLE, f"quiescent without {follower}")
        started = time.monotonic()
        cluster.start_node(follower)
        wait_until(lambda: rejoined(follower), REJOIN, f"every group on {follower} led")
        print(f"{follower} followed in every group {time.monotonic() - started:.2f} s after start")
        wait_until(lambda: _quiet(cluster), SETTLE, "quiescent with every node, once more")


# -- the rule, on stand-ins of a replica ----------------------------------------------------
class _Log:
    def __init__(self, last: int, committed: int, applied: int) -> None:
        self.last, self.committed, self.applied = last, committed, applied

    def last_index(self) -> int:
        return self.last


class _Liveness:
    def __init__(self, live: set[int], leads: set[tuple[int, int]],
                 follows: set[tuple[int, int]]) -> None:
        self._live, self._leads, self._follows = live, leads, follows

    def live(self, peer: int) -> bool:
        return peer in self._live

    def leads(self, peer: int, group: int) -> bool:
        return (peer, group) in self._leads

    def follows(self, peer: int, group: int) -> bool:
        return (peer, group) in self._follows


def _replica(role: StateRole, *, leader: int, last: int = 9, committed: int = 9,
             applied: int = 9, matches: dict[int, int] | None = None,
             pending: bool = False) -> Any:
    """A stand-in with what the rule reads of a ``RaftNode`` (node 1 of group 3)."""
    raft = SimpleNamespace(
        role=role, leader_id=leader, log=_Log(last, committed, applied), commit_unsent=False,
        lead_transferee=NONE, read_only=[],
        prs={peer: SimpleNamespace(match=match) for peer, match in (matches or {}).items()},
    )
    return SimpleNamespace(
        id=1, group=3, raw=SimpleNamespace(raft=raft), has_pending_work=lambda: pending,
        conf_state=lambda: ConfState(voters=(1, 2, 3)),
    )


def test_a_follower_says_it_follows_only_with_its_whole_log_committed() -> None:
    assert followed_leader(_replica(StateRole.FOLLOWER, leader=2)) == 2
    # The leader's last commit index did not reach it (a lost heartbeat): it says nothing,
    # so its leader stays awake and tells it.
    assert followed_leader(_replica(StateRole.FOLLOWER, leader=2, committed=8)) is None
    assert followed_leader(_replica(StateRole.FOLLOWER, leader=NONE)) is None
    assert followed_leader(_replica(StateRole.PRE_CANDIDATE, leader=NONE)) is None
    assert followed_leader(_replica(StateRole.LEADER, leader=1)) is None


def test_a_leader_skips_ticks_only_when_idle_and_followed_by_every_live_member() -> None:
    everyone = _Liveness({2, 3}, set(), {(2, 3), (3, 3)})
    caught_up = {1: 9, 2: 9, 3: 9}
    assert may_skip_tick(_replica(StateRole.LEADER, leader=1, matches=caught_up), everyone)
    refusals = {
        "work queued": (_replica(StateRole.LEADER, leader=1, matches=caught_up, pending=True),
                        everyone),
        "an entry not committed": (
            _replica(StateRole.LEADER, leader=1, committed=8, matches=caught_up), everyone),
        "an entry not applied": (
            _replica(StateRole.LEADER, leader=1, applied=8, matches=caught_up), everyone),
        "a live follower behind": (
            _replica(StateRole.LEADER, leader=1, matches={1: 9, 2: 9, 3: 7}), everyone),
        "a live member not following (restarted)": (
            _replica(StateRole.LEADER, leader=1, matches=caught_up),
            _Liveness({2, 3}, set(), {(2, 3)})),
        "no live quorum": (_replica(StateRole.LEADER, leader=1, matches=caught_up),
                           _Liveness(set(), set(), set())),
    }
    for why, (replica, liveness) in refusals.items():
        assert not may_skip_tick(replica, liveness), why
    # A member that is not live (down) neither holds the leader awake nor counts for it.
    assert may_skip_tick(_replica(StateRole.LEADER, leader=1, matches={1: 9, 2: 9, 3: 2}),
                         _Liveness({2}, set(), {(2, 3)}))
    # A follower skips ticks only while its leader's node beats naming the group.
    follower = _replica(StateRole.FOLLOWER, leader=2)
    assert may_skip_tick(follower, _Liveness({2}, {(2, 3)}, set()))
    assert not may_skip_tick(follower, _Liveness({2}, {(2, 4)}, set()))
    assert not may_skip_tick(follower, _Liveness({2}, set(), set()))
    assert not may_skip_tick(_replica(StateRole.PRE_CANDIDATE, leader=NONE),
                             _Liveness({2}, {(2, 3)}, set()))
