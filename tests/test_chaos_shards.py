"""The chaos run's sharding pieces, without processes: sessions spread over every shard, one
route per shard, the shard on every recorded operation, per-shard checker figures, the
monitor's view of shard leaders (the nemesis' target) and leader moves, and which faults a
sharded cluster takes. The end-to-end sharded runs are in ``tests/test_chaos_run.py``."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from quorumlog.chaos.run import faults
from quorumlog.chaos.run.checker import CheckConfig, check
from quorumlog.chaos.run.faults import DEFAULT_FAULTS, FaultListError, for_shards
from quorumlog.chaos.run.history import HistoryError, HistoryWriter, parse_history, read_history
from quorumlog.chaos.run.monitor import ClusterMonitor
from quorumlog.chaos.run.workload import MIN_SESSIONS_PER_SHARD, Route, WorkloadConfig
from quorumlog.client import errors
from quorumlog.proto import quorumlog_pb2 as pb
from quorumlog.proto.sharding import shard_of

LENIENT = CheckConfig(min_throughput=0.0, min_acked=0)


def test_one_shard_keeps_todays_session_names() -> None:
    assert WorkloadConfig().session_names == tuple(f"s{index}" for index in range(8))
    assert WorkloadConfig(sessions=3, shards=1).session_names == ("s0", "s1", "s2")


@pytest.mark.parametrize(("shards", "sessions"), [(2, 8), (3, 8), (4, 8), (6, 8), (4, 40)])
def test_sessions_spread_so_every_shard_gets_several(shards: int, sessions: int) -> None:
    names = WorkloadConfig(sessions=sessions, shards=shards).session_names
    per_shard = {shard: [name for name in names if shard_of(name, shards) == shard]
                 for shard in range(shards)}
    wanted = max(MIN_SESSIONS_PER_SHARD, -(-sessions // shards))
    assert all(len(found) == wanted for found in per_shard.values()), per_shard
    assert len(set(names)) == len(names) == wanted * shards


def test_a_route_keeps_one_target_per_shard() -> None:
    route = Route({"n1": "127.0.0.1:1", "n2": "127.0.0.1:2", "n3": "127.0.0.1:3"},
                  random.Random(1))
    shard_two = errors.Unavailable("node n1: shard 2 ...",
                                   metadata={errors.LEADER_ID_KEY: "n3"})
    route.after_error("n1", shard_two, 2)
    assert route.target_for(2) == "n3"
    meta = route.target
    route.after_error("n2", errors.Unavailable("node n2: not the leader",
                                               metadata={errors.LEADER_ID_KEY: "n1"}), 0)
    assert route.target_for(0) == "n1"
    assert (route.target, route.target_for(2)) == (meta, "n3")  # others untouched


def _append(process: int, session: str, shard: int | None, value: str, *, offset: int,
            time: float) -> list[dict[str, object]]:
    invoke: dict[str, object] = {"type": "invoke", "process": process, "op": "append",
                                 "session": session, "values": [value], "time": time}
    if shard is not None:
        invoke["shard"] = shard
    return [invoke, {"type": "ok", "process": process, "op": "append", "offsets": [offset],
                     "time": time + 0.1}]


def _lines(events: list[dict[str, object]]) -> list[str]:
    return [json.dumps(event) for event in events]


def test_the_checker_counts_per_shard_and_finds_a_loss_in_one_shard() -> None:
    """Two shards, two sessions each; one acknowledged value missing from shard 1's final
    state: the run fails, and the loss is counted in shard 1 only."""
    shards = 2
    sessions = WorkloadConfig(sessions=4, shards=shards).session_names
    events: list[dict[str, object]] = []
    finals: dict[str, list[list[object]]] = {}
    time = 1.0
    for index, session in enumerate(sessions):
        shard = shard_of(session, shards)
        for offset in range(3):
            value = f"v{index}-{offset}"
            events += _append(index, session, shard, value, offset=offset, time=time)
            finals.setdefault(session, []).append([offset, value])
            time += 0.2
    victim = next(session for session in sessions if shard_of(session, shards) == 1)
    finals[victim].pop()  # the last acknowledged value of one session of shard 1
    for node in ("n1", "n2", "n3"):
        for session, records in finals.items():
            events.append({"type": "final", "node": node, "session": session,
                           "records": records, "leader": node == "n1", "time": time})
    result = check(parse_history(_lines(events)), LENIENT)
    data = result.to_json()
    assert data["verdict"] == "fail" and data["lost"] == 1
    per_shard = data["per_shard"]
    assert isinstance(per_shard, dict) and set(per_shard) == {"0", "1"}
    assert per_shard["1"]["anomalies"]["lost"] == 1
    assert per_shard["0"]["anomalies"]["lost"] == 0
    assert per_shard["0"]["acked"] == per_shard["1"]["acked"] == 3 * len(sessions) // 2
    assert victim in per_shard["1"]["sessions"]
    assert "shard 1: " in result.summary()


def test_an_unsharded_history_has_no_per_shard_figures() -> None:
    events = _append(0, "s0", None, "v", offset=0, time=1.0)
    assert "per_shard" not in check(parse_history(_lines(events)), LENIENT).to_json()


def test_a_completion_naming_another_shard_is_refused() -> None:
    events = _append(0, "s0", 1, "v", offset=0, time=1.0)
    events[1]["shard"] = 2
    with pytest.raises(HistoryError, match="shard 2 differs"):
        parse_history(_lines(events))


def test_the_shard_survives_the_writer_and_reader(tmp_path: Path) -> None:
    with HistoryWriter(tmp_path / "h.jsonl") as writer:
        writer.invoke(1, "read", 0.5, session="s4", from_offset=0, shard=3)
        writer.complete("ok", 1, "read", 0.6, records=[], end_offset=0)
        writer.invoke(2, "read", 0.7, session="s1", from_offset=0, shard=None)
        writer.complete("ok", 2, "read", 0.8, records=[], end_offset=0)
    history = read_history(tmp_path / "h.jsonl")
    assert [op.shard for op in history.operations] == [3, None]
    assert '"shard"' not in (tmp_path / "h.jsonl").read_text().splitlines()[2]


def _status(name: str, term: int, led: dict[int, int], count: int = 4) -> pb.NodeStatus:
    """``name``'s status: it leads each shard in ``led`` (shard -> term), follows the rest."""
    return pb.NodeStatus(
        id=name, role="follower", term=term, shard_count=count,
        shards=[pb.ShardStatus(shard=shard, replicas=["n1", "n2", "n3"],
                               role="leader" if shard in led else "follower",
                               term=led.get(shard, 1), commit_index=10, applied_index=10,
                               leader=name if shard in led else "")
                for shard in range(count)])


