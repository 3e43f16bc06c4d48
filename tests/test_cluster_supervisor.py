"""``quorumlog cluster up`` supervises its nodes: a node killed with SIGKILL is one line (name,
pid, exit status, log) and is restarted with a new pid after ``--restart-delay`` while the
other nodes keep running untouched; ``--no-restart`` leaves it down while the cluster keeps
serving; Ctrl-C (SIGINT to the group) or SIGINT to the launcher alone stops every node, the
restarted ones included. And ``node/process/supervisor.py`` on its own: exit statuses in words,
back-off then giving up on a child that keeps failing fast (its sibling untouched), and a
child that ignores SIGTERM is killed by ``stop_all``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cluster_up_process import (
    ClusterUp,
    Line,
    addresses,
    cluster_up,
    free_base_port,
    pid_gone,
    up_command,
    wait_for,
)

from quorumlog.node.process.supervisor import ChildSpec, RestartPolicy, Supervisor, describe_status

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
RESTART_SLACK = 5.0  # the launcher polls every 0.2 s; the machine may be busy


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "QUORUMLOG_CLUSTER"}
    return subprocess.run(
        [sys.executable, "-m", "quorumlog.client.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=environment, check=False,
    )


def appended(cluster: str, session: str, message: str) -> bool:
    result = cli("append", session, message, "--cluster", cluster, "--deadline", "10")
    return result.returncode == 0


def follower_of(leader: str) -> str:
    return "n3" if leader != "n3" else "n2"


def alive(pid: int) -> bool:
    return not pid_gone(pid)


def kill_node(up: ClusterUp, pid: int) -> tuple[int, float]:
    """SIGKILL one node; the index of the launcher's next line and when it was killed."""
    after = len(up.output.lines)
    os.kill(pid, signal.SIGKILL)
    return after, time.monotonic()


def kill_a_follower(up: ClusterUp, data_dir: Path, leader: str, pids: dict[str, int],
                    then: str) -> tuple[str, int, float, Line]:
    """SIGKILL a follower of ``leader``; the launcher's exit line for it ends in ``then``.
    The victim, the index of the launcher's next line, when it was killed, the exit line."""
    victim = follower_of(leader)
    after, killed_at = kill_node(up, pids[victim])
    exited = up.output.wait_line(lambda text: "exited:" in text, 30, "the exit line", after)
    assert exited.text == (
        f"node {victim} (pid {pids[victim]}) exited: killed by SIGKILL; "
        f"log {data_dir / victim / 'node.log'}; {then}"
    )
    return victim, after, killed_at, exited


@pytest.mark.cluster
def test_a_killed_follower_is_restarted_and_ctrl_c_stops_every_node(tmp_path: Path) -> None:
    data_dir, base = tmp_path / "data", free_base_port()
    with cluster_up(up_command(data_dir, base, "--restart-delay", "1")) as up:
        leader, pids = up.wait_ready(READY_TIMEOUT)
        assert sorted(pids) == ["n1", "n2", "n3"]
        victim, after, killed_at, exited = kill_a_follower(up, data_dir, leader, pids,
                                                           "restarting in 1 s")
        restarted = up.wait_restarted(victim, after, timeout=1 + RESTART_SLACK)
        assert restarted.pid != pids[victim] and alive(restarted.pid)
        assert restarted.log == str(data_dir / victim / "node.log")
        assert 1.0 <= restarted.at - killed_at <= 1 + RESTART_SLACK
        for name, pid in pids.items():  # the other nodes were not touched
            if name != victim:
                assert alive(pid), f"{name} (pid {pid}) is gone"
        assert [line.text for line in up.output.lines[after:]
                if "exited:" in line.text] == [exited.text]

        # The restarted node rejoins: it answers status as a follower of a leader.
        cluster = addresses(base)
        wait_for(lambda: status_of(cluster, victim) == ("follower", restarted.pid), 30,
                 f"{victim} to rejoin as a follower")
        assert appended(cluster, "after-restart", "m")

        # Ctrl-C in the terminal: SIGINT to the launcher and every node at once.
        before_stop = len(up.output.lines)
        up.signal_group(signal.SIGINT)
        assert up.wait(STOP_TIMEOUT) == 0
        rest = [line.text for line in up.output.lines[before_stop:]]
        assert rest == ["cluster stopped"], rest
        every_pid = [*pids.values(), restarted.pid]
        for pid in every_pid:
            wait_for(lambda pid=pid: pid_gone(pid), 30, f"pid {pid} to exit")


