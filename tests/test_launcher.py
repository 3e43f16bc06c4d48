"""``quorumlog.node.process.launcher``, the one local-cluster launcher: the layout (distinct
ports, fixed or free; data and log paths), the exact node command line (prefix and
environment included), and the process lifecycle with stand-in children (plain Python
sleepers): a child ignoring SIGTERM is killed, a start that fails half-way leaves no process,
leaving the ``with`` block on an exception stops everything, a paused node stops promptly,
a deliberate kill is not reported as an exit but an exit on its own is, restarts ask for the
command again; readiness (a leader every running node knows) on pure statuses, its deadline
and its stop request; and one real node elected and stopped."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest
from cluster_up_process import pid_gone
from waiting import wait_until

from quorumlog.node.process import launcher
from quorumlog.node.process.launcher import (
    Launcher,
    LocalNode,
    NodeExited,
    NoLeader,
    StopRequested,
    agreed_leader,
    node_command,
    plan,
)
from quorumlog.proto import quorumlog_pb2

SLEEPER = "import time; print('up', flush=True); time.sleep(120)"
STUBBORN = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(120)")


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def stand_ins(root: Path, count: int = 2) -> list[LocalNode]:
    """Nodes whose addresses nothing listens on (the children are not quorumlog nodes)."""
    return [LocalNode(f"n{i}", f"127.0.0.1:{i}", f"127.0.0.1:{100 + i}", root / f"n{i}",
                      root / f"n{i}.log") for i in range(1, count + 1)]


@pytest.fixture
def sleepers(tmp_path: Path) -> Iterator[Launcher]:
    with Launcher(stand_ins(tmp_path), command=lambda node: python(SLEEPER),
                  stop_timeout=5.0) as nodes:
        yield nodes


def said_up(nodes: Launcher, name: str) -> bool:
    return "up" in nodes.log_tail(name, 5)


# -- layout ------------------------------------------------------------------------------------


def test_free_ports_are_distinct_across_client_peer_and_metrics(tmp_path: Path) -> None:
    nodes = plan(5, tmp_path, metrics=True)
    addresses = [a for n in nodes for a in (n.client_addr, n.peer_addr, n.metrics_addr)]
    assert len(set(addresses)) == 15
    assert all(address and address.startswith("127.0.0.1:") for address in addresses)
    assert [n.name for n in nodes] == ["n1", "n2", "n3", "n4", "n5"]
    assert [n.data_dir for n in nodes] == [tmp_path / f"n{i}" for i in range(1, 6)]
    assert [n.log_path for n in nodes] == [tmp_path / f"n{i}" / "node.log" for i in range(1, 6)]


def test_the_fixed_layout_is_cluster_ups(tmp_path: Path) -> None:
    nodes = plan(3, tmp_path, base_port=7001, log_dir=tmp_path / "logs", args=["--join"])
    assert [(n.client_addr, n.peer_addr) for n in nodes] == [
        ("127.0.0.1:7001", "127.0.0.1:7101"), ("127.0.0.1:7002", "127.0.0.1:7102"),
        ("127.0.0.1:7003", "127.0.0.1:7103")]
    assert [n.log_path for n in nodes] == [tmp_path / "logs" / f"n{i}.log" for i in (1, 2, 3)]
    assert all(n.args == ("--join",) and n.metrics_addr is None for n in nodes)
    for count in (0, launcher.MAX_NODES + 1):
        with pytest.raises(ValueError, match="1 to 9"):
            plan(count, tmp_path)


def test_the_fixed_layout_with_metrics_puts_them_at_base_plus_200(tmp_path: Path) -> None:
    nodes = plan(3, tmp_path, base_port=7001, metrics=True)
    assert [n.metrics_addr for n in nodes] == [
        "127.0.0.1:7201", "127.0.0.1:7202", "127.0.0.1:7203"]
    assert launcher.METRICS_PORT_OFFSET == 200
    assert launcher.fixed_metrics_ports(2, 9000) == [9200, 9201]


def test_free_base_port_has_its_whole_layout_free() -> None:
    base = launcher.free_base_port(3)
    assert launcher.ports_free([*range(base, base + 3), *range(base + 100, base + 103),
                                *range(base + 200, base + 203)])


def test_free_base_port_skips_a_base_whose_metrics_port_is_taken(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the metrics ports of the first candidates are taken: those are refused."""
    candidates = iter([20_000, 20_000, 21_000])
    monkeypatch.setattr(launcher, "random",
                        SimpleNamespace(randrange=lambda low, high: next(candidates)))
    asked: list[list[int]] = []

    def free(ports: Sequence[int]) -> bool:
        asked.append(list(ports))
        return 20_200 not in ports

    monkeypatch.setattr(launcher, "ports_free", free)
    assert launcher.free_base_port(2) == 21_000
    assert asked[0] == [20_000, 20_100, 20_001, 20_101, 20_200, 20_201]
    assert len(asked) == 3


