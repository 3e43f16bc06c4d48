"""The operator side of sharding, without real nodes: the launcher's ``--init-shards`` /
``--host-tag`` flags and its readiness (every shard led), ``cluster up``'s flag checks,
``quorumlog status``'s merged shard table and leader counts (and, with one shard, output
exactly as before), and ``quorumlog cluster balance`` against fake nodes (JSON, text, the
next address when the first is down, exit codes)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from quorumlog_fake import dead_address

from quorumlog.client.cli import CliError, cluster, cmd_status, main
from quorumlog.node.process import launcher
from quorumlog.node.process.launcher import node_command, plan, unled_shards
from quorumlog.proto import admin_pb2, admin_pb2_grpc, quorumlog_pb2, quorumlog_pb2_grpc

NODES = ("n1", "n2", "n3")

# -- the launcher ------------------------------------------------------------------------------


def test_every_node_founds_the_cluster_with_the_shards_and_its_host_tag(tmp_path: Path) -> None:
    nodes = plan(3, tmp_path, base_port=7001, shards=6, host_tags=["h1", "h1", "h2"])
    command = node_command(nodes[1], nodes, ["--tick-ms", "10"])
    data = command.index("--data-dir")
    assert command[data + 2:] == ["--init-shards", "6", "--host-tag", "h1", "--tick-ms", "10"]
    assert [n.host_tag for n in nodes] == ["h1", "h1", "h2"]
    unsharded = plan(3, tmp_path, base_port=7001)
    assert all(n.shards is None and n.host_tag is None for n in unsharded)
    plain = node_command(unsharded[0], unsharded)
    assert "--init-shards" not in plain and "--host-tag" not in plain
    with pytest.raises(ValueError, match="1 to 256 shards"):
        plan(3, tmp_path, shards=0)
    with pytest.raises(ValueError, match="one non-empty host tag per node"):
        plan(3, tmp_path, host_tags=["h1", "h2"])


def test_cluster_up_checks_its_shard_flags(tmp_path: Path) -> None:
    nodes = cluster.plan(3, 7001, tmp_path, 6, "a, a,b")
    assert [(n.shards, n.host_tag) for n in nodes] == [(6, "a"), (6, "a"), (6, "b")]
    assert [n.shards for n in cluster.plan(3, 7001, tmp_path)] == [None] * 3
    with pytest.raises(CliError, match="--shards must be between 1 and 256"):
        cluster.plan(3, 7001, tmp_path, 257)
    with pytest.raises(CliError, match="one host tag per node"):
        cluster.plan(3, 7001, tmp_path, 6, "a,b")
    with pytest.raises(CliError, match="one host tag per node"):
        cluster.plan(3, 7001, tmp_path, 6, "a,,b")


def shard(number: int, role: str = "", *, leader: str = "", term: int = 1, commit: int = 0,
          lag: int = 0, sessions: int = 0,
          replicas: Sequence[str] = NODES) -> quorumlog_pb2.ShardStatus:
    return quorumlog_pb2.ShardStatus(
        shard=number, group=number + 1, replicas=list(replicas), leader=leader,
        leader_address=f"addr-{leader}" if leader else "", role=role, term=term,
        commit_index=commit, applied_index=commit, last_index=commit, max_lag=lag,
        sessions=sessions)


def node(name: str, shards: Sequence[quorumlog_pb2.ShardStatus], *, count: int = 3,
         role: str = "follower", tag: str = "") -> quorumlog_pb2.NodeStatus:
    return quorumlog_pb2.NodeStatus(
        id=name, address=f"addr-{name}", role=role, term=2, leader="n1", commit_index=9,
        applied_index=9, last_index=9, pid=100, shard_count=count, shards=list(shards),
        host_tag=tag,
        members=[quorumlog_pb2.Member(id=n, client_address=f"addr-{n}",
                                      peer_address=f"peer-{n}", voter=True) for n in NODES])


def test_the_cluster_is_ready_once_every_shard_has_a_leader() -> None:
    led = [node("n1", [shard(0, "leader"), shard(1, "follower"), shard(2, "follower")]),
           node("n2", [shard(0, "follower"), shard(1, "leader"), shard(2, "follower")])]
    assert unled_shards(led) == [2]
    led.append(node("n3", [shard(2, "leader")]))
    assert unled_shards(led) == []
    one_shard = [node("n1", [], count=1), node("n2", [], count=0)]
    assert unled_shards(one_shard) == []
    assert launcher.agreed_leader([]) is None


# -- status ------------------------------------------------------------------------------------


def views() -> list[quorumlog_pb2.NodeStatus]:
    """Shard 0: n1 leads (its lag wins); shard 1: n2 leads at term 5 while a stale n3 still
    says it leads at term 4; shard 2: no leader answered (n2 knows of n3)."""
    return [
        node("n1", [shard(0, "leader", leader="n1", commit=40, lag=3, sessions=7),
                    shard(1, "follower", leader="n2", term=5, commit=30),
                    shard(2, "follower", commit=11, sessions=2)], role="leader", tag="h1"),
        node("n2", [shard(0, "follower", leader="n1", commit=39),
                    shard(1, "leader", leader="n2", term=5, commit=31, lag=0, sessions=4),
                    shard(2, "follower", leader="n3", commit=12, sessions=2)], tag="h1"),
        node("n3", [shard(0, "follower", leader="n1", commit=38),
                    shard(1, "leader", leader="n3", term=4, commit=20, lag=9),
                    shard(2, "follower", commit=10)], tag="h2"),
    ]


def test_the_merged_shard_table_takes_each_shards_leaders_view() -> None:
    table = cmd_status.merge_shards(views())
    assert [(r["shard"], r["leader"], r["commit_index"], r["lag"], r["sessions"], r["term"])
            for r in table] == [(0, "n1", 40, 3, 7, 1), (1, "n2", 31, 0, 4, 5),
                                (2, "n3", 12, None, 2, 1)]
    assert table[0]["replicas"] == list(NODES) and table[0]["preferred_leader"] == "n1"
    assert cmd_status.shard_leaders(table, ["n1", "n2", "n3"]) == {"n1": 1, "n2": 1, "n3": 1}
    assert cmd_status.shard_leaders(table[:1], ["n1", "n2", "n4"]) == {
        "n1": 1, "n2": 0, "n3": 0, "n4": 0}


def rows_of(statuses: Sequence[quorumlog_pb2.NodeStatus]) -> list[dict[str, Any]]:
    from quorumlog.client.sdk import NodeReport, NodeStatus
    return [cmd_status.node_json(NodeReport(s.address, NodeStatus.from_pb(s), None))
            for s in statuses]


def test_status_rows_gain_shard_keys_only_when_the_cluster_has_shards() -> None:
    statuses = views()
    rows = rows_of(statuses)
    plain = [dict(row) for row in rows]
    assert cmd_status.add_shards(rows, [*statuses[:2], None])
    assert [row["shard_count"] for row in rows] == [3, 3, None]
    assert [row["host_tag"] for row in rows] == ["h1", "h1", None]
    assert rows[2]["shards"] is None and rows[0]["shards"][0]["role"] == "leader"
    assert rows[0]["shard_table"] == rows[2]["shard_table"]
    assert rows[0]["shard_leaders"] == {"n1": 1, "n2": 1, "n3": 1}  # n2 knows n3 leads 2
    for row, before in zip(rows, plain, strict=True):  # every existing key kept as it was
        assert {key: row[key] for key in before} == before
    unsharded = [node(s.id, [], count=1) for s in statuses]
    rows = rows_of(unsharded)
    keys = [set(row) for row in rows]
    assert not cmd_status.add_shards(rows, unsharded)
    assert [set(row) for row in rows] == keys


# -- against fake nodes ------------------------------------------------------------------------


class FakeNode(quorumlog_pb2_grpc.QuorumLogServicer, admin_pb2_grpc.AdminServicer):
    def __init__(self, status: quorumlog_pb2.NodeStatus) -> None:
        self.status = status
        self.balance_calls = 0
        self.refuse: str | None = None
        self.moves: list[tuple[int, str, str]] = []  # (shard, from, to) this node hands over

    def ClusterStatus(self, request: quorumlog_pb2.ClusterStatusRequest,
                      context: grpc.ServicerContext) -> quorumlog_pb2.NodeStatus:
        return self.status

    def BalanceLeaders(self, request: admin_pb2.BalanceLeadersRequest,
                       context: grpc.ServicerContext) -> admin_pb2.BalanceLeadersResponse:
        self.balance_calls += 1
        if self.refuse is not None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, self.refuse)
        moves = []
        for shard, frm, to in self.moves:
            move = admin_pb2.LeaderMove(shard=shard, to=to)
            setattr(move, "from", frm)  # ``from`` is a Python keyword
            moves.append(move)
        return admin_pb2.BalanceLeadersResponse(
            moves=moves, leaders={"n1": 2, "n2": 2, "n3": 2})


@pytest.fixture
def fakes() -> Iterator[tuple[list[FakeNode], list[str]]]:
    servers, nodes, addresses = [], [], []
    try:
        for status in views():
            fake = FakeNode(status)
            server = grpc.server(ThreadPoolExecutor(max_workers=4))
            quorumlog_pb2_grpc.add_QuorumLogServicer_to_server(fake, server)  # type: ignore[no-untyped-call]
            admin_pb2_grpc.add_AdminServicer_to_server(fake, server)  # type: ignore[no-untyped-call]
            port = server.add_insecure_port("127.0.0.1:0")
            server.start()
            servers.append(server)
            nodes.append(fake)
            addresses.append(f"127.0.0.1:{port}")
        yield nodes, addresses
    finally:
        for server in servers:
            server.stop(None)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_prints_the_shard_table_and_leaders_per_node(
        fakes: tuple[list[FakeNode], list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    _, addresses = fakes
    code, out, err = run_cli(capsys, "status", "--cluster", ",".join(addresses))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "ADDRESS", "ROLE"]
    start = lines.index("shards (3; a session's shard is crc32(name) mod 3):")
    assert lines[start + 1].split() == ["SHARD", "LEADER", "REPLICAS", "TERM", "COMMIT", "LAG",
                                        "SESSIONS"]
    assert [line.split() for line in lines[start + 2:start + 5]] == [
        ["0", "n1", "n1,n2,n3", "1", "40", "3", "7"],
        ["1", "n2", "n1,n2,n3", "5", "31", "0", "4"],
        ["2", "n3", "n1,n2,n3", "1", "12", "-", "2"]]
    per_node = lines.index("leaders per node:")
    assert lines[per_node + 1].split() == ["NODE", "HOST", "TAG", "LEADS", "PREFERRED"]
    assert [line.split() for line in lines[per_node + 2:]] == [
        ["n1", "h1", "1", "3"], ["n2", "h1", "1", "0"], ["n3", "h2", "1", "0"]]

    code, out, err = run_cli(capsys, "status", "--json", "--cluster", ",".join(addresses))
    assert code == 0, err
    rows = json.loads(out)
    assert [row["id"] for row in rows] == list(NODES)
    assert all(row["shard_count"] == 3 and len(row["shard_table"]) == 3 for row in rows)
    assert rows[0]["shard_table"][0]["lag"] == 3


def test_status_with_one_shard_prints_what_it_always_did(
        fakes: tuple[list[FakeNode], list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    nodes, addresses = fakes
    for fake in nodes:
        fake.status = node(fake.status.id, [], count=1, role=fake.status.role)
    code, out, _ = run_cli(capsys, "status", "--json", "--cluster", ",".join(addresses))
    rows = json.loads(out)
    assert code == 0 and all("shard_table" not in row and "shard_count" not in row
                             for row in rows)
    code, out, _ = run_cli(capsys, "status", "--cluster", ",".join(addresses))
    assert code == 0 and out == cmd_status.table(rows) + "\n"
    assert "shards" not in out and "leaders per node" not in out


def test_balance_prints_the_moves_and_the_leaders_per_node(
        fakes: tuple[list[FakeNode], list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    nodes, addresses = fakes
    nodes[0].moves = [(2, "n1", "n3")]  # n1 leads shard 2, preferred n3
    nodes[1].moves = [(4, "n2", "n1")]
    dead = dead_address()
    code, out, err = run_cli(capsys, "cluster", "balance", "--json", "--deadline", "5",
                             "--cluster", ",".join([dead, *addresses]))
    assert code == 0, err
    assert json.loads(out) == {"moves": [{"shard": 2, "from": "n1", "to": "n3"},
                                         {"shard": 4, "from": "n2", "to": "n1"}],
                               "leaders": {"n1": 2, "n2": 2, "n3": 2}}
    assert [fake.balance_calls for fake in nodes] == [1, 1, 1]  # each hands over its shards
    code, out, _ = run_cli(capsys, "cluster", "balance", "--cluster", addresses[0])
    assert code == 0
    assert out.splitlines() == ["shard 2: n1 -> n3",
                                "1 leadership move; shards led: n1 2, n2 2, n3 2"]


def test_balance_exit_codes(fakes: tuple[list[FakeNode], list[str]],
                            capsys: pytest.CaptureFixture[str]) -> None:
    nodes, addresses = fakes
    nodes[0].refuse = "the cluster has one shard"
    code, out, err = run_cli(capsys, "cluster", "balance", "--cluster", addresses[0])
    assert (code, out) == (2, "")
    assert err.strip() == ("quorumlog cluster: failed_precondition: the cluster has one shard")
    code, out, err = run_cli(capsys, "cluster", "balance", "--deadline", "2", "--cluster",
                             f"{dead_address()},{dead_address()}")
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "unavailable within 2s" in err
    code, _, err = run_cli(capsys, "cluster", "balance", "--cluster", "nohost")
    assert code == 2 and "invalid node address" in err


def test_balance_text_when_nothing_moves() -> None:
    assert cluster.balance_lines({"moves": [], "leaders": {"n1": 1, "n2": 1}}) == [
        "no leadership moves; shards led: n1 1, n2 1"]


def test_cluster_up_reports_the_shards_each_node_leads() -> None:
    statuses = views()
    assert launcher.shard_leaders(statuses) == {"n1": 1, "n2": 1, "n3": 1}
    assert launcher.shard_leaders([node("n1", [], count=1)]) == {}
