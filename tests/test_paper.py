"""One test per section of the Raft paper (Ongaro & Ousterhout, 2014) and of Ongaro's thesis
(2014, "thesis §") that the core follows, each asserting the behaviour with explicit checks.

The golden traces in ``tests/traces`` show the same behaviours message by message; these tests
state the rule each one must obey, so a regression fails with a sentence, not a diff.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

import pytest

from quorumlog.raft import (
    NONE,
    ConfChange,
    ConfChangeRefused,
    ConfChangeType,
    Config,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    NodeId,
    ProposalDropped,
    Raft,
    RawNode,
    ReadState,
    StateRole,
    bootstrap_memory_storage,
)
from quorumlog.raft.quorum import committed_index
from quorumlog.raft.testing.memcluster import MemCluster

MT = MessageType


# -- helpers -------------------------------------------------------------------------------------
def _node_with_log(
    node_id: NodeId,
    voters: tuple[NodeId, ...],
    terms: list[int],
    *,
    term: int,
    commit: int = 1,
    vote: NodeId = NONE,
    **config: object,
) -> tuple[RawNode, MemoryStorage]:
    """A node whose log holds the bootstrap entry 1/1 then one entry per ``terms`` (index 2..)."""
    storage = bootstrap_memory_storage(voters)
    storage.append([Entry(entry_term, index) for index, entry_term in enumerate(terms, start=2)])
    storage.set_hard_state(HardState(term, vote, commit))
    cfg = Config(id=node_id, rng=random.Random(node_id), applied=1)
    for key, value in config.items():
        setattr(cfg, key, value)
    return RawNode(cfg, storage), storage


def _drain(raw: RawNode, storage: MemoryStorage) -> tuple[list[Message], list[Message]]:
    """Handle one Ready: persist into ``storage``, advance; return (messages, persisted)."""
    if not raw.has_ready():
        return [], []
    rd = raw.ready()
    if rd.snapshot is not None:
        storage.apply_snapshot(rd.snapshot)
    storage.append(rd.entries)
    if rd.hard_state is not None:
        storage.set_hard_state(rd.hard_state)
    raw.advance(rd)
    return rd.messages, rd.persisted_messages


def _log_of(raw: RawNode) -> list[tuple[int, int, bytes]]:
    return [(entry.term, entry.index, entry.data) for entry in raw.raft.log.all_entries()]


def _tick_heartbeat(cluster: MemCluster, node_id: NodeId) -> None:
    for _ in range(cluster.node(node_id).raft.heartbeat_timeout):
        cluster.tick(node_id)


def _run_until(cluster: MemCluster, done: Callable[[], bool], limit: int = 10_000) -> None:
    """Handle Readies and deliver one message at a time until ``done()`` holds."""
    for _ in range(limit):
        if done():
            return
        progressed = False
        for node_id in list(cluster.nodes):
            if cluster.process_ready(node_id):
                progressed = True
                if done():
                    return
        if cluster.network.in_flight:
            cluster.deliver(cluster.network.in_flight.pop(0))
            progressed = True
        if not progressed:
            break
    raise AssertionError("condition never held")


def _stabilize_recording(cluster: MemCluster) -> list[Message]:
    """Like ``MemCluster.stabilize`` but returns every message that went on the wire."""
    seen: list[Message] = []
    for _ in range(10_000):
        busy = False
        for node_id in list(cluster.nodes):
            while cluster.process_ready(node_id):
                busy = True
        seen.extend(cluster.network.in_flight)
        if cluster.deliver_all():
            busy = True
        if not busy:
            return seen
    raise AssertionError("did not stabilize")


# -- Raft paper ----------------------------------------------------------------------------------
def test_section_5_1_terms_stale_messages_rejected_and_higher_term_makes_follower() -> None:
    """§5.1: a request with a stale term is rejected (the stale sender learns the current
    term); a node that sees a higher term adopts it and becomes a follower."""
    cluster = MemCluster([1, 2, 3], seed=1)
    cluster.elect(1)
    follower = cluster.node(2)
    term = follower.raft.term
    before = _log_of(follower)
    follower.step(
        Message(
            MT.APP,
            to=2,
            frm=3,
            term=term - 1,
            index=2,
            log_term=2,
            commit=2,
            entries=[Entry(term - 1, 3, b"stale")],
        )
    )
    follower.step(Message(MT.VOTE, to=2, frm=3, term=term - 1, index=9, log_term=9))
    assert _log_of(follower) == before
    assert (follower.raft.term, follower.raft.vote, follower.raft.leader_id) == (term, 1, 1)
    rd = follower.ready()
    replies = [m for m in rd.messages + rd.persisted_messages if m.to == 3]
    assert [(m.type, m.term) for m in replies] == [(MT.HEARTBEAT_RESP, term)]
    follower.advance(rd)

    leader = cluster.node(1)
    leader.step(Message(MT.HEARTBEAT_RESP, to=1, frm=3, term=term + 3))
    assert leader.raft.role == StateRole.FOLLOWER
    assert (leader.raft.term, leader.raft.vote, leader.raft.leader_id) == (term + 3, NONE, NONE)


def test_section_5_2_leader_election_one_vote_per_term() -> None:
    """§5.2: each server grants at most one vote per term (first come, first served), and
    the vote is durable before the grant leaves; a candidate that hears from a leader of its
    own term becomes a follower."""
    raw, storage = _node_with_log(3, (1, 2, 3), [], term=1, pre_vote=False)
    raw.step(Message(MT.VOTE, to=3, frm=1, term=2, index=1, log_term=1))
    _, persisted = _drain(raw, storage)
    assert [(m.type, m.to, m.reject) for m in persisted] == [(MT.VOTE_RESP, 1, False)]
    assert (storage.hard_state.term, storage.hard_state.vote) == (2, 1)

    raw.step(Message(MT.VOTE, to=3, frm=2, term=2, index=1, log_term=1))
    _, persisted = _drain(raw, storage)
    assert [(m.type, m.to, m.reject) for m in persisted] == [(MT.VOTE_RESP, 2, True)]
    assert storage.hard_state.vote == 1

    candidate, candidate_storage = _node_with_log(2, (1, 2, 3), [], term=1, pre_vote=False)
    candidate.campaign()
    assert candidate.raft.role == StateRole.CANDIDATE and candidate.raft.term == 2
    _drain(candidate, candidate_storage)
    candidate.step(Message(MT.HEARTBEAT, to=2, frm=1, term=2, commit=1))
    assert candidate.raft.role == StateRole.FOLLOWER and candidate.raft.leader_id == 1


class _CountingRandom(random.Random):
    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.draws = 0

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        self.draws += 1
        return super().randrange(start, stop, step)


def test_section_5_2_randomized_election_timeouts_come_from_the_injected_rng() -> None:
    """§5.2: election timeouts are drawn at random from [election_tick, 2 * election_tick),
    only from the injected generator, so the same seed gives the same timeouts."""
    seen: set[int] = set()
    for seed in range(40):
        sequences = []
        for _ in range(2):
            rng = _CountingRandom(seed)
            config = Config(id=1, rng=rng, election_tick=10)
            raft = Raft(config, bootstrap_memory_storage((1, 2, 3)))
            timeouts = []
            for _ in range(5):
                draws = rng.draws
                raft.become_follower(raft.term, NONE)
                assert rng.draws > draws
                timeout = raft.randomized_election_timeout
                assert 10 <= timeout < 20
                timeouts.append(timeout)
            sequences.append(timeouts)
        assert sequences[0] == sequences[1]
        seen.update(sequences[0])
    assert len(seen) >= 8  # really random across the range, not a constant

    raw, _ = _node_with_log(1, (1, 2, 3), [], term=1)
    timeout = raw.raft.randomized_election_timeout
    for _ in range(timeout - 1):
        raw.tick()
    assert raw.raft.role == StateRole.FOLLOWER
    raw.tick()
    assert raw.raft.role == StateRole.PRE_CANDIDATE


def test_section_5_3_log_replication_consistency_check_and_conflicting_suffix() -> None:
    """§5.3: a follower refuses an append whose preceding (index, term) it lacks; an append
    that matches replaces a conflicting suffix, but one that merely repeats known entries
    truncates nothing."""
    raw, storage = _node_with_log(2, (1, 2, 3), [2, 2, 2], term=2, commit=2)
    raw.step(
        Message(
            MT.APP,
            to=2,
            frm=1,
            term=3,
            index=4,
            log_term=3,
            commit=2,
            entries=[Entry(3, 5, b"new")],
        )
    )
    _, persisted = _drain(raw, storage)
    assert [(m.type, m.reject, m.index) for m in persisted] == [(MT.APP_RESP, True, 4)]
    assert [term for term, _, _ in _log_of(raw)] == [2, 2, 2]

    raw.step(
        Message(
            MT.APP,
            to=2,
            frm=1,
            term=3,
            index=3,
            log_term=2,
            commit=2,
            entries=[Entry(3, 4, b"x"), Entry(3, 5, b"y")],
        )
    )
    _, persisted = _drain(raw, storage)
    assert [(m.reject, m.index) for m in persisted] == [(False, 5)]
    assert _log_of(raw) == [(2, 2, b""), (2, 3, b""), (3, 4, b"x"), (3, 5, b"y")]
    assert [entry.term for entry in storage.entries(2, 6)] == [2, 2, 3, 3]

    # A delayed duplicate of an older append: everything matches, so nothing is cut off.
    raw.step(
        Message(
            MT.APP, to=2, frm=1, term=3, index=3, log_term=2, commit=2, entries=[Entry(3, 4, b"x")]
        )
    )
    _, persisted = _drain(raw, storage)
    assert [(m.reject, m.index) for m in persisted] == [(False, 4)]
    assert raw.raft.log.last_index() == 5


def test_section_5_4_1_election_restriction() -> None:
    """§5.4.1: a voter denies its vote to a candidate whose log is less up to date: a lower
    last term (however long the log), or the same last term and a shorter log."""
    raw, storage = _node_with_log(3, (1, 2, 3), [2, 3], term=3, pre_vote=False, check_quorum=False)

    def vote(term: int, last_term: int, last_index: int) -> bool:
        raw.step(Message(MT.VOTE, to=3, frm=1, term=term, index=last_index, log_term=last_term))
        _, persisted = _drain(raw, storage)
        assert len(persisted) == 1 and persisted[0].type == MT.VOTE_RESP
        return not persisted[0].reject

    assert not vote(4, last_term=2, last_index=10)
    assert not vote(5, last_term=3, last_index=2)
    assert vote(6, last_term=3, last_index=3)
    assert vote(7, last_term=4, last_index=1)


def test_section_5_4_2_figure_8_previous_term_entries_commit_only_indirectly() -> None:
    """§5.4.2 (Figure 8): a leader never commits an entry of an earlier term by counting
    replicas; it commits it only by committing an entry of its own term after it."""
    voters = (1, 2, 3, 4, 5)
    leader, storage = _node_with_log(1, voters, [2, 2], term=3, commit=2, pre_vote=False)
    leader.campaign()
    _drain(leader, storage)
    for voter in (2, 3):
        leader.step(Message(MT.VOTE_RESP, to=1, frm=voter, term=4))
    assert leader.raft.role == StateRole.LEADER and leader.raft.term == 4
    _drain(leader, storage)  # persists the leader's empty entry 4/4
    for voter in (2, 3):
        leader.step(Message(MT.APP_RESP, to=1, frm=voter, term=4, index=3))
    match = {node_id: progress.match for node_id, progress in leader.raft.prs.items()}
    assert committed_index(voters, match) == 3  # 2/3 is on a majority...
    assert leader.raft.log.committed == 2  # ...but it is from term 2: not committed
    leader.step(Message(MT.APP_RESP, to=1, frm=2, term=4, index=4))
    assert leader.raft.log.committed == 2  # 4/4 on two of five only
    leader.step(Message(MT.APP_RESP, to=1, frm=3, term=4, index=4))
    assert leader.raft.log.committed == 4
    rd = leader.ready()
    assert [(e.term, e.index) for e in rd.committed_entries] == [(2, 3), (4, 4)]
    leader.advance(rd)


def test_section_5_5_follower_and_candidate_crashes_retries_are_idempotent() -> None:
    """§5.5: RPCs are idempotent, so a retried (duplicated) append or vote request does no
    harm; a crashed follower keeps what it persisted and the leader's retries catch it up."""
    cluster = MemCluster([1, 2, 3], seed=2)
    cluster.elect(1)
    cluster.propose(1, b"x")
    cluster.process_ready(1)
    to_two = [m for m in cluster.network.in_flight if m.to == 2]
    cluster.network.in_flight = [m for m in cluster.network.in_flight if m.to != 2]
    for message in to_two + copy.deepcopy(to_two):
        cluster.deliver(message)
    follower = cluster.node(2)
    assert [data for _, _, data in _log_of(follower)].count(b"x") == 1
    cluster.process_ready(2)
    acks = [m for m in cluster.network.in_flight if m.type == MT.APP_RESP and m.frm == 2]
    assert [(m.reject, m.index) for m in acks] == [(False, 3), (False, 3)]
    cluster.stabilize()
    assert cluster.node(1).raft.log.committed == 3

    # A follower crashes; the leader's appends to it fail while it is down.
    cluster.crash(3)
    before = cluster.nodes[3].disk.last_index()
    cluster.propose(1, b"y")
    cluster.stabilize()
    cluster.restart(3)
    assert cluster.node(3).raft.log.last_index() == before  # persisted state survived
    _tick_heartbeat(cluster, 1)
    cluster.stabilize()
    assert _log_of(cluster.node(3)) == _log_of(cluster.node(1))

    # A candidate that crashed after voting for itself sends the same request again; a voter
    # that already granted it grants it again.
    voter, storage = _node_with_log(3, (1, 2, 3), [], term=1, pre_vote=False)
    for _ in range(2):
        voter.step(Message(MT.VOTE, to=3, frm=2, term=2, index=1, log_term=1))
        _, persisted = _drain(voter, storage)
        assert [(m.to, m.reject) for m in persisted] == [(2, False)]


