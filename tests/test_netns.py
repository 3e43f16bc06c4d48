"""A multi-host deployment on one machine (``deploy/netns/netns.py``): three hosts as network
namespaces with their own addresses on a bridge, one node per host started exactly as the
systemd unit starts it, peers and clients addressing nodes by host name. Checks: the cluster
forms; the leader's host losing its link leaves the majority serving; the host rejoins and
catches up; a node killed and replaced by an empty one on a new host (``--join`` +
``cluster add-node`` + ``remove-node``) receives every message. Every namespace, hosts file
and process is removed at the end, pass or fail. Runs only as root with ``ip netns``."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cluster_harness import wait_until

from quorumlog.node.process.launcher import Launcher, LocalNode

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 90.0  # per condition; elections and catch-up on a loaded 2-core machine


def load_netns() -> ModuleType:
    spec = importlib.util.spec_from_file_location("netns", ROOT / "deploy" / "netns" / "netns.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["netns"] = module
    spec.loader.exec_module(module)
    return module


netns = load_netns()


@pytest.fixture(autouse=True)
def _netns_works() -> None:
    """`make test` runs as root with iproute2 (its `testdeps`): a missing piece fails, never
    skips."""
    problem = netns.available()
    assert problem is None, f"the network-namespace test bed cannot run here: {problem}"


class Hosts:
    """The hosts' nodes, started as the unit starts them, through the local-cluster launcher
    (``ip netns exec <host>`` as its command prefix, the unit's environment only)."""

    def __init__(self, bed: Any, logs: Path) -> None:
        self.bed = bed
        self.logs = logs
        self.launcher = Launcher([], command=lambda node: bed.unit_command(node.name),
                                 stop_timeout=20.0)

    def start(self, name: str) -> None:
        if name not in self.launcher.nodes:
            host = self.bed.host_name(name)
            self.launcher.add(LocalNode(
                name, f"{host}:7001", f"{host}:7101", self.bed.config_dir / "data" / name,
                self.logs / f"{name}.log", prefix=tuple(self.bed.exec_prefix(name)),
                env=self.bed.unit_environment(name)))
        self.launcher.start([name])

    def kill(self, name: str) -> None:
        self.launcher.kill([name], timeout=30)

    def stop_all(self) -> None:
        self.launcher.stop_all()

    def cli(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy")}
        return subprocess.run(self.bed.client_command(*argv), capture_output=True, text=True,
                              timeout=timeout, env=env, check=False)

    def status(self, names: list[str]) -> list[dict[str, Any]]:
        cluster = ",".join(f"{self.bed.host_name(n)}:7001" for n in names)
        result = self.cli("status", "--json", "--cluster", cluster, "--deadline", "3")
        rows: list[dict[str, Any]] = json.loads(result.stdout) if result.stdout else []
        return rows

    def leader(self, names: list[str]) -> dict[str, Any] | None:
        leaders = [r for r in self.status(names) if r["role"] == "leader"]
        return max(leaders, key=lambda r: r["term"]) if leaders else None

    def logs_tail(self) -> str:
        return "\n".join(
            f"--- {path.name} ---\n"
            + "\n".join(path.read_text(errors="replace").splitlines()[-25:])
            for path in sorted(self.logs.glob("*.log"))
        )


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    prefix = f"ql{os.getpid() % 100000}"
    bed = netns.Testbed(prefix, tmp_path / "etc")
    bed.down()  # a previous run killed hard may have left this prefix behind
    running = Hosts(bed, tmp_path)
    try:
        bed.up(["n1", "n2", "n3"], planned=["n1", "n2", "n3", "n4"])
        for name in ("n1", "n2", "n3"):
            bed.write_node_config(name, ["n1", "n2", "n3"])
        yield running
    except BaseException:
        print(running.logs_tail())
        raise
    finally:
        running.stop_all()
        bed.down()
        assert bed.leftovers() == [], bed.leftovers()


def test_three_hosts_survive_a_cut_link_and_a_replaced_node(hosts: Hosts) -> None:
    bed = hosts.bed
    names = ["n1", "n2", "n3"]
    for name in names:
        hosts.start(name)
    first = wait_until(lambda: hosts.leader(names), TIMEOUT, "a leader on the hosts")
    members = {m["id"] for m in first["members"]}
    assert members == set(names)
    assert {m["peer_address"] for m in first["members"]} == {
        f"{bed.host_name(n)}:7101" for n in names
    }
    cluster = ",".join(f"{bed.host_name(n)}:7001" for n in names)
    result = hosts.cli("append", "orders", *[f"m{i}" for i in range(100)], "--cluster", cluster)
    assert result.returncode == 0, result.stderr

    # -- the leader's host loses its link: the other two elect a leader and keep serving ----
    cut = first["id"]
    bed.link(cut, "down")
    rest = [n for n in names if n != cut]
    wait_until(lambda: (hosts.leader(rest) or {}).get("id") in rest, TIMEOUT,
               f"a leader among {rest}")
    result = hosts.cli("append", "orders", *[f"m{i}" for i in range(100, 150)],
                       "--cluster", cluster, "--deadline", "30")
    assert result.returncode == 0, result.stderr

    # -- the link comes back: the host rejoins and catches up ----------------------------
    bed.link(cut, "up")

    def caught_up() -> bool:
        rows = {r["id"]: r for r in hosts.status(names) if r["reachable"]}
        leader = next((r for r in rows.values() if r["role"] == "leader"), None)
        back = rows.get(cut)
        return bool(leader and back and back["leader"] == leader["id"]
                    and back["applied_index"] >= leader["commit_index"])

    wait_until(caught_up, TIMEOUT, f"{cut} to rejoin and catch up")

    # -- n3 dies; an empty node n4 on a new host replaces it ------------------------------
    hosts.kill("n3")
    bed.add_host("n4", planned=["n1", "n2", "n3", "n4"])
    bed.write_node_config("n4", ["n1", "n2"], join=True)
    hosts.start("n4")
    result = hosts.cli(
        "cluster", "add-node", "n4", "--peer-addr", f"{bed.host_name('n4')}:7101",
        "--client-addr", f"{bed.host_name('n4')}:7001", "--cluster", cluster,
    )
    assert result.returncode == 0, result.stderr
    result = hosts.cli("cluster", "remove-node", "n3", "--cluster", cluster)
    assert result.returncode == 0, result.stderr
    survivors = ["n1", "n2", "n4"]
    new_cluster = ",".join(f"{bed.host_name(n)}:7001" for n in survivors)
    result = hosts.cli("append", "orders", "last", "--cluster", new_cluster, "--deadline", "30")
    assert result.returncode == 0, result.stderr

    def n4_has_everything() -> bool:
        page = hosts.cli("read", "orders", "--follower", "--limit", "1000", "--json",
                         "--cluster", f"{bed.host_name('n4')}:7001")
        if page.returncode != 0:
            return False
        messages = [m["data"] for m in json.loads(page.stdout)["messages"]]
        return messages == [f"m{i}" for i in range(150)] + ["last"]

    wait_until(n4_has_everything, TIMEOUT, "n4 to hold every message")
    leader = wait_until(lambda: hosts.leader(survivors), TIMEOUT, "a leader of n1, n2, n4")
    assert {m["id"]: m["role"] for m in leader["members"]} == {
        "n1": "voter", "n2": "voter", "n4": "voter"
    }
