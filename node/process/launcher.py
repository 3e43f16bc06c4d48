"""Local clusters of node processes: the one launcher behind ``quorumlog cluster up``,
``quorumlog bench --local`` and ``bench-consume``, the benchmarks, the chaos run, the
network-namespace test bed and the integration tests.

Owns: the layout (``plan``: nodes n1..nN; client and peer ports either at a fixed base, as
``cluster up`` documents them: client base+i-1, peer base+100+i-1 and, when metrics are asked
for, metrics base+200+i-1, or free ports picked by the kernel (metrics included); data in
ROOT/n<i>; the log at ROOT/n<i>/node.log, or LOGS/n<i>.log); the exact node command line
(``node_command``: every member in ``--peers``, the node's addresses and data directory,
``--init-shards S`` and ``--host-tag NAME`` when the layout sets them, then the cluster's and
the node's own extra flags), optionally behind a command prefix (``ip netns exec NAME``) and
with its own environment (default: ours plus ``PYTHONUNBUFFERED=1``); starting, kill -9,
SIGSTOP / SIGCONT, clean stop and restart of one node or all of them
(``supervisor.Supervisor``); waiting, with a deadline, until a leader is elected and every
running node knows it, and, in a sharded cluster, every data shard has a leader
(``ClusterStatus`` through the proto stubs); supervision (restart on exit, as ``cluster up``
asks); and stopping every node when its ``with`` block ends, however it ends.

Must never: import the SDK or the CLI (it sits under both: a caller that needs TLS for the
status probes hands in a channel factory), print anything but the supervisor's exit lines
(callers own their output), or leave a process behind once ``stop_all`` or its ``with``
block is done; a start that fails half-way stops the nodes it had started.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc

from quorumlog.node.process.supervisor import (
    STOP_TIMEOUT,
    Child,
    ChildSpec,
    Exit,
    RestartPolicy,
    Supervisor,
    print_line,
)
from quorumlog.proto import quorumlog_pb2, quorumlog_pb2_grpc
from quorumlog.proto.sharding import MAX_SHARDS

HOST = "127.0.0.1"
PEER_PORT_OFFSET = 100  # the fixed layout: peer port = client port + 100
METRICS_PORT_OFFSET = 200  # the fixed layout: metrics port = client port + 200
MAX_NODES = 9
POLL_INTERVAL = 0.2  # seconds between two looks at the nodes while waiting for readiness
NO_RESTART = RestartPolicy(restart=False)

ChannelFactory = Callable[[str], grpc.Channel]


class LaunchError(Exception):
    """The cluster did not become ready."""


class NodeExited(LaunchError):
    """A node exited before the cluster was ready (a port in use, a bad flag...)."""

    def __init__(self, ended: Exit, log_path: Path) -> None:
        super().__init__(f"node {ended.name} (pid {ended.pid}) exited with status "
                         f"{ended.returncode}; see {log_path}")
        self.name, self.pid, self.returncode = ended.name, ended.pid, ended.returncode
        self.log_path = log_path


class NoLeader(LaunchError):
    """No leader known by every running node within the deadline."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"no leader elected within {timeout:g} s")
        self.timeout = timeout


class StopRequested(LaunchError):
    """The caller's ``stopping()`` said stop while waiting."""


# -- layout ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalNode:
    """One node's place: addresses, data, log; its own flags, command prefix, environment."""

    name: str
    client_addr: str
    peer_addr: str
    data_dir: Path
    log_path: Path
    metrics_addr: str | None = None
    args: tuple[str, ...] = ()  # flags of this node only (e.g. ``--join``)
    prefix: tuple[str, ...] = ()  # run the command through this (``ip netns exec NAME``)
    env: Mapping[str, str] | None = None  # None: ours plus PYTHONUNBUFFERED=1
    shards: int | None = None  # ``--init-shards``: data shards if it founds the cluster
    host_tag: str | None = None  # ``--host-tag``: placement keeps a shard's replicas apart


