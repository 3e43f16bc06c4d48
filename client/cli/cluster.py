"""``quorumlog cluster up``: run a local N-node cluster in the foreground and keep it running;
``quorumlog cluster balance``: hand every shard's leadership to its preferred leader (and
dispatch the ``add-node`` / ``remove-node`` / ``transfer-leader`` actions to
``cmd_membership``).

Owns: the command's flags and output lines, over the local-cluster launcher
(``quorumlog.node.process.launcher``: node i on client port base+i-1, peer port base+100+i-1,
Prometheus metrics on base+200+i-1, data in DATA_DIR/n<i>, stdout + stderr appended to
DATA_DIR/n<i>/node.log): printing each node's addresses (``n1: client ADDR peer ADDR metrics
ADDR pid PID log PATH``) at every start; waiting until a leader is elected and known by
every node (and, with shards, every shard has a leader) and printing ``cluster ready: leader
<id>`` (then, with shards, ``shards: S led; n1 2, n2 2, ...``; a node that exits before that
is fatal: most likely a port in use or a bad flag); then supervising the nodes (an exit is one
line, the others keep running, the node restarts after ``--restart-delay`` unless
``--no-restart``); and stopping every node cleanly on Ctrl-C or SIGTERM. Running it again on
the same data directory brings every message back. Must never: leave a node process behind
after a Ctrl-C or SIGTERM, or stop a healthy node because another one exited.

``balance`` owns the ``Admin.BalanceLeaders`` calls (the SDK has none): to every address
of ``--cluster`` that answers (each node hands over the shards it leads), printing each move and
the shards each node leads afterwards (or ``--json``: ``{"moves": [{"shard", "from", "to"}],
"leaders": {node: count}}``). Exit codes as ``cmd_membership``'s: 0 done, 2 refused
(FAILED_PRECONDITION, INVALID_ARGUMENT, NOT_FOUND), 1 unreachable or not finished in time.
"""

from __future__ import annotations

import argparse
import functools
import math
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import grpc

from quorumlog.client import errors
from quorumlog.client.cli import CliError, cmd_membership
from quorumlog.client.cli import common as cli_common
from quorumlog.client.leader import parse_addresses
from quorumlog.client.tls import ClientSecurity, sync_channel
from quorumlog.node.process import launcher
from quorumlog.node.process.launcher import Launcher, LocalNode, NodeExited
from quorumlog.node.process.supervisor import RestartPolicy, describe_status
from quorumlog.proto import admin_pb2, admin_pb2_grpc
from quorumlog.proto.sharding import MAX_SHARDS

POLL_INTERVAL = 0.2  # seconds between two looks at the nodes (election wait, supervision)
BALANCE_DEADLINE = 30.0  # the moves settle (each a leadership transfer) before the answer


def plan(nodes: int, base_port: int, data_dir: Path, shards: int | None = None,
         host_tags: str | None = None) -> list[LocalNode]:
    """``cluster up``'s fixed layout, after checking the flags (``host_tags``: the
    comma-separated ``--host-tags``, one per node)."""
    if not 1 <= nodes <= launcher.MAX_NODES:
        raise CliError(f"--nodes must be between 1 and {launcher.MAX_NODES}, got {nodes}")
    highest = 65535 - launcher.METRICS_PORT_OFFSET - (nodes - 1)  # the last metrics port
    if not 1024 <= base_port <= highest:
        raise CliError(f"--base-port must be between 1024 and {highest}, got {base_port}")
    if shards is not None and not 1 <= shards <= MAX_SHARDS:
        raise CliError(f"--shards must be between 1 and {MAX_SHARDS}, got {shards}")
    tags = None if host_tags is None else [tag.strip() for tag in host_tags.split(",")]
    if tags is not None and (len(tags) != nodes or not all(tags)):
        raise CliError(f"--host-tags must name one host tag per node ({nodes}), "
                       f"got {host_tags!r}")
    return launcher.plan(nodes, data_dir, base_port=base_port, metrics=True, shards=shards,
                         host_tags=tags)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="start a local cluster in the foreground")
    up.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    up.add_argument("--data-dir", type=Path, default=Path("./data"), help="default ./data")
    up.add_argument("--base-port", type=int, default=7001,
                    help="first client port (7001); peers on +100, metrics on +200")
    up.add_argument("--ready-timeout", type=float, default=30.0, help="seconds to elect")
    up.add_argument(
        "--shards", type=int, default=None, metavar="S",
        help="data shards (Raft groups) of a new cluster (default 1); ignored when the data "
        "directory already holds one",
    )
    up.add_argument(
        "--host-tags", default=None, metavar="TAGS",
        help="comma-separated host tag of each node, e.g. h1,h1,h2 (no two replicas of a "
        "shard share a tag; default: each node's name)",
    )
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
    balance = sub.add_parser(
        "balance", help="hand every shard's leadership to its preferred leader",
        description="Ask one node (the first of --cluster that answers) to move each shard's "
        "leadership to its preferred leader (the first replica of its placement) where that "
        "replica is caught up; print the moves and the shards each node leads afterwards.",
    )
    cli_common.add_common_arguments(balance)
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


