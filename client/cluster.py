"""``quorumlog cluster up``: run a local N-node cluster in the foreground (and dispatch the
``add-node`` / ``remove-node`` / ``transfer-leader`` actions to ``cmd_membership``).

Owns: starting one ``quorumlog node`` process per member (node i: client port base+i-1, peer
port base+100+i-1, data in DATA_DIR/n<i>), waiting until a leader is elected, printing the
addresses and ``cluster ready: leader <id>``, and stopping every node cleanly on Ctrl-C or
SIGTERM. Running it again on the same data directory brings every message back. Must never:
leave a node process behind.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc

from quorumlog.client import cmd_membership, errors
from quorumlog.client.cli import CliError
from quorumlog.client.tls import ClientSecurity, sync_channel
from quorumlog.proto import quorumlog_pb2, quorumlog_pb2_grpc


@dataclass
class LocalNode:
    name: str
    client_addr: str
    peer_addr: str
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None


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
    cmd_membership.add_arguments(sub)


def _stop_all(members: list[LocalNode], timeout: float = 10.0) -> None:
    for member in members:
        if member.process is not None and member.process.poll() is None:
            member.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for member in members:
        if member.process is None:
            continue
        try:
            member.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            member.process.kill()
            member.process.wait()


def run(args: argparse.Namespace) -> int:
    if args.cluster_command != "up":
        return cmd_membership.run(args)
    members = plan(args.nodes, args.base_port, args.data_dir)
    node_args = list(args.node_arg)
    security = None
    if args.tls_dir is not None:
        node_args += ["--tls-dir", str(args.tls_dir)]
        try:
            security = ClientSecurity.from_dir(args.tls_dir)
        except errors.QuorumLogError as error:
            raise CliError(error.message) from None
    stop_requested: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.append(signum)

    def stopping() -> bool:
        return bool(stop_requested)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for member in members:
            member.data_dir.mkdir(parents=True, exist_ok=True)
            member.process = subprocess.Popen(
                node_command(member, members, node_args),
                stdout=subprocess.DEVNULL,
                stderr=open(member.data_dir / "node.log", "ab"),  # noqa: SIM115
            )
            print(
                f"{member.name}: client {member.client_addr} peer {member.peer_addr} "
                f"pid {member.process.pid} log {member.data_dir / 'node.log'}",
                flush=True,
            )
        deadline = time.monotonic() + args.ready_timeout
        leader = None
        while not stopping() and time.monotonic() < deadline:
            dead = [m for m in members if m.process is not None and m.process.poll() is not None]
            if dead:
                first = dead[0]
                status = first.process.returncode if first.process else "?"
                raise CliError(
                    f"node {first.name} exited with status {status}; "
                    f"see {first.data_dir / 'node.log'}",
                    code=1,
                )
            leader = leader_of(members, security=security)
            if leader is not None:
                break
            time.sleep(0.2)  # polling interval while the cluster elects a leader
        if stopping():
            return 130
        if leader is None:
            raise CliError(f"no leader elected within {args.ready_timeout:.0f} s", code=1)
        print(f"cluster ready: leader {leader}", flush=True)
        while not stopping():
            dead = [m for m in members if m.process is not None and m.process.poll() is not None]
            if dead:
                print(f"node {dead[0].name} exited; stopping the cluster", file=sys.stderr)
                return 1
            time.sleep(0.2)  # supervision interval
        return 0
    finally:
        _stop_all(members)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if stopping():
            print("cluster stopped", flush=True)