# Ports handed out for servers come from below the kernel's ephemeral range: a port picked
# there and bound a moment later can be taken meanwhile as the local end of any outgoing
# connection (on a busy test machine: hundreds of gRPC channels), and the node then fails
# with "Address already in use" (seen in a clean-clone test run). Outside the range only
# another picker can race for it.
_SERVER_PORTS = (20000, 32768)


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return _SERVER_PORTS[1]


def free_ports(count: int) -> list[int]:
    """Ports free right now (held open together, then released), below the ephemeral range
    when the machine leaves room for that (else any port the kernel picks)."""
    low, high = _SERVER_PORTS[0], min(_SERVER_PORTS[1], _ephemeral_low())
    sockets: list[socket.socket] = []
    try:
        if high - low >= 1000:
            rng = random.SystemRandom()
            for _ in range(count * 50):
                if len(sockets) == count:
                    break
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    sock.bind((HOST, rng.randrange(low, high)))
                except OSError:
                    sock.close()
                    continue
                sockets.append(sock)
        while len(sockets) < count:  # no room below the range, or unlucky: the kernel's pick
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def ports_free(ports: Sequence[int]) -> bool:
    """Whether every port in ``ports`` can be bound on loopback right now."""
    sockets: list[socket.socket] = []
    try:
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        for sock in sockets:
            sock.close()


def fixed_ports(count: int, base_port: int) -> list[tuple[int, int]]:
    """(client, peer) port of each node in the fixed layout at ``base_port``."""
    return [(base_port + i, base_port + PEER_PORT_OFFSET + i) for i in range(count)]


def fixed_metrics_ports(count: int, base_port: int) -> list[int]:
    """The metrics port of each node in the fixed layout at ``base_port``."""
    return [base_port + METRICS_PORT_OFFSET + i for i in range(count)]


