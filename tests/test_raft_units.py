"""Unit tests of the core's small pure pieces: quorum math, progress, storage, log, Ready."""

from __future__ import annotations

import random

import pytest

from quorumlog.raft import (
    Compacted,
    Config,
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    Snapshot,
    SnapshotMetadata,
    StateRole,
    Unavailable,
    bootstrap_memory_storage,
)
from quorumlog.raft.errors import RaftError
from quorumlog.raft.log import RaftLog
from quorumlog.raft.progress import Inflights, Progress, ProgressState
from quorumlog.raft.quorum import VoteResult, committed_index, has_quorum, majority, vote_result
from quorumlog.raft.rawnode import ReadyOutstanding
from quorumlog.raft.read_only import ReadOnly


# -- quorum ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("count", "need"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_majority(count: int, need: int) -> None:
    assert majority(count) == need


def test_committed_index_is_the_majority_median() -> None:
    assert committed_index([1, 2, 3], {1: 5, 2: 3, 3: 9}) == 5
    assert committed_index([1, 2, 3], {1: 5}) == 0  # missing voters count as 0
    assert committed_index([1, 2, 3, 4], {1: 4, 2: 4, 3: 2, 4: 9}) == 4
    assert committed_index([1, 2, 3, 4, 5], {1: 1, 2: 2, 3: 3, 4: 4, 5: 5}) == 3
    assert committed_index([], {1: 7}) == 0


def test_vote_result() -> None:
    assert vote_result([1, 2, 3], {1: True}) is VoteResult.PENDING
    assert vote_result([1, 2, 3], {1: True, 2: True}) is VoteResult.WON
    assert vote_result([1, 2, 3], {1: True, 2: False, 3: False}) is VoteResult.LOST
    assert vote_result([1, 2, 3, 4], {1: True, 2: False, 3: False}) is VoteResult.LOST
    assert vote_result([1, 2, 3, 4], {1: True, 2: True}) is VoteResult.PENDING
    assert vote_result([1], {1: True}) is VoteResult.WON
    # Votes from non-voters do not count.
    assert vote_result([1, 2, 3], {1: True, 9: True}) is VoteResult.PENDING


def test_has_quorum() -> None:
    assert has_quorum([1, 2, 3], [1, 3])
    assert not has_quorum([1, 2, 3], [1, 7, 8])


# -- progress ----------------------------------------------------------------------------------
def test_inflights_window() -> None:
    window = Inflights(3)
    for last in (5, 9, 12):
        window.add(last)
    assert window.full()
    with pytest.raises(OverflowError):
        window.add(13)
    window.free_le(9)
    assert len(window) == 1 and not window.full()
    window.free_le(100)
    assert len(window) == 0


def test_progress_probe_pauses_after_one_send_and_replicate_pipelines() -> None:
    progress = Progress(next_index=10, max_inflight=2)
    assert progress.state is ProgressState.PROBE and not progress.is_paused()
    progress.sent_entries(12, 3)
    assert progress.is_paused() and progress.next == 10  # probe does not advance next
    assert progress.maybe_update(12)
    progress.become_replicate()
    assert progress.next == 13 and not progress.is_paused()
    progress.sent_entries(15, 3)
    progress.sent_entries(18, 3)
    assert progress.next == 19 and progress.is_paused()  # window of 2 is full
    progress.inflights.free_le(15)
    assert not progress.is_paused()


def test_progress_rejections_and_stale_rejections() -> None:
    progress = Progress(next_index=10, max_inflight=4)
    # Probe: a rejection of the append at 9 with hint 4 jumps next back to 5.
    assert progress.maybe_decr_to(9, 4)
    assert progress.next == 5
    # A rejection for an index we are not probing is stale.
    assert not progress.maybe_decr_to(9, 1)
    progress.maybe_update(6)
    progress.become_replicate()
    assert not progress.maybe_decr_to(5, 0)  # at or below match: stale
    assert progress.maybe_decr_to(8, 0)
    assert progress.next == progress.match + 1


def test_progress_snapshot_then_probe_resumes_after_snapshot() -> None:
    progress = Progress(next_index=3, max_inflight=4)
    progress.become_snapshot(50)
    assert progress.is_paused()
    progress.become_probe()
    assert progress.state is ProgressState.PROBE and progress.next == 51


# -- storage -----------------------------------------------------------------------------------
def _storage_with(entries: int, term: int = 1) -> MemoryStorage:
    storage = MemoryStorage(ConfState((1,)))
    storage.append([Entry(term, index, b"x%d" % index) for index in range(1, entries + 1)])
    return storage


def test_memory_storage_named_errors_and_compaction() -> None:
    storage = _storage_with(10)
    assert (storage.first_index(), storage.last_index()) == (1, 10)
    storage.create_snapshot(6, ConfState((1,)), b"state@6")
    storage.compact(6)
    assert storage.first_index() == 7 and storage.term(6) == 1
    with pytest.raises(Compacted):
        storage.term(5)
    with pytest.raises(Compacted):
        storage.entries(6, 8)
    with pytest.raises(Unavailable):
        storage.term(11)
    with pytest.raises(Unavailable):
        storage.entries(7, 12)
    assert [entry.index for entry in storage.entries(7, 11)] == [7, 8, 9, 10]


