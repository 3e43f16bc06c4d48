"""Sharded nodes as real processes: placement, balanced leaders, a kill -9 of a node leading
shards, and a restart that reopens every group from the node's one RocksDB.

The pure pieces first (the placement rule, the session hash, the storage engine's column
families and its fsync shared across groups), then ``quorumlog cluster up --shards 6``."""

from __future__ import annotations

import os
import signal
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cluster_up_process import addresses, cluster_up, free_base_port, up_command, wait_for

from quorumlog.client.retry import RetryPolicy
from quorumlog.client.sdk import Client
from quorumlog.node.state.placement import place, with_node, without_node
from quorumlog.node.storage.engine import StorageEngine
from quorumlog.node.storage.log_store import write_readies
from quorumlog.node.storage.raft_store import RocksStorage, log_options
from quorumlog.proto.sharding import shard_of
from quorumlog.raft.rawnode import Ready
from quorumlog.raft.types import Entry, HardState

SHARDS = 6


# -- pure pieces ---------------------------------------------------------------------------------
def test_the_session_hash_is_crc32_of_the_utf8_name_and_never_changes() -> None:
    # Pinned: every client language computes these; a change would lose every session.
    assert [shard_of(name, 6) for name in ("orders-42", "a", "b", "c", "ü")] == [4, 3, 5, 3, 1]
    # The IEEE CRC-32 check value (of "123456789") is 0xcbf43926.
    assert zlib.crc32(b"123456789") == 0xCBF43926
    assert shard_of("anything", 1) == 0
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("x", 0)


def test_placement_spreads_preferred_leaders_and_keeps_replicas_apart() -> None:
    shards = place(6, [1, 2, 3], {})
    assert [s.replicas[0] for s in shards] == [1, 2, 3, 1, 2, 3]  # 2 preferred each
    assert all(sorted(s.replicas) == [1, 2, 3] for s in shards)
    six = place(6, [1, 2, 3, 4, 5, 6], {})
    assert all(len(set(s.replicas)) == 3 for s in six)
    assert Counter(node for s in six for node in s.replicas) == {n: 3 for n in range(1, 7)}
    # Two hosts with two processes each: no shard puts two of its first two replicas on one
    # host, and a third replica has to share one (only two hosts exist).
    tagged = place(4, [1, 2, 3, 4], {1: "a", 2: "a", 3: "b", 4: "b"})
    tags = {1: "a", 2: "a", 3: "b", 4: "b"}
    assert all({tags[n] for n in s.replicas[:2]} == {"a", "b"} for s in tagged)
    assert [s.group for s in tagged] == [1, 2, 3, 4]  # group 0 is the meta group
    assert all(len(s.replicas) == 1 for s in place(3, [7], {}))


def test_groups_live_in_their_own_column_families_of_one_database() -> None:
    path = Path(tempfile.mkdtemp()) / "db"
    engine = StorageEngine(path, log_options(path))
    meta = RocksStorage(path, engine=engine, group=0)
    meta.bootstrap((1, 2, 3))
    meta.append([Entry(1, 2, b"meta entry")])
    data = RocksStorage(path, engine=engine, group=4)
    # Founding a group range-deletes its log prefix: it must not touch group 0's log (it
    # did, through rocksdict's delete_range, before the engine named the family).
    data.bootstrap((1, 2, 3))
    data.append([Entry(1, 2, b"shard entry")])
    data.compact(2)
    engine.close()
    engine = StorageEngine(path, log_options(path))
    assert engine.groups() == [0, 4]
    meta = RocksStorage(path, engine=engine, group=0)
    data = RocksStorage(path, engine=engine, group=4)
    assert meta.entries(2, 3)[0].data == b"meta entry"
    assert (data.first_index(), data.last_index()) == (3, 2)  # compacted through 2
    engine.close()


def test_groups_ready_together_share_one_atomic_write() -> None:
    """``write_readies``: every group's Ready in one batch of the shared engine, written
    (and fsynced) once; each group's log and hard state then read back as its own."""
    path = Path(tempfile.mkdtemp()) / "db"
    engine = StorageEngine(path, log_options(path))
    stores = [RocksStorage(path, engine=engine, group=g) for g in range(4)]
    for store in stores:
        store.bootstrap((1,))
    writes: list[bool] = []
    write_shared = engine.write_shared

    def counting(shared: Any, *, sync: bool) -> None:
        writes.append(sync)
        write_shared(shared, sync=sync)

    engine.write_shared = counting  # type: ignore[method-assign]
    readies = [
        Ready(entries=[Entry(2, 2, b"g%d" % g)], hard_state=HardState(2, 1, 1), must_sync=True)
        for g in range(4)
    ]
    write_readies(list(zip(stores, readies, strict=True)), sync=True)
    assert writes == [True]  # one write, synced: one fsync for the four groups
    engine.close()
    engine = StorageEngine(path, log_options(path))
    for g in range(4):
        store = RocksStorage(path, engine=engine, group=g)
        assert [e.data for e in store.entries(2, 3)] == [b"g%d" % g]
        assert store.initial_state()[0] == HardState(2, 1, 1)
    engine.close()