def free_base_port(count: int = 3) -> int:
    """A base port whose fixed layout (client, peer and metrics ports) is all free, below the
    kernel's ephemeral range (so no outgoing connection can take one of its ports
    meanwhile)."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        base = random.randrange(20_000, max(20_001, low - METRICS_PORT_OFFSET - count))
        ports = [port for pair in fixed_ports(count, base) for port in pair]
        if ports_free([*ports, *fixed_metrics_ports(count, base)]):
            return base
    raise LaunchError("no free port range for a local cluster")


def plan(count: int, root: Path, *, base_port: int | None = None, metrics: bool = False,
         log_dir: Path | None = None, args: Sequence[str] = (),
         host: str = HOST, shards: int | None = None,
         host_tags: Sequence[str] | None = None) -> list[LocalNode]:
    """Nodes n1..n<count>: fixed ports at ``base_port``, else free ones (``metrics``: a
    metrics port too, fixed or free alike); data in ROOT/n<i>; the log in
    ROOT/n<i>/node.log, or LOG_DIR/n<i>.log; ``args`` for each node; every node founds the
    cluster with ``shards`` data shards (None: the node's default, one) and node i gets host
    tag ``host_tags[i-1]`` (None: its name, the node's default)."""
    if not 1 <= count <= MAX_NODES:
        raise ValueError(f"a local cluster has 1 to {MAX_NODES} nodes, not {count}")
    if shards is not None and not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"a cluster has 1 to {MAX_SHARDS} shards, not {shards}")
    if host_tags is not None and (len(host_tags) != count or not all(host_tags)):
        raise ValueError(f"give one non-empty host tag per node ({count}), not {list(host_tags)}")
    tags: list[str | None] = [*host_tags] if host_tags is not None else [None] * count
    if base_port is not None:
        pairs = fixed_ports(count, base_port)
    else:
        ports = free_ports(2 * count)
        pairs = list(zip(ports[::2], ports[1::2], strict=True))
    metrics_ports: list[int | None] = [None] * count
    if metrics:
        metrics_ports = [*(free_ports(count) if base_port is None
                           else fixed_metrics_ports(count, base_port))]
    nodes = []
    for index, ((client, peer), metrics_port) in enumerate(zip(pairs, metrics_ports,
                                                                strict=True), start=1):
        name = f"n{index}"
        nodes.append(LocalNode(
            name, f"{host}:{client}", f"{host}:{peer}", root / name,
            root / name / "node.log" if log_dir is None else log_dir / f"{name}.log",
            metrics_addr=None if metrics_port is None else f"{host}:{metrics_port}",
            args=tuple(args), shards=shards, host_tag=tags[index - 1],
        ))
    return nodes


def node_command(node: LocalNode, members: Sequence[LocalNode],
                 extra: Sequence[str] = ()) -> list[str]:
    """``quorumlog node`` for ``node`` founding a cluster of ``members``; ``extra`` last."""
    peers = ",".join(f"{member.name}={member.peer_addr}" for member in members)
    metrics = ["--metrics-addr", node.metrics_addr] if node.metrics_addr else []
    shards = [] if node.shards is None else ["--init-shards", str(node.shards)]
    tag = [] if node.host_tag is None else ["--host-tag", node.host_tag]
    return [
        sys.executable, "-m", "quorumlog.client.cli", "node",
        "--id", node.name,
        "--client-addr", node.client_addr,
        "--peer-addr", node.peer_addr,
        "--peers", peers,
        "--data-dir", str(node.data_dir),
        *metrics,
        *shards,
        *tag,
        *extra,
    ]


def log_tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a log file; none when it cannot be read."""
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


# -- readiness ---------------------------------------------------------------------------------


def leader_view(status: quorumlog_pb2.NodeStatus) -> str:
    """The leader a node knows of: itself when leading, else what it reports ('' if none)."""
    return str(status.id) if status.role == "leader" else str(status.leader)


def agreed_leader(statuses: Sequence[quorumlog_pb2.NodeStatus | None]) -> str | None:
    """The leader every node knows of, when one of them leads and all answered."""
    if not statuses or any(status is None for status in statuses):
        return None
    views = {leader_view(status) for status in statuses if status is not None}
    leading = {str(s.id) for s in statuses if s is not None and s.role == "leader"}
    return views.pop() if len(views) == 1 and views <= leading else None


def unled_shards(statuses: Sequence[quorumlog_pb2.NodeStatus]) -> list[int]:
    """The data shards no answering node says it leads (none in a one-shard cluster)."""
    count = max((status.shard_count for status in statuses), default=0)
    if count <= 1:
        return []
    led = {shard.shard for status in statuses for shard in status.shards
           if shard.role == "leader"}
    return [shard for shard in range(count) if shard not in led]


def shard_leaders(statuses: Sequence[quorumlog_pb2.NodeStatus]) -> dict[str, int]:
    """Node id -> data shards it says it leads, for every answering node; empty in a
    one-shard cluster."""
    if max((status.shard_count for status in statuses), default=0) <= 1:
        return {}
    return {str(status.id): sum(shard.role == "leader" for shard in status.shards)
            for status in statuses}


def _never() -> bool:
    return False


# -- the launcher ------------------------------------------------------------------------------


class Launcher:
    """The node processes of one local cluster (a context manager: leaving stops them all).

    ``command`` overrides how a node's command is built (the default is ``node_command``
    over the current members with ``node_args`` then the node's own ``args``); it is asked
    again at every start, so a restart sees the members and flags of that moment.
    """

    def __init__(
        self,
        nodes: Sequence[LocalNode],
        *,
        node_args: Sequence[str] = (),
        command: Callable[[LocalNode], Sequence[str]] | None = None,
        policy: RestartPolicy = NO_RESTART,
        on_started: Callable[[LocalNode, int], None] | None = None,
        say: Callable[[str], None] = print_line,
        channel: ChannelFactory = grpc.insecure_channel,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self.nodes: dict[str, LocalNode] = {}
        self.node_args = tuple(node_args)
        self._command = command
        self._on_started = on_started
        self.channel = channel
        self.stop_timeout = stop_timeout
        self.supervisor = Supervisor([], policy, label="node", on_started=self._started,
                                     respec=self._spec, say=say)
        for node in nodes:
            self.add(node)

    # -- members ---------------------------------------------------------------------------
    def add(self, node: LocalNode) -> None:
        """A node to start (now or later), e.g. one that joins; it is in ``--peers`` of every
        node started after this."""
        self.nodes[node.name] = node
        # The command is built right before every start (``_spec``), not now: it may depend
        # on members added later, or on the caller's state at that moment.
        self.supervisor.add(ChildSpec(node.name, (), node.log_path))

    def command_of(self, name: str) -> list[str]:
        """Exactly what starting node ``name`` runs now (prefix included)."""
        node = self.nodes[name]
        if self._command is not None:
            command = list(self._command(node))
        else:
            command = node_command(node, list(self.nodes.values()),
                                   [*self.node_args, *node.args])
        return [*node.prefix, *command]

    @property
    def client_addrs(self) -> list[str]:
        return [node.client_addr for node in self.nodes.values()]

    @property
    def metrics_addrs(self) -> list[str]:
        return [node.metrics_addr for node in self.nodes.values() if node.metrics_addr]

    def _spec(self, previous: ChildSpec) -> ChildSpec:
        """What node ``previous.name`` runs if started now (the supervisor asks)."""
        node = self.nodes[previous.name]
        env = dict(node.env) if node.env is not None else {**os.environ,
                                                            "PYTHONUNBUFFERED": "1"}
        return ChildSpec(node.name, tuple(self.command_of(node.name)), node.log_path, env)

    def _started(self, child: Child) -> None:
        if self._on_started is not None and child.pid is not None:
            self._on_started(self.nodes[child.spec.name], child.pid)

    # -- processes -------------------------------------------------------------------------
    def start(self, names: Sequence[str] | None = None) -> None:
        """Start the nodes ``names`` (default: all) that do not run. If one cannot start,
        the ones this call started are stopped before the error propagates."""
        everything = list(self.nodes) if names is None else names
        targets = [name for name in everything if not self.alive(name)]
        begun: list[str] = []
        try:
            for name in targets:
                begun.append(name)
                self.supervisor.start(name)
        except BaseException:
            self.supervisor.stop(begun, self.stop_timeout)
            raise

    def signal(self, name: str, signum: int) -> None:
        """Send ``signum`` to node ``name`` if it runs."""
        self.supervisor.signal(name, signum)

    def pause(self, name: str) -> None:
        """SIGSTOP: the node stays, frozen (no ticks, no replies)."""
        self.supervisor.signal(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """SIGCONT: a paused node runs on."""
        self.supervisor.signal(name, signal.SIGCONT)

    def kill(self, names: Sequence[str], timeout: float = 30.0) -> None:
        """kill -9 every node of ``names`` at once, then reap them."""
        self.supervisor.kill(names, timeout)

    def stop(self, names: Sequence[str] | None = None, timeout: float | None = None) -> None:
        """A clean stop (SIGTERM; SIGKILL after the stop timeout) of ``names`` (default: all);
        they can be started again."""
        self.supervisor.stop(list(self.nodes) if names is None else names,
                             self.stop_timeout if timeout is None else timeout)

    def restart(self, name: str, timeout: float | None = None) -> None:
        """A clean stop of node ``name`` (if it runs), then a start on the same data."""
        self.stop([name], timeout)
        self.start([name])

    def stop_all(self) -> None:
        """Stop every node; none is started or restarted afterwards."""
        self.supervisor.stop_all(self.stop_timeout)

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop_all()

    # -- state -----------------------------------------------------------------------------
    def alive(self, name: str) -> bool:
        return self.supervisor.children[name].alive

    def paused(self, name: str) -> bool:
        return self.supervisor.children[name].paused

    def process(self, name: str) -> subprocess.Popen[bytes] | None:
        """Node ``name``'s last process (running or not); None before its first start."""
        return self.supervisor.children[name].process

    def pid(self, name: str) -> int | None:
        """The pid of node ``name`` while it runs."""
        return self.supervisor.pids().get(name)

    def pids(self) -> dict[str, int]:
        """The pid of every running node, by name."""
        return self.supervisor.pids()

    @property
    def started_pids(self) -> list[int]:
        """Every node process ever started, in order (restarts included)."""
        return list(self.supervisor.started_pids)

    def dead(self) -> list[str]:
        """Nodes that were started and no longer run."""
        return [name for name, child in self.supervisor.children.items()
                if child.process is not None and not child.alive]

    def log_tail(self, name: str, lines: int) -> list[str]:
        return log_tail(self.nodes[name].log_path, lines)

    # -- supervision -----------------------------------------------------------------------
    def supervise(self) -> list[Exit]:
        """Report exits (one line each), restart under the policy; call periodically."""
        return self.supervisor.supervise()

    def active(self) -> bool:
        """Whether any node runs or has a restart scheduled."""
        return self.supervisor.active()

    # -- readiness -------------------------------------------------------------------------
    def status(self, name: str, timeout: float = 1.0) -> quorumlog_pb2.NodeStatus:
        """Node ``name``'s ``ClusterStatus`` (raises ``grpc.RpcError`` when it does not
        answer within ``timeout``)."""
        with self.channel(self.nodes[name].client_addr) as channel:
            stub = quorumlog_pb2_grpc.QuorumLogStub(channel)  # type: ignore[no-untyped-call]
            status: quorumlog_pb2.NodeStatus = stub.ClusterStatus(
                quorumlog_pb2.ClusterStatusRequest(), timeout=timeout)
            return status

    def _status_or_none(self, name: str, timeout: float) -> quorumlog_pb2.NodeStatus | None:
        try:
            return self.status(name, timeout)
        except grpc.RpcError:
            return None

    def statuses(self, timeout: float = 1.0) -> list[quorumlog_pb2.NodeStatus]:
        """The ``ClusterStatus`` of every running node that answers within ``timeout``."""
        answers = [self._status_or_none(name, timeout) for name in self.nodes
                   if self.alive(name)]
        return [status for status in answers if status is not None]

    def leader(self, names: Sequence[str] | None = None, timeout: float = 1.0) -> str | None:
        """A running node of ``names`` (default: all) that reports itself leader, or None."""
        for name in list(self.nodes) if names is None else names:
            if not self.alive(name):
                continue
            status = self._status_or_none(name, timeout)
            if status is not None and status.role == "leader":
                return name
        return None

    def ready_leader(self, timeout: float = 1.0) -> str | None:
        """The leader every running node knows of, once every data shard has a leader too;
        None before (nothing runs: None)."""
        running = [name for name in self.nodes if self.alive(name)]
        statuses = [self._status_or_none(name, timeout) for name in running]
        leader = agreed_leader(statuses)
        answered = [status for status in statuses if status is not None]
        return leader if leader is not None and not unled_shards(answered) else None

    def wait_ready(self, timeout: float, *, interval: float = POLL_INTERVAL,
                   probe_timeout: float = 1.0,
                   stopping: Callable[[], bool] = _never) -> str:
        """Wait until a leader is elected and known by every running node, and every data
        shard of a sharded cluster has a leader; the (meta group's) leader's name.

        Raises ``NodeExited`` when a node exits first (the exit is consumed: nothing serves
        yet, so a restart would only hide the cause), ``NoLeader`` after ``timeout`` seconds
        and ``StopRequested`` as soon as ``stopping()`` is true."""
        deadline = time.monotonic() + timeout
        for _ in self._polls(deadline, interval):
            if stopping():
                raise StopRequested("stop requested while waiting for a leader")
            exits = self.supervisor.reap()
            if exits:
                raise NodeExited(exits[0], self.nodes[exits[0].name].log_path)
            leader = self.ready_leader(probe_timeout)
            if leader is not None:
                return leader
        raise NoLeader(timeout)

    @staticmethod
    def _polls(deadline: float, interval: float) -> Iterator[None]:
        """One step per poll until ``deadline`` (the last one at or after it)."""
        while True:
            yield None
            if time.monotonic() >= deadline:
                return
            time.sleep(interval)  # polling interval of a deadline-bounded wait

