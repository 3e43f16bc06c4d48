"""The in-memory peer transport (``quorumlog.node.replication.memory_transport``) and the
in-process cluster built on it (``tests/inprocess_cluster.py``): real RaftNodes on
``MemoryLogStore``s and real services, in one process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from inprocess_cluster import InProcessCluster, inprocess_cluster
from waiting import wait_until

from quorumlog.client.sdk import Client, Consistency
from quorumlog.node.replication.memory_transport import LinkDown, MemoryNetwork, MemoryTransport
from quorumlog.node.replication.transport import PeerInfo
from quorumlog.raft import Entry, Message
from quorumlog.raft.types import MessageType

SETTLE = 30.0  # an election or a catch-up on two loaded cores


# -- the transport alone ---------------------------------------------------------------------------
class Ends:
    """Three transports on one network, recording what each receives."""

    def __init__(self) -> None:
        self.network = MemoryNetwork()
        self.received: dict[int, list[Message]] = {1: [], 2: [], 3: []}
        self.unreachable: dict[int, list[int]] = {1: [], 2: [], 3: []}
        peers = {i: PeerInfo(f"n{i}", f"inprocess/n{i}") for i in (1, 2, 3)}
        self.ends: dict[int, MemoryTransport] = {}
        for node_id in (1, 2, 3):

            async def export(
                min_index: int, group: int = 0, node_id: int = node_id
            ) -> AsyncIterator[bytes]:
                for part in (b"state-of-", b"n%d@%d" % (node_id, min_index)):
                    yield part

            end = self.network.transport(
                self_id=node_id, self_name=f"n{node_id}", client_address=f"c{node_id}",
                peers={k: PeerInfo(v.name, v.peer_address) for k, v in peers.items()},
                on_messages=lambda items, into=self.received[node_id]: into.extend(
                    message for _, message in items  # (group, message): one group here
                ),
                on_unreachable=self.unreachable[node_id].append,
                export_state=export,
            )
            end.start()
            self.ends[node_id] = end


def app(frm: int, to: int, index: int) -> Message:
    return Message(type=MessageType.APP, to=to, frm=frm, term=1, index=index,
                   entries=[Entry(1, index + 1, b"x%d" % index)])


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)  # deliveries run on later turns of the loop


def test_messages_arrive_later_in_order_as_copies_and_teach_the_sender() -> None:
    async def scenario() -> None:
        ends = Ends()
        sent = [app(1, 2, index) for index in range(5)] + [app(1, 3, 9)]
        ends.ends[1].send(sent)
        assert ends.received[2] == []  # never inline: the sender's Ready is not re-entered
        await _settle()
        assert [message.index for message in ends.received[2]] == [0, 1, 2, 3, 4]
        assert [message.index for message in ends.received[3]] == [9]
        assert ends.received[2][0] == sent[0] and ends.received[2][0] is not sent[0]
        assert ends.received[2][0].entries[0] is not sent[0].entries[0]
        assert ends.ends[2].peers[1].client_address == "c1"
        assert 1 in ends.ends[2].last_heard
        assert ends.network.delivered == 6

    asyncio.run(scenario())


def test_a_cut_link_drops_one_direction_including_what_was_in_flight() -> None:
    async def scenario() -> None:
        ends = Ends()
        ends.ends[1].send([app(1, 2, 0)])
        ends.network.cut(1, 2)  # the message above is in flight: it is lost too
        ends.ends[1].send([app(1, 2, 1)])
        ends.ends[2].send([app(2, 1, 7)])  # the other direction still works
        await _settle()
        assert ends.received[2] == []
        assert [message.index for message in ends.received[1]] == [7]
        assert ends.unreachable[1] == [2]
        assert ends.network.dropped == 2
        ends.network.heal(1, 2)
        ends.ends[1].send([app(1, 2, 2)])
        await _settle()
        assert [message.index for message in ends.received[2]] == [2]

    asyncio.run(scenario())


def test_partition_stop_and_unknown_peers() -> None:
    async def scenario() -> None:
        ends = Ends()
        ends.network.partition(3)
        ends.ends[1].send([app(1, 3, 0), app(1, 2, 1)])
        ends.ends[3].send([app(3, 2, 2)])
        await _settle()
        assert [message.index for message in ends.received[2]] == [1]
        assert ends.received[3] == []
        ends.network.cut(1, 2)
        ends.network.heal_node(3)  # n3's links only: 1 -> 2 stays cut
        ends.ends[3].send([app(3, 1, 5)])
        ends.ends[1].send([app(1, 2, 6)])
        await _settle()
        assert [message.index for message in ends.received[1]] == [5]
        assert [message.index for message in ends.received[2]] == [1]
        ends.network.heal_all()
        await ends.ends[2].stop()  # a stopped node receives nothing
        ends.ends[1].send([app(1, 2, 3)])
        await _settle()
        assert [message.index for message in ends.received[2]] == [1]
        ends.ends[1].set_peers({1: PeerInfo("n1", "a1"), 2: PeerInfo("n2", "a2")})
        ends.ends[1].send([app(1, 3, 4)])  # n3 was removed: no link to it
        await _settle()
        assert ends.received[3] == []
        assert ends.ends[1].peer_address(2) == "a2"

    asyncio.run(scenario())


def test_fetch_state_streams_the_peers_export_unless_the_link_is_cut() -> None:
    async def scenario() -> None:
        ends = Ends()
        chunks = [chunk async for chunk in ends.ends[1].fetch_state(2, 5)]
        assert b"".join(chunks) == b"state-of-n2@5"
        ends.network.cut(1, 2)
        with pytest.raises(LinkDown):
            [chunk async for chunk in ends.ends[1].fetch_state(2, 5)]

    asyncio.run(scenario())


# -- the in-process cluster ------------------------------------------------------------------------
@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[InProcessCluster]:
    with inprocess_cluster(tmp_path) as running:
        yield running


def wait_applied_everywhere(cluster: InProcessCluster, names: list[str], leader: str) -> None:
    def caught_up() -> bool:
        target = cluster.status(leader).commit_index
        return all(cluster.status(name).applied_index >= target for name in names)

    wait_until(caught_up, SETTLE, f"{names} to apply what {leader} committed")


def test_appends_replicate_to_every_node(cluster: InProcessCluster) -> None:
    leader = cluster.wait_ready()
    with Client(cluster.addresses, deadline=SETTLE, seed=3) as client:
        offsets = [client.append("s", b"m%d" % index).first_offset for index in range(20)]
    assert offsets == list(range(20))
    wait_applied_everywhere(cluster, list(cluster.nodes), leader)
    for name, node in cluster.nodes.items():
        with Client([node.client_addr], deadline=SETTLE, seed=3) as client:
            records = client.read("s", 0, consistency=Consistency.FOLLOWER).records
        assert [record.data for record in records] == [b"m%d" % i for i in range(20)], name
        assert node.log_store.last_index() >= 21  # the log lives in the memory store


def test_a_partitioned_leader_is_replaced_and_catches_up_after_healing(
    cluster: InProcessCluster,
) -> None:
    old = cluster.wait_ready()
    cluster.partition(old)
    new = cluster.wait_leader(SETTLE, exclude=(old,))
    assert new != old
    others = [name for name in cluster.nodes if name != old]
    with Client([cluster.nodes[name].client_addr for name in others], deadline=SETTLE,
                seed=4) as client:
        assert client.append("p", b"during").first_offset == 0
    # CheckQuorum: the cut-off leader steps down on its own.
    wait_until(lambda: cluster.status(old).role != "leader", SETTLE, f"{old} to step down")
    cluster.heal_all()
    wait_applied_everywhere(cluster, list(cluster.nodes), new)
    with Client([cluster.nodes[old].client_addr], deadline=SETTLE, seed=4) as client:
        records = client.read("p", 0, consistency=Consistency.FOLLOWER).records
    assert [record.data for record in records] == [b"during"]


def test_a_node_stopped_and_started_again_keeps_its_log(cluster: InProcessCluster) -> None:
    leader = cluster.wait_ready()
    follower = next(name for name in cluster.nodes if name != leader)
    with Client(cluster.addresses, deadline=SETTLE, seed=5) as client:
        client.append("r", b"before")
        wait_applied_everywhere(cluster, [follower], leader)
        cluster.stop_node(follower)
        client.append("r", b"while-down")
        store = cluster.nodes[follower].log_store
        first, last = store.first_index(), store.last_index()
        kept = store.entries(first, last + 1)
        cluster.start_node(follower)
        # The reopened store holds the same log (the leader may have added to it since).
        assert cluster.nodes[follower].log_store is not store
        assert cluster.nodes[follower].log_store.entries(first, last + 1) == kept
        wait_applied_everywhere(cluster, [follower], leader)
    with Client([cluster.nodes[follower].client_addr], deadline=SETTLE, seed=5) as client:
        records = client.read("r", 0, consistency=Consistency.FOLLOWER).records
    assert [record.data for record in records] == [b"before", b"while-down"]


def test_a_follower_behind_the_compacted_log_restores_the_leaders_state(tmp_path: Path) -> None:
    """The leader's log no longer reaches back to the follower's: it is sent a snapshot and
    fetches the state itself over the in-memory transport (``fetch_state``)."""
    with inprocess_cluster(tmp_path, snapshot_every=10, snapshot_keep=2) as cluster:
        leader = cluster.wait_ready()
        follower = next(name for name in cluster.nodes if name != leader)
        with Client(cluster.addresses, deadline=SETTLE, seed=6) as client:
            client.append("c", b"first")
            wait_applied_everywhere(cluster, [follower], leader)
            cluster.stop_node(follower)
            behind = cluster.nodes[follower].log_store.last_index()
            for index in range(40):
                client.append("c", b"m%d" % index)
            assert cluster.status(leader).first_index > behind + 1  # compacted past it
            cluster.start_node(follower)
            wait_applied_everywhere(cluster, [follower], leader)
        raft = cluster.nodes[follower].raft
        assert raft is not None and raft.metrics.snapshots_restored >= 1
        with Client([cluster.nodes[follower].client_addr], deadline=SETTLE, seed=6) as client:
            records = client.read("c", 0, consistency=Consistency.FOLLOWER).records
        assert [record.data for record in records] == [b"first"] + [
            b"m%d" % index for index in range(40)]