def test_section_6_membership_changes_one_server_at_a_time() -> None:
    """§6 (thesis §4.1, §4.2.1): one change at a time, taking effect when applied; a new
    server joins as a non-voting learner, catches up, then is promoted; quorums follow the
    new configuration."""
    cluster = MemCluster([1, 2, 3], seed=3)
    cluster.elect(1)
    cluster.add_empty_node(4)
    cluster.propose_conf_change(1, ConfChange(ConfChangeType.ADD_LEARNER, 4))
    with pytest.raises(ConfChangeRefused):
        cluster.propose_conf_change(1, ConfChange(ConfChangeType.ADD_LEARNER, 5))
    cluster.stabilize()
    _tick_heartbeat(cluster, 1)
    cluster.stabilize()
    leader = cluster.node(1).raft
    assert (leader.voters, leader.learners) == ({1, 2, 3}, {4})
    learner = cluster.node(4)
    assert learner.raft.log.last_index() == leader.log.last_index()
    for _ in range(5 * learner.raft.election_timeout):
        cluster.tick(4)
    assert learner.raft.role == StateRole.FOLLOWER and learner.raft.term == leader.term

    cluster.propose_conf_change(1, ConfChange(ConfChangeType.ADD_NODE, 4))
    cluster.stabilize()
    assert leader.voters == {1, 2, 3, 4} and cluster.node(4).raft.voters == {1, 2, 3, 4}

    # Four voters: three make a quorum, two do not.
    cluster.crash(3)
    _, index = cluster.propose(1, b"three of four")
    cluster.stabilize()
    assert leader.log.committed == index
    cluster.crash(2)
    _, index = cluster.propose(1, b"two of four")
    cluster.stabilize()
    assert leader.log.committed == index - 1