def test_the_monitor_names_the_node_leading_the_most_shards_and_counts_moves() -> None:
    monitor = ClusterMonitor({"n1": "a", "n2": "b", "n3": "c"}, lambda: 0.0)
    monitor.statuses = {"n1": _status("n1", 2, {0: 2}), "n2": _status("n2", 2, {1: 2, 2: 2}),
                        "n3": _status("n3", 2, {3: 2})}
    assert monitor.shard_count == 4
    assert monitor.shard_leaders() == {0: "n1", 1: "n2", 2: "n2", 3: "n3"}
    assert monitor.leader_counts() == {"n1": 1, "n2": 2, "n3": 1}
    assert monitor.busiest() == "n2" and monitor.shards_led()
    # n2 killed: its shards move to n1 in a later term; a stale leader claim loses
    monitor.statuses = {"n1": _status("n1", 3, {0: 2, 1: 3, 2: 3}), "n2": None,
                        "n3": _status("n3", 3, {3: 2})}
    assert monitor.busiest() == "n1"
    monitor.statuses["n2"] = _status("n2", 3, {1: 2})  # an old term's claim on shard 1
    assert monitor.shard_leaders()[1] == "n1"
    assert not monitor.shards_converged()  # n2's shard 1 says it leads: leaders disagree


def test_leader_moves_count_changes_of_node_not_the_first_sight() -> None:
    monitor = ClusterMonitor({"n1": "a", "n2": "b"}, lambda: 0.0)
    sequence = [({"n1": {0: 2, 1: 2}, "n2": {}}), ({"n1": {0: 2}, "n2": {1: 3}}),
                ({"n1": {0: 4}, "n2": {1: 3}}), ({"n1": {1: 5}, "n2": {0: 5}})]

    async def replay() -> None:
        for led in sequence:
            statuses = {name: _status(name, 5, shards, count=2) for name, shards in led.items()}

            async def status(name: str, timeout: float = 0.0,
                             statuses: dict[str, pb.NodeStatus] = statuses,
                             ) -> pb.NodeStatus | None:
                return statuses[name]

            monitor.status = status  # type: ignore[method-assign]
            await monitor.poll()

    asyncio.run(replay())
    # shard 0: n1 (t2), n1 (t4: re-elected, no move), n2 (t5: a move); shard 1: n1, n2, n1
    assert monitor.leader_moves() == {0: 1, 1: 2}
    assert monitor.shard_election_counts() == {0: 2, 1: 2}


def test_faults_a_sharded_cluster_cannot_take_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every fault runs with shards now (membership moves shard replicas since add-node and
    # remove-node do); the mechanism stays for the next fault that cannot.
    assert for_shards(DEFAULT_FAULTS, 1, explicit=False) == DEFAULT_FAULTS
    assert for_shards(DEFAULT_FAULTS, 3, explicit=False) == DEFAULT_FAULTS
    assert "membership" in DEFAULT_FAULTS
    monkeypatch.setitem(faults.NOT_WITH_SHARDS, "membership", "not with shards")
    sharded = for_shards(DEFAULT_FAULTS, 3, explicit=False)
    assert "membership" not in sharded and "kill_leader" in sharded
    with pytest.raises(FaultListError, match="membership"):
        for_shards(("membership", "kill_leader"), 3, explicit=True)
    assert for_shards(("membership",), 1, explicit=True) == ("membership",)
