"""Real node processes on loopback for integration tests.

Owns: picking free ports, starting ``quorumlog node`` subprocesses with their own data
directories and logs, waiting (with deadlines) for a leader, kill -9 / SIGSTOP / restart /
wipe of single nodes, and stopping every process it started. Must never: leave a process
behind or wait with a bare sleep for something to happen (it polls a condition).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc

from quorumlog.client.cli.cluster import LocalNode, free_ports, node_command
from quorumlog.client.tls import ClientSecurity, sync_channel
from quorumlog.proto import quorumlog_pb2, quorumlog_pb2_grpc

__all__ = ["LocalCluster", "NodeProcess", "free_ports", "running", "running_cluster", "wait_until"]

T = TypeVar("T")
C = TypeVar("C", bound="LocalCluster")


def wait_until(
    condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as error:
            last_error = error
            value = None
        if value:
            return value
        time.sleep(interval)  # polling interval of a deadline-bounded wait
    raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}: {last_error}")


@dataclass
class NodeProcess:
    name: str
    client_addr: str
    peer_addr: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class LocalCluster:
    def __init__(
        self,
        root: Path,
        size: int = 3,
        extra_args: list[str] | None = None,
    ) -> None:
        self.root = root
        self.security: ClientSecurity | None = None  # how status probes connect (TLS)
        ports = free_ports(2 * size)
        self.nodes = {
            f"n{i}": NodeProcess(
                f"n{i}",
                f"127.0.0.1:{ports[2 * (i - 1)]}",
                f"127.0.0.1:{ports[2 * (i - 1) + 1]}",
                root / f"n{i}",
                root / f"n{i}.log",
                extra_args=list(extra_args or []),
            )
            for i in range(1, size + 1)
        }

    def add_member(self, name: str, extra_args: list[str] | None = None) -> NodeProcess:
        """A new node entry with its own free ports, not started (e.g. one to ``--join``)."""
        client_port, peer_port = free_ports(2)
        node = NodeProcess(
            name, f"127.0.0.1:{client_port}", f"127.0.0.1:{peer_port}", self.root / name,
            self.root / f"{name}.log", extra_args=list(extra_args or []),
        )
        self.nodes[name] = node
        return node

    @property
    def addresses(self) -> list[str]:
        return [node.client_addr for node in self.nodes.values()]

    def command(self, node: NodeProcess) -> list[str]:
        """Exactly the command ``quorumlog cluster up`` runs for a node (shared code)."""
        members = [
            LocalNode(n.name, n.client_addr, n.peer_addr, n.data_dir) for n in self.nodes.values()
        ]
        local = LocalNode(node.name, node.client_addr, node.peer_addr, node.data_dir)
        return node_command(local, members, node.extra_args)

    def start(self, name: str | None = None) -> None:
        targets = [self.nodes[name]] if name else list(self.nodes.values())
        for node in targets:
            if node.alive:
                continue
            log = open(node.log_path, "ab")  # noqa: SIM115 -- owned by the child
            node.process = subprocess.Popen(
                self.command(node), stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            log.close()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        node = self.nodes[name]
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                node.process.wait(timeout=30)

    def resume(self, name: str) -> None:
        self.kill(name, signal.SIGCONT)

    def wipe(self, name: str) -> None:
        node = self.nodes[name]
        assert not node.alive, "stop the node before wiping it"
        shutil.rmtree(node.data_dir, ignore_errors=True)

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.process.send_signal(signal.SIGCONT)
                    node.process.terminate()
        for node in self.nodes.values():
            if node.process is not None:
                try:
                    node.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()

    def status(self, name: str, timeout: float = 1.0) -> quorumlog_pb2.NodeStatus:
        with sync_channel(self.nodes[name].client_addr, self.security) as channel:
            stub = quorumlog_pb2_grpc.QuorumLogStub(channel)  # type: ignore[no-untyped-call]
            status: quorumlog_pb2.NodeStatus = stub.ClusterStatus(
                quorumlog_pb2.ClusterStatusRequest(), timeout=timeout
            )
            return status

    def leader(self, exclude: tuple[str, ...] = ()) -> str | None:
        """The name of a live node that reports itself leader, or None."""
        for name, node in self.nodes.items():
            if name in exclude or not node.alive:
                continue
            try:
                status = self.status(name)
            except grpc.RpcError:
                continue
            if status.role == "leader":
                return name
        return None

    def wait_leader(self, timeout: float = 30.0, exclude: tuple[str, ...] = ()) -> str:
        return wait_until(lambda: self.leader(exclude), timeout, "a leader")

    def logs(self) -> str:
        parts = []
        for node in self.nodes.values():
            if node.log_path.exists():
                tail = node.log_path.read_text(errors="replace").splitlines()[-40:]
                parts.append(f"--- {node.name} ---\n" + "\n".join(tail))
        return "\n".join(parts)


def running_cluster(
    root: Path, size: int = 3, extra_args: list[str] | None = None
) -> contextlib.AbstractContextManager[LocalCluster]:
    return running(LocalCluster(root, size, extra_args))


@contextlib.contextmanager
def running(cluster: C) -> Iterator[C]:
    """``cluster`` started, with a leader; its logs printed on failure; stopped after."""
    try:
        cluster.start()
        cluster.wait_leader()
        yield cluster
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
