"""``quorumlog cluster up``: run a local N-node cluster in the foreground and keep it running
(and dispatch the ``add-node`` / ``remove-node`` / ``transfer-leader`` actions to
``cmd_membership``).

Owns: the local layout (node i: client port base+i-1, peer port base+100+i-1, data in
DATA_DIR/n<i>, stdout + stderr appended to DATA_DIR/n<i>/node.log); printing each node's
addresses, pid and log at every start; waiting until a leader is elected and printing
``cluster ready: leader <id>`` (a node that exits before that is fatal: most likely a port in
use or a bad flag); then supervising the nodes through ``supervisor.Supervisor`` (an exit is
one line, the others keep running, the node restarts after ``--restart-delay`` unless
``--no-restart``); and stopping every node cleanly on Ctrl-C or SIGTERM. Running it again on
the same data directory brings every message back. Must never: leave a node process behind
after a Ctrl-C or SIGTERM, or stop a healthy node because another one exited.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc

from quorumlog.client import errors
from quorumlog.client.cli import CliError, cmd_membership
from quorumlog.client.cli.supervisor import (
    Child,
    ChildSpec,
    RestartPolicy,
    Supervisor,
    describe_status,
)
from quorumlog.client.tls import ClientSecurity, sync_channel
from quorumlog.proto import quorumlog_pb2, quorumlog_pb2_grpc

POLL_INTERVAL = 0.2  # seconds between two looks at the nodes (election wait, supervision)


@dataclass
class LocalNode:
    name: str
    client_addr: str
    peer_addr: str
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "node.log"


def free_ports(count: int) -> list[int]:
    """Ports the kernel considers free right now (held open together, then released)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def plan(nodes: int, base_port: int, data_dir: Path, host: str = "127.0.0.1") -> list[LocalNode]:
    if not 1 <= nodes <= 9:
        raise CliError(f"--nodes must be between 1 and 9, got {nodes}")
    if not 1024 <= base_port <= 65535 - 200:
        raise CliError(f"--base-port must be between 1024 and 65335, got {base_port}")
    return [
        LocalNode(
            f"n{i}",
            f"{host}:{base_port + i - 1}",
            f"{host}:{base_port + 100 + i - 1}",
            data_dir / f"n{i}",
        )
        for i in range(1, nodes + 1)
    ]


def node_command(node: LocalNode, members: list[LocalNode], extra: list[str]) -> list[str]:
    peers = ",".join(f"{member.name}={member.peer_addr}" for member in members)
    return [
        sys.executable, "-m", "quorumlog.client.cli", "node",
        "--id", node.name,
        "--client-addr", node.client_addr,
        "--peer-addr", node.peer_addr,
        "--peers", peers,
        "--data-dir", str(node.data_dir),
        *extra,
    ]


def leader_of(
    members: list[LocalNode], timeout: float = 1.0, security: ClientSecurity | None = None
) -> str | None:
    """The leader name as reported by any reachable node, or None."""
    for member in members:
        try:
            with sync_channel(member.client_addr, security) as channel:
                stub = quorumlog_pb2_grpc.QuorumLogStub(channel)  # type: ignore[no-untyped-call]
                status = stub.ClusterStatus(quorumlog_pb2.ClusterStatusRequest(), timeout=timeout)
        except grpc.RpcError:
            continue
        if status.role == "leader":
            return str(status.id)
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="start a local cluster in the foreground")
    up.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    up.add_argument("--data-dir", type=Path, default=Path("./data"), help="default ./data")
    up.add_argument("--base-port", type=int, default=7001, help="first client port (7001)")
    up.add_argument("--ready-timeout", type=float, default=30.0, help="seconds to elect")
    up.add_argument("--node-arg", action="append", default=[], help="extra flag for nodes")
    up.add_argument(
        "--tls-dir", type=Path, default=None,
        help="mutual TLS on every node from DIR (quorumlog certs init DIR); default plaintext",
    )
    up.add_argument(
        "--restart-delay", type=float, default=3.0, metavar="SECONDS",
        help="restart a node that exited after this many seconds (default 3; doubled for "
        "each exit in a row within 10 s of its start, given up after 5)",
    )
    up.add_argument(
        "--no-restart", action="store_true",
        help="leave a node that exited down (the others keep running)",
    )
    cmd_membership.add_arguments(sub)