def test_section_6_removing_the_leader_hands_over_leadership() -> None:
    """§6 (thesis §4.2.2): a leader removed from the configuration steps down once the
    change is applied; here it hands over with TimeoutNow, so a new leader follows at once."""
    cluster = MemCluster([1, 2, 3], seed=4)
    cluster.elect(1)
    cluster.propose_conf_change(1, ConfChange(ConfChangeType.REMOVE_NODE, 1))
    cluster.stabilize()
    new_leader = cluster.leader()
    assert new_leader in (2, 3)
    assert cluster.node(new_leader).raft.voters == {2, 3}
    old = cluster.node(1).raft
    assert old.role == StateRole.FOLLOWER and not old.promotable()
    for _ in range(5 * old.election_timeout):
        cluster.tick(1)
    assert old.role == StateRole.FOLLOWER


def test_section_7_log_compaction_and_chunked_install_snapshot() -> None:
    """§7: a follower that needs entries the leader has compacted away receives the
    snapshot (in chunks), restores the leader's state machine and then replicates normally."""
    cluster = MemCluster([1, 2, 3], seed=5, snapshot_chunk_bytes=16)
    cluster.elect(1)
    cluster.network.isolate(3, [1, 2, 3])
    for number in range(5):
        cluster.propose(1, f"e{number}".encode())
    cluster.stabilize()
    assert cluster.nodes[1].maybe_compact(threshold=1)
    leader_disk = cluster.nodes[1].disk
    assert leader_disk.first_index() > cluster.node(3).raft.log.last_index() + 1
    cluster.network.heal()
    _tick_heartbeat(cluster, 1)
    seen = _stabilize_recording(cluster)
    chunks = [m for m in seen if m.type == MT.SNAP and m.to == 3]
    assert [m.snap_offset for m in chunks] == [0, 16, 32]
    assert [m.snap_done for m in chunks] == [False, False, True]
    assert cluster.nodes[3].disk.snapshot().metadata.index == leader_disk.snapshot().metadata.index
    assert cluster.nodes[3].sm.digest == cluster.nodes[1].sm.digest
    assert cluster.nodes[3].sm.count == 5

    _, index = cluster.propose(1, b"after")
    cluster.stabilize()
    assert cluster.node(3).raft.log.committed == index
    assert cluster.nodes[3].sm.digest == cluster.nodes[1].sm.digest