# -- real processes --------------------------------------------------------------------------------
def _leaders(client: Client) -> dict[int, str]:
    """shard -> leader name, from any node's view that knows it."""
    leaders: dict[int, str] = {}
    for report in client.cluster_status().reachable:
        assert report.status is not None
        for shard in report.status.shards:
            if shard.leader and shard.role == "leader":
                leaders[shard.shard] = shard.leader
    return leaders


@pytest.mark.cluster
def test_kill_9_of_a_node_leading_shards_loses_nothing_and_its_groups_come_back(
    tmp_path: Path,
) -> None:
    base = free_base_port()
    sessions = [f"kill/{i}" for i in range(30)]
    assert {shard_of(name, SHARDS) for name in sessions} == set(range(SHARDS))
    retry = RetryPolicy(initial_backoff=0.01, max_backoff=0.1)
    command = up_command(tmp_path / "data", base, "--shards", str(SHARDS), "--restart-delay", "1")
    with cluster_up(command) as up:
        _, pids = up.wait_ready(90)
        with Client(addresses(base), deadline=30, retry=retry) as client:
            # Placement, then preferred leaders: every node leads 2 +- 1 shards.
            wait_for(lambda: len(_leaders(client)) == SHARDS, 60, "a leader for every shard")
            wait_for(
                lambda: all(1 <= n <= 3 for n in Counter(_leaders(client).values()).values())
                and len(set(_leaders(client).values())) == 3,
                60, "leaders balanced over the three nodes",
            )
            acked: dict[str, list[bytes]] = {name: [] for name in sessions}
            for round_ in range(3):
                for name in sessions:
                    client.append(name, f"{round_}".encode())
                    acked[name].append(f"{round_}".encode())
            leaders = _leaders(client)
            victim = Counter(leaders.values()).most_common(1)[0][0]
            led = sorted(shard for shard, name in leaders.items() if name == victim)
            killed_at = len(up.output.lines)
            os.kill(pids[victim], signal.SIGKILL)
            started = time.monotonic()
            # Every shard accepts appends again (the victim's shards elect new leaders).
            for name in sessions:
                client.append(name, b"after")
                acked[name].append(b"after")
            print(f"killed {victim} (leader of shards {led}); every shard took an append "
                  f"again after {time.monotonic() - started:.2f} s")
            # The victim restarts (cluster up supervises it), reopens its seven groups from
            # its one database and catches up; nothing acknowledged is missing anywhere.
            up.wait_restarted(victim, after=killed_at, timeout=60)

            def back() -> bool:
                for report in client.cluster_status().reachable:
                    status = report.status
                    if status is not None and status.id == victim:
                        return len([shard for shard in status.shards if shard.role]) == SHARDS
                return False

            wait_for(back, 60, f"{victim} back, hosting all {SHARDS} shards again")
            for name in sessions:
                page = client.read(name)
                assert [record.data for record in page.records] == acked[name], name


def test_a_joining_node_takes_its_share_and_a_leaving_one_hands_every_replica_over() -> None:
    shards = place(6, [1, 2, 3], {})
    moved = with_node(shards, 4, [1, 2, 3], {})
    after = {s.shard: s for s in shards} | {s.shard: s for s in moved}
    load = Counter(node for s in after.values() for node in s.replicas)
    assert load[4] >= 4  # 18 replicas over 4 nodes: about 4.5 each
    assert max(load.values()) - min(load.values()) <= 1
    assert all(len(set(s.replicas)) == 3 for s in after.values())
    assert all(s.founders == shards[s.shard].founders for s in moved)  # founders kept
    assert all(not s.founded_by(4) for s in moved)  # so n4 starts empty, caught up later
    # n1 leaves: each of its replicas goes to a node that does not have one of that shard.
    gone = without_node(list(after.values()), 1, [1, 2, 3, 4], {})
    final = after | {s.shard: s for s in gone}
    assert all(1 not in s.replicas and len(set(s.replicas)) == 3 for s in final.values())
    # With three nodes left to three (RF 3), a leaving node's replica is simply dropped...
    small = without_node(place(3, [1, 2, 3], {}), 3, [1, 2, 3], {})
    assert [sorted(s.replicas) for s in small] == [[1, 2], [1, 2], [1, 2]]
    # ... and when it comes back every shard short of a replica takes it, whatever its
    # share (the chaos run's membership fault found a shard left at two).
    back = with_node(small, 3, [1, 2], {})
    assert [sorted(s.replicas) for s in back] == [[1, 2, 3]] * 3
