"""Real node processes on loopback for integration tests.

Owns: the tests' view of a local cluster (``LocalCluster``: nodes n1..nN on free ports, data
in ROOT/n<i>, logs in ROOT/n<i>.log, each node with its own extra flags, added members in
the ``--peers`` of every later start) on the launcher every local cluster uses
(``quorumlog.node.process.launcher``: processes, kill -9 / SIGSTOP / restart, readiness, clean
stop); wiping a node's data; status probes (plaintext, or TLS via ``security``);
deadline-bounded waits for a leader; printing the logs when a test fails.
Must never: leave a process behind or wait with a bare sleep for something to happen (it
polls a condition).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc

from quorumlog.client.tls import ClientSecurity, sync_channel
from quorumlog.node.process.launcher import Launcher, LocalNode, free_ports, node_command, plan
from quorumlog.proto import quorumlog_pb2
from quorumlog.proto.sharding import shard_of

__all__ = ["LocalCluster", "NodeProcess", "free_ports", "running", "running_cluster",
           "wait_until"]

T = TypeVar("T")
C = TypeVar("C", bound="LocalCluster")

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0  # seconds a node gets after SIGTERM before SIGKILL


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
    """A test's handle on one node: its place (from the launcher's plan), its own extra flags
    (read at every start) and its process."""

    name: str
    client_addr: str
    peer_addr: str
    data_dir: Path
    log_path: Path
    extra_args: list[str]
    launcher: Launcher = field(repr=False)

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.launcher.process(self.name)

    @property
    def alive(self) -> bool:
        return self.launcher.alive(self.name)


class LocalCluster:
    def __init__(
        self,
        root: Path,
        size: int = 3,
        extra_args: list[str] | None = None,
    ) -> None:
        self.root = root
        self.security: ClientSecurity | None = None  # how status probes connect (TLS)
        self.launcher = Launcher([], command=self._command, channel=self._channel,
                                 stop_timeout=STOP_TIMEOUT)
        self.nodes: dict[str, NodeProcess] = {}
        for node in plan(size, root, log_dir=root):
            self._add(node, extra_args)

    def _add(self, node: LocalNode, extra_args: list[str] | None) -> NodeProcess:
        self.nodes[node.name] = NodeProcess(
            node.name, node.client_addr, node.peer_addr, node.data_dir, node.log_path,
            list(extra_args or []), self.launcher)
        self.launcher.add(node)
        return self.nodes[node.name]

    def _command(self, node: LocalNode) -> list[str]:
        members = list(self.launcher.nodes.values())
        return node_command(node, members, self.nodes[node.name].extra_args)

    def _channel(self, address: str) -> grpc.Channel:
        return sync_channel(address, self.security)

    def add_member(self, name: str, extra_args: list[str] | None = None) -> NodeProcess:
        """A new node entry with its own free ports, not started (e.g. one to ``--join``)."""
        client_port, peer_port = free_ports(2)
        return self._add(LocalNode(name, f"127.0.0.1:{client_port}", f"127.0.0.1:{peer_port}",
                                   self.root / name, self.root / f"{name}.log"), extra_args)

    @property
    def addresses(self) -> list[str]:
        return self.launcher.client_addrs

    def command(self, node: NodeProcess) -> list[str]:
        """Exactly the command a node is started with (the launcher's, as in cluster up)."""
        return self.launcher.command_of(node.name)

    def start(self, name: str | None = None) -> None:
        self.launcher.start([name] if name else None)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """``sig`` to a running node; after SIGKILL or SIGTERM, wait (30 s) for its exit."""
        if sig == signal.SIGKILL:
            self.launcher.kill([name], timeout=30)
            return
        process = self.launcher.process(name)
        if process is None or not self.launcher.alive(name):
            return
        self.launcher.signal(name, sig)
        if sig == signal.SIGTERM:
            process.wait(timeout=30)  # a clean stop that hangs fails the test

    def resume(self, name: str) -> None:
        self.launcher.resume(name)

    def wipe(self, name: str) -> None:
        node = self.nodes[name]
        assert not node.alive, "stop the node before wiping it"
        shutil.rmtree(node.data_dir, ignore_errors=True)

    def stop(self) -> None:
        self.launcher.stop_all()

    def status(self, name: str, timeout: float = 1.0) -> quorumlog_pb2.NodeStatus:
        return self.launcher.status(name, timeout)

    def leader(self, exclude: tuple[str, ...] = ()) -> str | None:
        """The name of a live node that reports itself leader, or None."""
        return self.launcher.leader([name for name in self.nodes if name not in exclude])

    def wait_leader(self, timeout: float = READY_TIMEOUT, exclude: tuple[str, ...] = ()) -> str:
        return wait_until(lambda: self.leader(exclude), timeout, "a leader")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> str:
        """A leader every running node knows (a node exiting first fails at once)."""
        return self.launcher.wait_ready(timeout, interval=0.05)

    def logs(self) -> str:
        parts = []
        for node in self.nodes.values():
            if node.log_path.exists():
                tail = self.launcher.log_tail(node.name, 40)
                parts.append(f"--- {node.name} ---\n" + "\n".join(tail))
        return "\n".join(parts)


def running_cluster(
    root: Path, size: int = 3, extra_args: list[str] | None = None
) -> contextlib.AbstractContextManager[LocalCluster]:
    return running(LocalCluster(root, size, extra_args))


@contextlib.contextmanager
def running(cluster: C) -> Iterator[C]:
    """``cluster`` started, with a leader every node knows; its logs printed on failure;
    stopped after."""
    try:
        cluster.start()
        cluster.wait_ready()
        yield cluster
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


def sessions_in_every_shard(prefix: str, shards: int, per_shard: int) -> list[str]:
    """Session names ``prefix/<n>``, exactly ``per_shard`` of them in each of ``shards``."""
    names: list[str] = []
    counts: Counter[int] = Counter()
    index = 0
    while len(names) < per_shard * shards:
        name = f"{prefix}/{index}"
        index += 1
        if counts[shard_of(name, shards)] < per_shard:
            counts[shard_of(name, shards)] += 1
            names.append(name)
    return names