def test_section_8_client_interaction_noop_entry_and_read_index() -> None:
    """§8: a new leader commits an empty entry of its term first; a read-only request is
    answered only after a heartbeat round confirms leadership, at a commit index that covers
    every write committed before the read, and waits until the leader committed in its term."""
    cluster = MemCluster([1, 2, 3], seed=6)
    cluster.elect(1)
    leader = cluster.node(1).raft
    last = leader.log.all_entries()[-1]
    assert (last.term, last.data, last.type) == (leader.term, b"", EntryType.NORMAL)
    assert leader.log.committed == last.index

    _, index = cluster.propose(1, b"w")
    cluster.stabilize()
    cluster.node(1).read_index(b"r1")
    cluster.process_ready(1)
    assert cluster.nodes[1].read_states == []  # not before the heartbeat round
    assert {m.context for m in cluster.network.in_flight} == {b"r1"}
    cluster.stabilize()
    assert cluster.nodes[1].read_states == [ReadState(index, b"r1")]

    cluster.node(3).read_index(b"r2")  # forwarded from a follower
    cluster.stabilize()
    assert cluster.nodes[3].read_states == [ReadState(index, b"r2")]

    # A new leader (by transfer) before its empty entry commits: the read waits.
    cluster.node(1).transfer_leader(2)
    _run_until(cluster, lambda: cluster.node(2).raft.role == StateRole.LEADER)
    new_leader = cluster.node(2).raft
    assert new_leader.log.term_or_zero(new_leader.log.committed) != new_leader.term
    cluster.node(2).read_index(b"r3")
    assert not any(m.context == b"r3" for m in new_leader.msgs)
    cluster.stabilize()
    noop_index = index + 1
    assert cluster.nodes[2].read_states == [ReadState(noop_index, b"r3")]