def test_the_node_command_line(tmp_path: Path) -> None:
    nodes = plan(2, tmp_path, base_port=7001, metrics=True)
    command = node_command(nodes[1], nodes, ["--tick-ms", "10"])
    assert command == [
        sys.executable, "-m", "quorumlog.client.cli", "node", "--id", "n2",
        "--client-addr", "127.0.0.1:7002", "--peer-addr", "127.0.0.1:7102",
        "--peers", "n1=127.0.0.1:7101,n2=127.0.0.1:7102", "--data-dir", str(tmp_path / "n2"),
        "--metrics-addr", str(nodes[1].metrics_addr), "--tick-ms", "10",
    ]


def test_a_launcher_runs_the_cluster_flags_then_the_nodes_own_behind_its_prefix(
        tmp_path: Path) -> None:
    first, second = plan(2, tmp_path, base_port=7001)
    joiner = LocalNode("n3", "127.0.0.1:7003", "127.0.0.1:7103", tmp_path / "n3",
                       tmp_path / "n3.log", args=("--join",), prefix=("ip", "netns", "exec", "h3"))
    nodes = Launcher([first, second], node_args=["--tls-dir", "/tls"])
    nodes.add(joiner)
    assert nodes.command_of("n1") == node_command(first, [first, second, joiner],
                                                  ["--tls-dir", "/tls"])
    assert nodes.command_of("n3") == ["ip", "netns", "exec", "h3", *node_command(
        joiner, [first, second, joiner], ["--tls-dir", "/tls", "--join"])]


def test_the_environment_is_ours_unbuffered_unless_a_node_brings_its_own(
        tmp_path: Path) -> None:
    show = "import os; print(os.environ.get('PYTHONUNBUFFERED'), os.environ.get('ONLY'))"
    inherited, own = stand_ins(tmp_path)
    own = LocalNode(own.name, own.client_addr, own.peer_addr, own.data_dir, own.log_path,
                    env={"ONLY": "this", "PATH": os.environ["PATH"]})
    with Launcher([inherited, own], command=lambda node: python(show)) as nodes:
        nodes.start()
        wait_until(lambda: not any(nodes.alive(name) for name in nodes.nodes), 30,
                   "both children to finish")
    assert nodes.log_tail("n1", 1) == ["1 None"]
    assert nodes.log_tail("n2", 1) == ["None this"]


# -- processes ---------------------------------------------------------------------------------


def test_stop_all_kills_a_node_that_ignores_sigterm(tmp_path: Path) -> None:
    nodes = Launcher(stand_ins(tmp_path, 1), command=lambda node: python(STUBBORN),
                     stop_timeout=0.5)
    try:
        nodes.start()
        pid = nodes.pid("n1")
        assert pid is not None
        wait_until(lambda: said_up(nodes, "n1"), 30, "the child's SIGTERM handler")
    finally:
        started = time.monotonic()
        nodes.stop_all()
    assert pid_gone(pid)
    process = nodes.process("n1")
    assert process is not None and process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10
    with pytest.raises(RuntimeError, match="stopping"):
        nodes.start()  # nothing starts once stop_all began


def test_a_start_that_fails_half_way_leaves_no_process(tmp_path: Path) -> None:
    good, bad = stand_ins(tmp_path)
    bad = LocalNode(bad.name, bad.client_addr, bad.peer_addr, bad.data_dir, bad.log_path,
                    prefix=(str(tmp_path / "no-such-binary"),))
    nodes = Launcher([good, bad], command=lambda node: python(SLEEPER))
    with pytest.raises(FileNotFoundError):
        nodes.start()
    assert nodes.started_pids and all(pid_gone(pid) for pid in nodes.started_pids)
    assert nodes.pids() == {}


def test_leaving_the_with_block_on_an_exception_stops_every_node(tmp_path: Path) -> None:
    with pytest.raises(KeyError), Launcher(
            stand_ins(tmp_path, 3), command=lambda node: python(SLEEPER)) as nodes:
        nodes.start()
        pids = list(nodes.pids().values())
        assert len(pids) == 3
        raise KeyError("the benchmark broke")
    assert all(pid_gone(pid) for pid in pids)


def test_a_paused_node_is_resumed_and_stops_promptly(sleepers: Launcher) -> None:
    sleepers.start()
    sleepers.pause("n1")
    assert sleepers.paused("n1") and not sleepers.paused("n2")
    pid = sleepers.pid("n1")
    assert pid is not None
    wait_until(lambda: Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "T",
               10, "n1 to be stopped")
    sleepers.resume("n1")
    assert not sleepers.paused("n1")
    sleepers.pause("n1")
    started = time.monotonic()
    sleepers.stop(["n1"])  # SIGCONT first: SIGTERM is acted on at once, no SIGKILL needed
    assert time.monotonic() - started < 4
    process = sleepers.process("n1")
    assert process is not None and process.returncode == -signal.SIGTERM
    assert not sleepers.paused("n1") and sleepers.alive("n2")