def test_memory_storage_append_truncates_conflicting_suffix() -> None:
    storage = _storage_with(10)
    storage.append([Entry(2, 8, b"new8"), Entry(2, 9, b"new9")])
    assert storage.last_index() == 9
    assert [entry.term for entry in storage.entries(7, 10)] == [1, 2, 2]


def test_memory_storage_limits_entries_by_bytes_but_returns_at_least_one() -> None:
    storage = _storage_with(10)
    assert len(storage.entries(1, 11, max_bytes=0)) == 1
    assert len(storage.entries(1, 11, max_bytes=3 * 19)) == 3  # 3 bytes data + 16 overhead


# -- log ---------------------------------------------------------------------------------------
def test_log_unstable_tail_and_stable_to() -> None:
    storage = _storage_with(5)
    log = RaftLog(storage)
    log.append([Entry(2, 6, b"a"), Entry(2, 7, b"b")])
    assert log.last_index() == 7 and log.term(7) == 2
    assert [entry.index for entry in log.slice(4, 8)] == [4, 5, 6, 7]
    log.stable_to(7, 1)  # wrong term: replaced meanwhile, ignored
    assert len(log.unstable) == 2
    storage.append(log.unstable)
    log.stable_to(7, 2)
    assert log.unstable == [] and log.unstable_offset == 8


def test_log_maybe_append_truncates_conflicts_and_caps_commit() -> None:
    log = RaftLog(_storage_with(5))
    assert log.maybe_append(5, 2, 100, [Entry(2, 6)]) is None  # term mismatch at 5
    last_new = log.maybe_append(3, 1, 100, [Entry(3, 4), Entry(3, 5), Entry(3, 6)])
    assert last_new == 6
    assert [log.term(index) for index in (3, 4, 5, 6)] == [1, 3, 3, 3]
    assert log.committed == 6  # min(leader commit, last new entry)


def test_log_find_conflict_by_term_skips_whole_terms() -> None:
    storage = MemoryStorage(ConfState((1,)))
    storage.append([Entry(term, index) for index, term in enumerate([1, 1, 2, 2, 2, 5, 5], 1)])
    log = RaftLog(storage)
    assert log.find_conflict_by_term(7, 3) == (5, 2)
    assert log.find_conflict_by_term(7, 5) == (7, 5)
    assert log.find_conflict_by_term(7, 0) == (0, 0)


def test_log_is_up_to_date_compares_term_then_index() -> None:
    log = RaftLog(_storage_with(5, term=3))
    assert log.is_up_to_date(5, 3)
    assert log.is_up_to_date(1, 4)
    assert not log.is_up_to_date(4, 3)
    assert not log.is_up_to_date(9, 2)


def test_log_maybe_commit_needs_current_term() -> None:
    log = RaftLog(_storage_with(5, term=1))
    assert not log.maybe_commit(5, 2)
    assert log.maybe_commit(5, 1) and log.committed == 5


# -- read only ---------------------------------------------------------------------------------
def test_read_only_releases_in_order_through_the_acked_context() -> None:
    pending = ReadOnly()
    for number, index in ((1, 10), (2, 11), (3, 12)):
        assert pending.add(b"r%d" % number, index, Message(MessageType.READ_INDEX))
    assert not pending.add(b"r1", 99, Message(MessageType.READ_INDEX))
    assert pending.ack(b"r2", 2) == {2}
    released = pending.release_through(b"r2")
    assert [index for index, _ in released] == [10, 11]
    assert len(pending) == 1 and pending.ack(b"r1", 2) is None


# -- RawNode and Ready -------------------------------------------------------------------------
def _single_node() -> RawNode:
    return RawNode(Config(id=1, rng=random.Random(1), applied=1), bootstrap_memory_storage((1,)))


def _handle(node: RawNode, storage: MemoryStorage) -> list[Entry]:
    rd = node.ready()
    if rd.hard_state is not None:
        storage.set_hard_state(rd.hard_state)
    storage.append(rd.entries)
    node.advance(rd)
    return rd.committed_entries


def test_single_node_commits_only_after_persisting() -> None:
    storage = bootstrap_memory_storage((1,))
    node = RawNode(Config(id=1, rng=random.Random(1), applied=1), storage)
    node.campaign()
    assert node.raft.role is StateRole.LEADER
    rd = node.ready()
    assert rd.must_sync and rd.entries and rd.hard_state == HardState(2, 1, 1)
    assert rd.committed_entries == []  # nothing committed before it is durable
    storage.set_hard_state(rd.hard_state)
    storage.append(rd.entries)
    node.advance(rd)
    term, index = node.propose(b"hello")
    committed: list[Entry] = []
    for _ in range(4):
        if node.has_ready():
            committed += _handle(node, storage)
    assert [entry.data for entry in committed] == [b"", b"hello"]
    assert (term, index) == (2, 3) and node.status().applied == 3