# -- Ongaro's thesis -----------------------------------------------------------------------------
def test_thesis_3_10_leadership_transfer() -> None:
    """Thesis §3.10: the leader brings a lagging transferee up to date before sending
    TimeoutNow, refuses proposals meanwhile, and the transferee wins the next term."""
    cluster = MemCluster([1, 2, 3], seed=7)
    cluster.elect(1)
    term = cluster.node(1).raft.term
    cluster.network.cut(1, 3)
    cluster.propose(1, b"b")
    cluster.propose(1, b"c")
    cluster.stabilize()
    cluster.network.heal()
    cluster.node(1).transfer_leader(3)
    with pytest.raises(ProposalDropped):
        cluster.propose(1, b"refused")
    cluster.process_ready(1)
    first = [m.type for m in cluster.network.in_flight]
    assert MT.TIMEOUT_NOW not in first and MT.APP in first
    cluster.stabilize()
    assert cluster.leader() == 3
    assert cluster.node(3).raft.term == term + 1
    assert [d for _, _, d in _log_of(cluster.node(3)) if d] == [b"b", b"c"]


def test_thesis_4_2_3_disruptive_servers_check_quorum_lease() -> None:
    """Thesis §4.2.3 and §6.2: a server that heard from a leader within an election timeout
    ignores vote requests; a leader that has not heard from a quorum for an election timeout
    steps down."""
    cluster = MemCluster([1, 2, 3], seed=8, pre_vote=False)
    cluster.elect(1)
    term = cluster.node(1).raft.term
    cluster.network.isolate(3, [1, 2, 3])
    disruptor = cluster.node(3).raft
    for _ in range(10 * disruptor.election_timeout):
        cluster.tick(3)
        cluster.stabilize()
    assert disruptor.term > term + 1
    cluster.network.heal()
    stale = disruptor.term
    for _ in range(2 * disruptor.election_timeout):
        if disruptor.term != stale:
            break
        cluster.tick(3)
    assert disruptor.role == StateRole.CANDIDATE and disruptor.term == stale + 1
    cluster.process_ready(3)
    requests = [m for m in cluster.network.in_flight if m.type == MT.VOTE]
    assert requests
    for message in requests:
        cluster.deliver(message)
    for node_id in (1, 2):
        assert cluster.node(node_id).raft.term == term
    assert cluster.node(1).raft.role == StateRole.LEADER
    assert not cluster.node(2).raft.msgs_after_append  # no vote granted or refused

    # The leader cut off from its quorum steps down within two election timeouts.
    cluster.network.in_flight = []
    cluster.network.isolate(1, [1, 2, 3])
    leader = cluster.node(1).raft
    for _ in range(2 * leader.election_timeout):
        cluster.tick(1)
    assert leader.role == StateRole.FOLLOWER and leader.term == term