def _node_arguments(args: argparse.Namespace) -> tuple[list[str], ClientSecurity | None]:
    """The extra node flags and how this process talks to the nodes (``--tls-dir``)."""
    node_args = list(args.node_arg)
    if args.tls_dir is None:
        return node_args, None
    try:
        security = ClientSecurity.from_dir(args.tls_dir)
    except errors.QuorumLogError as error:
        raise CliError(error.message) from None
    return [*node_args, "--tls-dir", str(args.tls_dir)], security


def _restart_policy(args: argparse.Namespace) -> RestartPolicy:
    if not 0 <= args.restart_delay < math.inf:
        raise CliError(f"--restart-delay must be seconds >= 0, got {args.restart_delay:g}")
    return RestartPolicy(restart=not args.no_restart, delay=args.restart_delay)


def _supervisor(
    members: list[LocalNode], node_args: list[str], policy: RestartPolicy
) -> Supervisor:
    by_name = {member.name: member for member in members}

    def announce(child: Child) -> None:
        member = by_name[child.spec.name]
        print(
            f"{member.name}: client {member.client_addr} peer {member.peer_addr} "
            f"pid {child.pid} log {member.log_path}",
            flush=True,
        )

    specs = [
        ChildSpec(member.name, tuple(node_command(member, members, node_args)), member.log_path)
        for member in members
    ]
    return Supervisor(
        specs, policy, label="node", env={**os.environ, "PYTHONUNBUFFERED": "1"},
        on_started=announce,
    )


@contextmanager
def _stop_signals() -> Iterator[Callable[[], bool]]:
    """SIGINT and SIGTERM only set a flag while inside; yields "was a stop requested?"."""
    requested: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        requested.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(requested)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_for_leader(
    supervisor: Supervisor,
    members: list[LocalNode],
    args: argparse.Namespace,
    security: ClientSecurity | None,
    stopping: Callable[[], bool],
) -> str | None:
    """The first leader elected; None when a stop was requested first. A node exiting
    before then is fatal: nothing is serving yet, so restarting would only hide the cause."""
    deadline = time.monotonic() + args.ready_timeout
    while not stopping():
        exits = supervisor.reap()
        if exits:
            first = exits[0]
            raise CliError(
                f"node {first.name} (pid {first.pid}) exited before the cluster was ready: "
                f"{describe_status(first.returncode)}; see "
                f"{supervisor.children[first.name].spec.log_path}",
                code=1,
            )
        leader = leader_of(members, security=security)
        if leader is not None:
            return leader
        if time.monotonic() >= deadline:
            raise CliError(f"no leader elected within {args.ready_timeout:g} s", code=1)
        time.sleep(POLL_INTERVAL)
    return None


def _supervise(supervisor: Supervisor, stopping: Callable[[], bool]) -> int:
    """Keep the nodes running until a stop is requested (0) or none is left to run (1)."""
    while not stopping():
        supervisor.supervise()
        if not supervisor.active():
            print("no node left running; stopping", flush=True)
            return 1
        time.sleep(POLL_INTERVAL)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.cluster_command != "up":
        return cmd_membership.run(args)
    members = plan(args.nodes, args.base_port, args.data_dir)
    node_args, security = _node_arguments(args)
    supervisor = _supervisor(members, node_args, _restart_policy(args))
    with _stop_signals() as stopping:
        try:
            supervisor.start_all()
            leader = _wait_for_leader(supervisor, members, args, security, stopping)
            if leader is None:
                return 130
            print(f"cluster ready: leader {leader}", flush=True)
            return _supervise(supervisor, stopping)
        finally:
            supervisor.stop_all()
            if stopping():
                print("cluster stopped", flush=True)