def _announce(node: LocalNode, pid: int) -> None:
    metrics = f" metrics {node.metrics_addr}" if node.metrics_addr else ""
    print(f"{node.name}: client {node.client_addr} peer {node.peer_addr}{metrics} pid {pid} "
          f"log {node.log_path}", flush=True)


def _launcher(args: argparse.Namespace) -> Launcher:
    node_args, security = _node_arguments(args)
    return Launcher(
        plan(args.nodes, args.base_port, args.data_dir, args.shards, args.host_tags),
        node_args=node_args,
        policy=_restart_policy(args), on_started=_announce,
        channel=functools.partial(sync_channel, security=security),
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


def _wait_ready(nodes: Launcher, args: argparse.Namespace,
                stopping: Callable[[], bool]) -> str | None:
    """The first leader known by every node; None when a stop was requested first. A node
    exiting before then is fatal: nothing is serving yet, so restarting would only hide the
    cause."""
    try:
        return nodes.wait_ready(args.ready_timeout, interval=POLL_INTERVAL, stopping=stopping)
    except launcher.StopRequested:
        return None
    except NodeExited as exited:
        raise CliError(
            f"node {exited.name} (pid {exited.pid}) exited before the cluster was ready: "
            f"{describe_status(exited.returncode)}; see {exited.log_path}",
            code=1,
        ) from None
    except launcher.NoLeader:
        raise CliError(f"no leader elected within {args.ready_timeout:g} s", code=1) from None


def _supervise(nodes: Launcher, stopping: Callable[[], bool]) -> int:
    """Keep the nodes running until a stop is requested (0) or none is left to run (1)."""
    while not stopping():
        nodes.supervise()
        if not nodes.active():
            print("no node left running; stopping", flush=True)
            return 1
        time.sleep(POLL_INTERVAL)
    return 0


# -- balance -----------------------------------------------------------------------------------


def balance_leaders(address: str, security: ClientSecurity | None,
                    timeout: float) -> admin_pb2.BalanceLeadersResponse:
    """One ``Admin.BalanceLeaders`` call to ``address`` (grpc errors as the SDK's errors)."""
    token = security.token if security is not None else None
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with sync_channel(address, security) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]
        try:
            response: admin_pb2.BalanceLeadersResponse = stub.BalanceLeaders(
                admin_pb2.BalanceLeadersRequest(), timeout=timeout, metadata=metadata)
        except grpc.RpcError as error:
            code = error.code()
            raise errors.from_status(str(getattr(code, "name", code)),
                                     str(error.details() or code),
                                     address=address) from None
        return response


def balance_json(response: admin_pb2.BalanceLeadersResponse) -> dict[str, object]:
    return {
        "moves": [{"shard": move.shard, "from": getattr(move, "from"), "to": move.to}
                  for move in response.moves],
        "leaders": dict(sorted(response.leaders.items())),
    }


def balance_lines(fields: Mapping[str, object]) -> list[str]:
    moves = fields["moves"]
    leaders = fields["leaders"]
    assert isinstance(moves, list) and isinstance(leaders, dict)
    lines = [f"shard {move['shard']}: {move['from'] or '-'} -> {move['to']}" for move in moves]
    counts = ", ".join(f"{node} {count}" for node, count in leaders.items()) or "none known"
    lines.append(f"{len(moves) or 'no'} leadership move{'' if len(moves) == 1 else 's'}; "
                 f"shards led: {counts}")
    return lines


def _balance(args: argparse.Namespace) -> int:
    deadline = cli_common.deadline_of(args, BALANCE_DEADLINE)
    addresses = cli_common.cluster_addresses(args)
    security = cli_common.security_of(args)
    end = time.monotonic() + deadline
    with cli_common.cli_errors(addresses, deadline), cmd_membership.refusals():
        # Every node hands over the shards it leads, so every node given is asked; the
        # leader counts come from the last node that answered (after its moves settled).
        targets = parse_addresses(addresses)
        response: admin_pb2.BalanceLeadersResponse | None = None
        moves: list[admin_pb2.LeaderMove] = []
        failure: errors.QuorumLogError | None = None
        for address in targets:
            if time.monotonic() >= end:
                break
            try:
                answer = balance_leaders(address, security, max(0.001, end - time.monotonic()))
            except (errors.Unavailable, errors.DeadlineExceeded) as error:
                failure = error
                continue
            moves.extend(answer.moves)
            response = answer
        if response is None:
            assert failure is not None
            raise failure
        del response.moves[:]
        response.moves.extend(moves)
    fields = balance_json(response)
    if args.json:
        cli_common.print_json(fields)
    else:
        for line in balance_lines(fields):
            cli_common.print_line(line)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.cluster_command == "balance":
        return _balance(args)
    if args.cluster_command != "up":
        return cmd_membership.run(args)
    nodes = _launcher(args)
    with _stop_signals() as stopping:
        try:
            nodes.start()
            leader = _wait_ready(nodes, args, stopping)
            if leader is None:
                return 130
            print(f"cluster ready: leader {leader}", flush=True)
            leads = launcher.shard_leaders(nodes.statuses())
            if leads:
                print(f"shards: {sum(leads.values())} led; "
                      + ", ".join(f"{node} {count}" for node, count in sorted(leads.items())),
                      flush=True)
            return _supervise(nodes, stopping)
        finally:
            nodes.stop_all()
            if stopping():
                print("cluster stopped", flush=True)