def test_thesis_9_6_pre_vote_keeps_a_partitioned_server_from_disrupting() -> None:
    """Thesis §9.6: a partitioned server only pre-votes, so its term does not grow; when it
    rejoins with a stale log its pre-votes fail and the leader keeps leading."""
    cluster = MemCluster([1, 2, 3], seed=9, check_quorum=False)
    cluster.elect(1)
    term = cluster.node(1).raft.term
    cluster.network.isolate(3, [1, 2, 3])
    cluster.propose(1, b"while partitioned")
    cluster.stabilize()
    isolated = cluster.node(3).raft
    roles = set()
    for _ in range(10 * isolated.election_timeout):
        cluster.tick(3)
        roles.add(isolated.role)
        cluster.stabilize()
    assert StateRole.PRE_CANDIDATE in roles and StateRole.CANDIDATE not in roles
    assert isolated.term == term
    cluster.network.heal()
    for _ in range(3 * isolated.election_timeout):
        cluster.tick(3)
        cluster.stabilize()
    assert [cluster.node(i).raft.term for i in (1, 2, 3)] == [term] * 3
    assert cluster.leader() == 1
    _tick_heartbeat(cluster, 1)
    cluster.stabilize()
    assert _log_of(cluster.node(3)) == _log_of(cluster.node(1))


