"""README "See it survive", run exactly as written: the shell blocks of that section are taken
from README.md (so the README and this test cannot drift) and run with bash, in a temporary
directory, with these substitutions only (the ones the README names):

- ``make up`` becomes the Makefile's ``up`` recipe with ``--base-port`` set to a free port
  range instead of 7001 (``$(VENV)/bin/`` is the bin directory of this interpreter's venv);
- ``$QUORUMLOG_CLUSTER`` holds that cluster's addresses, so the commands that rely on the
  default ``--cluster`` reach it;
- ``.venv/bin/`` becomes the bin directory of the venv running the tests (the same one when
  run from the repository's ``.venv``).

It checks what the section promises: the leader is killed with SIGKILL while the loop
appends, ``cluster up`` prints one line for it and restarts it with a new pid after 3 s, the
appends go on, ``status`` shows a new leader and the killed node back as a follower, and the
final check finds every acknowledged message in ``read``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cluster_up_process import (
    GroupProcess,
    addresses,
    cluster_up,
    free_base_port,
    pid_gone,
    wait_for,
)

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin directory (quorumlog lives next to python)
SECTION = "### See it survive"
ACK = re.compile(r"^(\d+)\tm(\d+)$")  # what the loop prints per acknowledged append
RESTART_DELAY = 3.0  # cluster up's default, as the README says
RESTART_SLACK = 5.0  # a busy 2-core machine: the launcher polls every 0.2 s
LOOP_TIMEOUT = 600.0  # 100 appends, each a fresh interpreter, on a loaded machine


def readme_blocks() -> list[str]:
    """The ```sh blocks of the README's "See it survive" section, in order."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(SECTION) + 1
    blocks: list[str] = []
    current: list[str] | None = None
    for line in lines[start:]:
        if current is None and re.match(r"#{1,3} ", line):
            break  # the next section
        if current is None and line.strip() == "```sh":
            current = []
        elif current is not None and line.strip() == "```":
            blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def make_up_command(base_port: int) -> str:
    """The Makefile's ``up`` recipe, on ``base_port`` instead of 7001."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    recipe = lines[lines.index(next(line for line in lines if line.startswith("up:"))) + 1]
    assert recipe.startswith("\t$(VENV)/bin/quorumlog cluster up ") and "--base-port 7001" in recipe
    return recipe.strip().replace("$(VENV)/bin/", f"{BIN}/").replace(
        "--base-port 7001", f"--base-port {base_port}")


def as_run_here(block: str) -> str:
    return block.replace(".venv/bin/", f"{BIN}/")


def environment(cluster: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("QUORUMLOG_TLS_DIR", "QUORUMLOG_TOKEN")}
    return {**env, "QUORUMLOG_CLUSTER": cluster, "PYTHONUNBUFFERED": "1"}


def bash(block: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", as_run_here(block)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def status_rows(text: str) -> dict[str, dict[str, str]]:
    """The node table of ``quorumlog status`` (text), by node id (unreachable rows left out)."""
    lines = text.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("ID  ADDRESS"))
    header = lines[header_at].lower().split()
    rows = {}
    for line in lines[header_at + 1:]:
        if not line.strip():
            break
        cells = line.split()
        if len(cells) == len(header) and re.fullmatch(r"n\d+", cells[0]):
            rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def leader_in(rows: dict[str, dict[str, str]]) -> str | None:
    leaders = [name for name, row in rows.items() if row["role"] == "leader"]
    return leaders[0] if len(leaders) == 1 else None


def test_see_it_survive_as_the_readme_says(tmp_path: Path) -> None:
    blocks = readme_blocks()
    assert len(blocks) == 5, blocks
    start, loop_block, kill_block, status_block, check_block = blocks
    assert start == "make up"
    base = free_base_port()
    cluster = addresses(base)
    env = environment(cluster)

    with cluster_up(["bash", "-c", make_up_command(base)], cwd=tmp_path, env=env) as up:
        _, pids = up.wait_ready(60)
        assert sorted(pids) == ["n1", "n2", "n3"]
        # As a person would: terminal 3 is used once every node knows the leader.
        def settled() -> bool:
            rows = status_rows(bash(status_block, tmp_path, env).stdout)
            leader = leader_in(rows)
            return len(rows) == 3 and all(row["leader"] == leader for row in rows.values())
        wait_for(settled, 60, "every node to report the one leader")

        loop = GroupProcess(["bash", "-c", as_run_here(loop_block)], cwd=tmp_path, env=env)
        try:
            def acks(since: float = 0.0) -> list[str]:
                return [line.text for line in loop.output.lines
                        if ACK.match(line.text) and line.at > since]
            wait_for(lambda: len(acks()) >= 5, 120, "the loop's first acknowledged appends")

            # Terminal 3: status, then kill -9 the leader.
            after = len(up.output.lines)
            killed = bash(kill_block, tmp_path, env)
            killed_at = time.monotonic()
            assert killed.returncode == 0, killed.stderr
            shown = status_rows(killed.stdout)
            victim = leader_in(shown)
            assert victim is not None, killed.stdout
            victim_pid = int(shown[victim]["pid"])
            assert victim_pid == pids[victim]  # the pid cluster up printed
            wait_for(lambda: pid_gone(victim_pid), 30, "the leader to die")

            # Terminal 1: one line naming the node, its status and log; a restart after 3 s.
            exited = up.output.wait_line(lambda text: "exited:" in text, 30, "the exit line",
                                         after)
            assert exited.text == (
                f"node {victim} (pid {victim_pid}) exited: killed by SIGKILL; "
                f"log data/{victim}/node.log; restarting in 3 s"
            )
            restarted = up.wait_restarted(victim, after, RESTART_DELAY + RESTART_SLACK)
            assert restarted.pid != victim_pid and restarted.log == f"data/{victim}/node.log"
            assert RESTART_DELAY - 0.5 <= restarted.at - killed_at <= RESTART_DELAY + RESTART_SLACK
            for name, pid in pids.items():
                assert pid_gone(pid) == (name == victim), name  # the others untouched

            # Terminal 2: the appends go on after the kill.
            wait_for(lambda: len(acks(since=killed_at)) >= 5, 120,
                     "appends acknowledged after the kill")

            # Terminal 3: a new leader, and the killed node back as a follower (new pid).
            def recovered() -> bool:
                rows = status_rows(bash(status_block, tmp_path, env).stdout)
                leader = leader_in(rows)
                back = rows.get(victim, {})
                return (leader not in (None, victim) and back.get("role") == "follower"
                        and back.get("pid") == str(restarted.pid) and back["leader"] == leader)
            wait_for(recovered, 60, f"a new leader and {victim} back as a follower")
            print(f"{victim} back as a follower {time.monotonic() - killed_at:.1f}s after "
                  "the kill")

            assert loop.wait(LOOP_TIMEOUT) == 0, loop.output.text()
        finally:
            loop.kill_everything()

        acked = (tmp_path / "acked.txt").read_text().splitlines()
        assert acked == acks(), loop.output.text()  # tee kept what the loop printed
        assert all(ACK.match(line) for line in acked)
        assert len(acked) >= 50, loop.output.text()  # most appends are acknowledged
        offsets = [int(line.split("\t")[0]) for line in acked]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)

        check = bash(check_block, tmp_path, env)
        assert check.returncode == 0, check.stderr
        assert check.stdout.strip() == f"acknowledged: {len(acked)}, missing: none", check.stdout
        # The check itself would notice a lost message: one line not in the log.
        (tmp_path / "acked.txt").write_text("\n".join([*acked, "999999\tm0"]) + "\n")
        broken = bash(check_block, tmp_path, env)
        assert broken.stdout.strip() == f"acknowledged: {len(acked) + 1}, missing: 999999\tm0"