def status_of(cluster: str, name: str) -> tuple[str, int] | None:
    """(role, pid) of node ``name`` as ``quorumlog status --json`` shows it, or None."""
    result = cli("status", "--json", "--cluster", cluster)
    if result.returncode != 0:
        return None
    for row in json.loads(result.stdout):
        if row["id"] == name and row["leader"]:
            return str(row["role"]), int(row["pid"])
    return None


@pytest.mark.cluster
def test_no_restart_leaves_the_node_down_and_the_cluster_serving(tmp_path: Path) -> None:
    data_dir, base = tmp_path / "data", free_base_port()
    cluster = addresses(base)
    flags = ("--no-restart", "--restart-delay", "0.5")
    with cluster_up(up_command(data_dir, base, *flags)) as up:
        leader, pids = up.wait_ready(READY_TIMEOUT)
        victim, after, killed_at, _ = kill_a_follower(up, data_dir, leader, pids,
                                                      "left down (restarts are off)")
        # Well past the (ignored) restart delay, the cluster serves and the node stays down.
        wait_for(lambda: time.monotonic() - killed_at > 3 and appended(cluster, "s", "m"),
                 60, "an append without the killed node, 3 s after the kill")
        assert up.node_lines(after=after) == []
        assert status_of(cluster, victim) is None
        assert up.process.poll() is None
        for name, pid in pids.items():
            assert alive(pid) == (name != victim), name

        # SIGINT to the launcher alone (kill -INT): it stops the nodes itself.
        os.kill(up.process.pid, signal.SIGINT)
        assert up.wait(STOP_TIMEOUT) == 0
        assert up.output.lines[-1].text == "cluster stopped"
        for pid in pids.values():
            wait_for(lambda pid=pid: pid_gone(pid), 30, f"pid {pid} to exit")


def python_child(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def test_exit_statuses_in_words() -> None:
    assert describe_status(0) == "exit code 0"
    assert describe_status(1) == "exit code 1"
    assert describe_status(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_status(-signal.SIGTERM) == "killed by SIGTERM"
    assert describe_status(-200) == "killed by signal 200"


def test_a_child_failing_fast_is_backed_off_then_given_up(tmp_path: Path) -> None:
    lines: list[str] = []
    crash_log, steady_log = tmp_path / "crash.log", tmp_path / "steady.log"
    specs = [
        ChildSpec("crash", python_child("import sys; print('boom'); sys.exit(3)"), crash_log),
        ChildSpec("steady", python_child("import time; time.sleep(120)"), steady_log),
    ]
    policy = RestartPolicy(delay=0.05, fast_failure=30.0, max_fast_failures=3)
    supervisor = Supervisor(specs, policy, label="node", say=lines.append)
    try:
        supervisor.start_all()
        steady_pid = supervisor.pids()["steady"]

        def crash_given_up() -> bool:
            supervisor.supervise()
            return supervisor.children["crash"].gave_up
        wait_for(crash_given_up, 60, "the supervisor to give up on the crashing child")
        pids = [line.split("(pid ")[1].split(")")[0] for line in lines]
        assert len(set(pids)) == 3  # three different processes
        assert lines == [
            f"node crash (pid {pids[0]}) exited: exit code 3; log {crash_log}; "
            "restarting in 0.05 s",
            f"node crash (pid {pids[1]}) exited: exit code 3; log {crash_log}; "
            "restarting in 0.1 s (2 exits in a row within 30 s of starting)",
            f"node crash (pid {pids[2]}) exited: exit code 3; log {crash_log}; "
            "giving up: 3 exits in a row within 30 s of starting",
        ]
        assert crash_log.read_text().count("boom") == 3  # output appended across restarts
        assert supervisor.pids() == {"steady": steady_pid} and supervisor.active()
        assert supervisor.children["crash"].restart_at is None
    finally:
        supervisor.stop_all(timeout=10)
    assert pid_gone(steady_pid) and not supervisor.active()


def test_stop_all_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ignoring SIGTERM', flush=True); time.sleep(120)")
    supervisor = Supervisor([ChildSpec("stubborn", python_child(code), log)], RestartPolicy(),
                            say=lambda line: None)
    try:
        supervisor.start_all()
        pid = supervisor.pids()["stubborn"]
        wait_for(lambda: "ignoring SIGTERM" in log.read_text(), 30, "the child's handler")
    finally:
        started = time.monotonic()
        supervisor.stop_all(timeout=0.5)
    assert pid_gone(pid)
    assert supervisor.children["stubborn"].process is not None
    assert supervisor.children["stubborn"].process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10
