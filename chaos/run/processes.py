"""The chaos run's node processes: start, kill -9, SIGSTOP / SIGCONT, clean restart, stop.

Owns: each node's command as the run wants it: the node command line every local cluster
runs (``quorumlog.node.process.launcher.node_command``) with the run's flags, its own
``--peer-route`` map (other members dialled through its own peer-link proxies, whatever the
replicated member records say) and its own election-timer seed for each of its lives; the
process faults as calls to the local-cluster launcher (``quorumlog.node.process.launcher``),
which owns the processes, their data directories and log files. Must never: touch the
network proxies, judge anything, or leave a process behind: ``stop_all`` (called from the
run's ``finally``) ends every process it started, paused ones included.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from quorumlog.node.process.launcher import Launcher, LocalNode, node_command

STOP_TIMEOUT = 20.0  # seconds a node gets after SIGTERM before SIGKILL


@dataclass
class ChaosNode:
    name: str
    client_addr: str  # the real client port (the monitor and final reads use it)
    peer_addr: str
    routes: dict[str, str]  # its --peer-route: each other member through its own proxy
    data_dir: Path
    log_path: Path
    starts: int = 0


class ChaosNodes:
    def __init__(self, nodes: list[ChaosNode], extra_args: list[str], seed: int,
                 shards: int | None = None) -> None:
        """``shards``: the data shards every node founds the cluster with (``--init-shards``;
        None: the node's default, one)."""
        self.nodes = {node.name: node for node in nodes}
        self.extra_args = list(extra_args)
        self.seed = seed
        self.launcher = Launcher(
            [LocalNode(node.name, node.client_addr, node.peer_addr, node.data_dir,
                       node.log_path, shards=shards)
             for node in sorted(nodes, key=lambda node: node.name)],
            command=self.command, stop_timeout=STOP_TIMEOUT)

    @property
    def names(self) -> list[str]:
        return sorted(self.nodes)

    def command(self, local: LocalNode) -> list[str]:
        # Every node founds the cluster from the same real addresses (the member records are
        # then identical everywhere) and dials the others through its own link proxies.
        node = self.nodes[local.name]
        routes = ",".join(f"{name}={address}" for name, address in sorted(node.routes.items()))
        # Each node (and each of its lives) gets its own election-timer seed: equal seeds
        # would make every node time out together and split the vote.
        timer_seed = abs(self.seed) * 10_000 + self.names.index(node.name) * 1000 + node.starts
        extra = [*self.extra_args, "--seed", str(timer_seed), "--peer-route", routes]
        return node_command(local, list(self.launcher.nodes.values()), extra)

    def alive(self, name: str) -> bool:
        return self.launcher.alive(name)

    def paused(self, name: str) -> bool:
        return self.launcher.paused(name)

    def start(self, name: str) -> None:
        if self.alive(name):
            return
        self.launcher.start([name])
        self.nodes[name].starts += 1

    def start_all(self) -> None:
        for name in self.names:
            self.start(name)

    def kill(self, names: list[str], timeout: float = 30.0) -> None:
        """kill -9 every node in ``names`` at once, then reap them."""
        self.launcher.kill(names, timeout)

    def pause(self, name: str) -> None:
        self.launcher.pause(name)

    def resume(self, name: str) -> None:
        self.launcher.resume(name)

    def terminate(self, names: list[str], timeout: float = STOP_TIMEOUT) -> None:
        """A clean stop (SIGTERM; SIGKILL after ``timeout``)."""
        self.launcher.stop(names, timeout)

    def stop_all(self) -> None:
        self.launcher.stop_all()

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for node in self.nodes.values():
            if node.log_path.exists():
                tail = self.launcher.log_tail(node.name, lines)
                parts.append(f"--- {node.name} ({node.log_path}) ---\n" + "\n".join(tail))
        return "\n".join(parts)