def test_a_kill_is_reaped_and_not_reported_but_an_exit_on_its_own_is(
        tmp_path: Path) -> None:
    with Launcher(stand_ins(tmp_path), command=lambda node: python(SLEEPER)) as nodes:
        nodes.start()
        killed = nodes.pid("n1")
        nodes.kill(["n1"])
        assert killed is not None and pid_gone(killed) and not nodes.alive("n1")
        assert nodes.dead() == ["n1"]
        assert nodes.supervisor.reap() == []
        victim = nodes.pid("n2")
        assert victim is not None
        os.kill(victim, signal.SIGKILL)  # not through the launcher: an exit of its own
        with pytest.raises(NodeExited) as exited:
            nodes.wait_ready(30, interval=0.05)
        assert (exited.value.name, exited.value.pid) == ("n2", victim)
        assert exited.value.returncode == -signal.SIGKILL
        assert exited.value.log_path == tmp_path / "n2.log"


def test_a_restart_asks_for_the_command_again(tmp_path: Path) -> None:
    lives: list[str] = []

    def command(node: LocalNode) -> Sequence[str]:
        lives.append(node.name)
        return python(f"print('life {len(lives)}', flush=True); import time; time.sleep(120)")

    with Launcher(stand_ins(tmp_path, 1), command=command, stop_timeout=5.0) as nodes:
        nodes.start()
        first = nodes.pid("n1")
        wait_until(lambda: len(nodes.log_tail("n1", 5)) == 1, 30, "the first life's line")
        nodes.restart("n1")
        second = nodes.pid("n1")
        assert first is not None and second is not None and first != second
        assert pid_gone(first) and nodes.started_pids == [first, second]
        wait_until(lambda: len(nodes.log_tail("n1", 5)) == 2, 30, "the second life's line")
    assert nodes.log_tail("n1", 5) == [f"life {len(lives) - 1}", f"life {len(lives)}"]


def test_supervision_restarts_a_node_that_exits(tmp_path: Path) -> None:
    lines: list[str] = []
    started: list[tuple[str, int]] = []
    policy = launcher.RestartPolicy(delay=0.05, fast_failure=0.0)
    with Launcher(stand_ins(tmp_path, 1), command=lambda node: python(SLEEPER), policy=policy,
                  say=lines.append, on_started=lambda node, pid: started.append((node.name, pid)),
                  stop_timeout=5.0) as nodes:
        nodes.start()
        first = nodes.pid("n1")
        assert first is not None
        os.kill(first, signal.SIGKILL)

        def restarted() -> bool:
            nodes.supervise()
            return len(started) == 2
        wait_until(restarted, 30, "the restart")
        assert lines == [f"node n1 (pid {first}) exited: killed by SIGKILL; log "
                         f"{tmp_path / 'n1.log'}; restarting in 0.05 s"]
        assert started[0] == ("n1", first) and started[1][1] == nodes.pid("n1")


# -- readiness ---------------------------------------------------------------------------------


def status(name: str, role: str, leader: str) -> quorumlog_pb2.NodeStatus:
    return quorumlog_pb2.NodeStatus(id=name, role=role, leader=leader)


def test_ready_means_a_leader_every_node_knows() -> None:
    leader, follower = status("n1", "leader", "n1"), status("n2", "follower", "n1")
    assert agreed_leader([leader, follower, status("n3", "follower", "n1")]) == "n1"
    assert agreed_leader([leader, follower, status("n3", "follower", "")]) is None
    assert agreed_leader([leader, follower, None]) is None  # one did not answer
    assert agreed_leader([status("n1", "follower", "n2"), follower]) is None  # none leads
    assert agreed_leader([leader, status("n2", "leader", "n2")]) is None  # two claim it
    assert agreed_leader([status("n1", "leader", "")]) == "n1"  # the leader knows itself
    assert agreed_leader([]) is None


def test_waiting_has_a_deadline_and_honours_a_stop_request(sleepers: Launcher) -> None:
    sleepers.start()
    started = time.monotonic()
    with pytest.raises(NoLeader, match=r"within 0\.3 s"):
        sleepers.wait_ready(0.3, interval=0.05, probe_timeout=0.1)
    assert time.monotonic() - started < 10
    with pytest.raises(StopRequested):
        sleepers.wait_ready(30, stopping=lambda: True)


@pytest.mark.cluster
def test_one_real_node_is_elected_and_stopped(tmp_path: Path) -> None:
    with Launcher(plan(1, tmp_path), node_args=["--tick-ms", "20"]) as nodes:
        nodes.start()
        assert nodes.wait_ready(60) == "n1"
        assert nodes.leader() == "n1"
        pid = nodes.pid("n1")
    assert pid is not None and pid_gone(pid)
    process = nodes.process("n1")
    assert process is not None and process.returncode == 0
