"""The chaos run's node processes: start, kill -9, SIGSTOP / SIGCONT, clean restart, stop.

Owns: one ``quorumlog node`` subprocess per member (the command is
``quorumlog.client.cli.cluster.node_command``, the one ``cluster up`` runs), each with its own
``--peer-route`` map (other members dialled through its own peer-link proxies, whatever the
replicated member records say), data directory and log file, and the process faults as
signals. Must never: touch the network proxies, judge
anything, or leave a process behind: ``stop_all`` (called from the run's ``finally``) ends
every process it started, paused ones included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from quorumlog.client.cli.cluster import LocalNode, node_command


@dataclass
class ChaosNode:
    name: str
    client_addr: str  # the real client port (the monitor and final reads use it)
    peer_addr: str
    routes: dict[str, str]  # its --peer-route: each other member through its own proxy
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False
    starts: int = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class ChaosNodes:
    def __init__(self, nodes: list[ChaosNode], extra_args: list[str], seed: int) -> None:
        self.nodes = {node.name: node for node in nodes}
        self.extra_args = list(extra_args)
        self.seed = seed

    @property
    def names(self) -> list[str]:
        return sorted(self.nodes)

    def command(self, node: ChaosNode) -> list[str]:
        # Every node founds the cluster from the same real addresses (the member records are
        # then identical everywhere) and dials the others through its own link proxies.
        members = [LocalNode(name, other.client_addr, other.peer_addr, other.data_dir)
                   for name, other in sorted(self.nodes.items())]
        routes = ",".join(f"{name}={address}" for name, address in sorted(node.routes.items()))
        local = LocalNode(node.name, node.client_addr, node.peer_addr, node.data_dir)
        # Each node (and each of its lives) gets its own election-timer seed: equal seeds
        # would make every node time out together and split the vote.
        timer_seed = abs(self.seed) * 10_000 + self.names.index(node.name) * 1000 + node.starts
        extra = [*self.extra_args, "--seed", str(timer_seed), "--peer-route", routes]
        return node_command(local, members, extra)

    def start(self, name: str) -> None:
        node = self.nodes[name]
        if node.alive:
            return
        node.data_dir.mkdir(parents=True, exist_ok=True)
        with node.log_path.open("ab") as log:
            node.process = subprocess.Popen(
                self.command(node), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        node.paused = False
        node.starts += 1

    def start_all(self) -> None:
        for name in self.names:
            self.start(name)

    def signal(self, name: str, signum: int) -> None:
        node = self.nodes[name]
        if node.process is None or node.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            node.process.send_signal(signum)
        if signum == signal.SIGSTOP:
            node.paused = True
        elif signum == signal.SIGCONT:
            node.paused = False

    def kill(self, names: list[str], timeout: float = 30.0) -> None:
        """kill -9 every node in ``names`` at once, then reap them."""
        for name in names:
            self.signal(name, signal.SIGKILL)
        for name in names:
            process = self.nodes[name].process
            if process is not None:
                process.wait(timeout=timeout)
            self.nodes[name].paused = False

    def pause(self, name: str) -> None:
        self.signal(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.signal(name, signal.SIGCONT)

    def terminate(self, names: list[str], timeout: float = 20.0) -> None:
        """A clean stop (SIGTERM; SIGKILL after ``timeout``)."""
        for name in names:
            self.signal(name, signal.SIGCONT)
            self.signal(name, signal.SIGTERM)
        for name in names:
            process = self.nodes[name].process
            if process is None:
                continue
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)

    def stop_all(self) -> None:
        self.terminate(self.names)

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for node in self.nodes.values():
            if node.log_path.exists():
                tail = node.log_path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {node.name} ({node.log_path}) ---\n" + "\n".join(tail))
        return "\n".join(parts)