def test_ready_twice_without_advance_is_an_error() -> None:
    node = _single_node()
    node.campaign()
    node.ready()
    assert not node.has_ready()
    with pytest.raises(ReadyOutstanding):
        node.ready()


def test_local_message_types_are_refused_from_peers() -> None:
    node = _single_node()
    for kind in (MessageType.HUP, MessageType.BEAT, MessageType.CHECK_QUORUM):
        with pytest.raises(RaftError):
            node.step(Message(kind, frm=2, to=1, term=5))
    assert node.raft.term == 1


def test_restart_recovers_hard_state_and_snapshot() -> None:
    storage = MemoryStorage()
    storage.apply_snapshot(Snapshot(SnapshotMetadata(7, 3, ConfState((1, 2, 3))), b"s"))
    storage.set_hard_state(HardState(term=4, vote=2, commit=7))
    node = RawNode(Config(id=1, rng=random.Random(1), applied=7), storage)
    status = node.status()
    assert (status.term, status.vote, status.commit, status.applied) == (4, 2, 7, 7)
    assert status.conf_state.voters == (1, 2, 3) and status.role is StateRole.FOLLOWER


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="node id"):
        RawNode(Config(id=0, rng=random.Random(1)), MemoryStorage())
    with pytest.raises(ValueError, match="election_tick"):
        RawNode(Config(id=1, rng=random.Random(1), election_tick=1), MemoryStorage())


def test_leader_recovers_a_follower_whose_disk_was_wiped() -> None:
    """A follower that lost entries it acknowledged (disk replaced) is probed from what it has
    now and, the log being compacted past that, caught up from a snapshot: the leader must
    not keep resending from the old match forever."""
    from quorumlog.raft import bootstrap_memory_storage
    from quorumlog.raft.testing.memcluster import MemCluster

    cluster = MemCluster([1, 2, 3], seed=5, snapshot_threshold=5)
    cluster.elect(1)
    for number in range(30):
        cluster.propose(1, b"v%d" % number)
        cluster.stabilize()
    assert cluster.node(1).raft.prs[3].match == cluster.node(1).raft.log.last_index()
    cluster.crash(3)
    cluster.nodes[3].disk = bootstrap_memory_storage((1, 2, 3))  # a blank disk
    cluster.restart(3)
    for _ in range(10):
        for node_id in cluster.nodes:
            cluster.tick(node_id)
        cluster.stabilize()
    leader, wiped = cluster.nodes[1], cluster.nodes[3]
    assert wiped.sm.applied_index == leader.sm.applied_index
    assert (wiped.sm.count, wiped.sm.digest) == (leader.sm.count, leader.sm.digest)
    assert cluster.node(1).raft.prs[3].match == cluster.node(1).raft.log.last_index()


def _empty_appends(cluster: object, rounds: int = 10_000) -> int:
    """Run ``cluster`` to quiescence, counting appends that carry no entries."""
    from quorumlog.raft.testing.memcluster import MemCluster

    assert isinstance(cluster, MemCluster)
    empty = 0
    for _ in range(rounds):
        busy = False
        for node_id in list(cluster.nodes):
            busy |= cluster.process_ready(node_id)
        in_flight = cluster.network.in_flight
        empty += sum(1 for m in in_flight if m.type == MessageType.APP and not m.entries)
        busy |= cluster.deliver_all() > 0
        if not busy:
            return empty
    raise AssertionError("cluster did not settle")


@pytest.mark.parametrize("lazy", [False, True])
def test_lazy_commit_rides_on_the_next_append_or_a_flush(lazy: bool) -> None:
    """etcd-style: a new commit index goes out at once in empty appends. Lazy: no empty
    append; followers learn it from the next append, a heartbeat or ``flush_commit``."""
    from quorumlog.raft.testing.memcluster import MemCluster

    cluster = MemCluster([1, 2, 3], seed=3, lazy_commit=lazy)
    cluster.elect(1)
    leader = cluster.node(1)
    leader.flush_commit()
    _empty_appends(cluster)
    _, first = cluster.propose(1, b"a")
    empty = _empty_appends(cluster)
    assert leader.raft.log.committed == first
    followers = [cluster.node(2).raft.log.committed, cluster.node(3).raft.log.committed]
    if not lazy:
        assert empty == 2 and followers == [first, first]
        return
    assert empty == 0 and max(followers) < first and leader.raft.commit_unsent
    _, second = cluster.propose(1, b"b")  # the next append carries the earlier commit
    assert _empty_appends(cluster) == 0
    assert [cluster.node(2).raft.log.committed, cluster.node(3).raft.log.committed] == [first] * 2
    assert leader.flush_commit() and not leader.flush_commit()  # once, then nothing unsent
    _empty_appends(cluster)
    assert [cluster.node(2).raft.log.committed, cluster.node(3).raft.log.committed] == [second] * 2
    assert cluster.node(2).raft.flush_commit() is False  # followers never flush