def test_thesis_10_2_1_leader_writes_its_log_in_parallel() -> None:
    """Thesis §10.2.1: the leader sends appends before its own write is durable; its own
    entries count toward commitment only once persisted (reported by ``advance``)."""
    cluster = MemCluster([1, 2, 3], seed=10)
    cluster.elect(1)
    leader = cluster.node(1)
    _, index = leader.propose(b"x")
    rd = leader.ready()
    assert [e.index for e in rd.entries] == [index]
    appends = [m for m in rd.messages if m.type == MT.APP]
    assert {m.to for m in appends} == {2, 3}  # sent before the leader persisted
    cluster.deliver(next(m for m in appends if m.to == 2))
    cluster.process_ready(2)
    ack = next(m for m in cluster.network.in_flight if m.type == MT.APP_RESP)
    cluster.network.in_flight.clear()
    leader.step(ack)
    assert leader.raft.log.committed == index - 1  # n2 alone is no quorum: own write pending
    cluster.nodes[1].persist(rd)
    leader.advance(rd)
    assert leader.raft.log.committed == index


def test_ready_contract_votes_and_acks_only_in_persisted_messages() -> None:
    """The Ready contract: vote requests, vote grants and append acknowledgements travel only
    in ``persisted_messages``, and what they vouch for is durable once step 1 is done."""
    ids = [1, 2, 3]
    cluster = MemCluster(ids, seed=11)
    rng = random.Random(2024)
    vouching = {MT.VOTE, MT.VOTE_RESP, MT.APP_RESP}
    seen: set[MessageType] = set()
    proposals = 0
    for _ in range(3000):
        node_id = rng.choice(ids)
        roll = rng.random()
        if roll < 0.6:
            cluster.tick(node_id)
        elif roll < 0.75:
            leader = cluster.leader()
            if leader != NONE:
                try:
                    cluster.propose(leader, f"p{proposals}".encode())
                    proposals += 1
                except ProposalDropped:
                    pass
        elif roll < 0.78:
            if cluster.nodes[node_id].alive:
                cluster.crash(node_id)
            else:
                cluster.restart(node_id)
        elif roll < 0.80:
            cluster.network.heal()
            if rng.random() < 0.5:
                cluster.network.isolate(node_id, ids)
        for target in ids:
            node = cluster.nodes[target]
            if not node.alive or not node.node().has_ready():
                continue
            raw = node.node()
            rd = raw.ready()
            assert not [m for m in rd.messages if m.type in vouching]
            assert all(m.type in vouching for m in rd.persisted_messages)
            cluster.network.send(rd.messages)
            node.persist(rd)
            for message in rd.persisted_messages:
                seen.add(message.type)
                hard = node.disk.hard_state
                if message.type == MT.VOTE_RESP and not message.reject:
                    assert (hard.term, hard.vote) == (message.term, message.to)
                if message.type == MT.VOTE:
                    assert (hard.term, hard.vote) == (message.term, target)
                if message.type == MT.APP_RESP and not message.reject:
                    assert node.disk.last_index() >= message.index
            cluster.network.send(rd.persisted_messages)
            node.apply(rd)
            raw.advance(rd)
        in_flight, cluster.network.in_flight = cluster.network.in_flight, []
        for message in in_flight:
            fate = rng.random()
            if fate < 0.1:
                continue  # lost
            if fate < 0.25:
                cluster.network.in_flight.append(message)  # delayed
            else:
                cluster.deliver(message)
    assert vouching <= seen
    assert proposals > 20


def test_section_8_a_forwarded_read_without_a_leader_is_dropped_not_raised() -> None:
    """§8: a read forwarded by a follower may reach a node that has since stepped down in the
    same term (CheckQuorum) or is campaigning; it is dropped (the client retries), and
    stepping a peer's message never raises. A local read with no leader is refused."""
    raw, storage = _node_with_log(1, (1, 2, 3), [], term=2)
    raw.step(Message(MT.READ_INDEX, to=1, frm=3, term=2, context=b"r"))
    assert not raw.raft.msgs and not raw.raft.read_states
    with pytest.raises(ProposalDropped):
        raw.read_index(b"local")
    raw.campaign()  # pre-candidate: same term
    _drain(raw, storage)
    raw.step(Message(MT.READ_INDEX, to=1, frm=3, term=2, context=b"r2"))
    assert not raw.raft.msgs and not raw.raft.read_states
