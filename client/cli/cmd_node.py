"""``quorumlog node``: run one server process from flags or a TOML file.

Owns: the node command's flags and turning them into a ``NodeConfig``. Must never: hold
server logic (``quorumlog.node.process.server`` does).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from quorumlog.client.cli import CliError
from quorumlog.node.common.config import ConfigError, NodeConfig, load_toml, parse_peers
from quorumlog.node.process import housekeeping
from quorumlog.node.process.memory import (
    fix_mmap_threshold,
    freeze_imported_objects,
    limit_malloc_arenas,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", help="this node's name, e.g. n1")
    parser.add_argument("--client-addr", help="HOST:PORT for clients (e.g. 127.0.0.1:7001)")
    parser.add_argument("--peer-addr", help="HOST:PORT for other nodes (e.g. 127.0.0.1:7101)")
    parser.add_argument("--peers", help="every member: n1=HOST:PORT,n2=HOST:PORT,...")
    parser.add_argument(
        "--peer-route",
        help="NAME=HOST:PORT,...: dial these members at these addresses (a proxy or NAT), "
        "whatever the member records say; local to this node",
    )
    parser.add_argument("--data-dir", type=Path, help="where this node keeps its RocksDB")
    parser.add_argument("--config", type=Path, help="a TOML file with the same settings")
    parser.add_argument("--cluster-id", type=int, help="refuse peers of another cluster")
    parser.add_argument("--tick-ms", type=int, help="Raft tick (default 50 ms)")
    parser.add_argument("--election-tick", type=int, help="ticks before an election (10)")
    parser.add_argument("--snapshot-every", type=int, help="entries between snapshots")
    parser.add_argument("--snapshot-keep", type=int, help="log entries kept after a snapshot")
    parser.add_argument("--snapshot-bytes", type=int,
                        help="also snapshot after this many bytes of entries (64 MiB); the "
                        "log kept behind it is cut to about 4x that")
    parser.add_argument(
        "--min-free-disk-mb", type=int,
        help="free space kept on the data disk; below it writes get RESOURCE_EXHAUSTED (64)",
    )
    parser.add_argument(
        "--scrub-every-s", type=float,
        help="seconds between scrubs (all stored data read back and checked); 0: at start only",
    )
    parser.add_argument("--metrics-addr", help="HOST:PORT for Prometheus metrics over HTTP")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--seed", type=int, help="seed the election timer (tests)")
    parser.add_argument(
        "--join",
        action="store_true",
        help="start empty and wait to be added with `quorumlog cluster add-node` "
        "(--peers then lists members to contact first, may be omitted)",
    )
    parser.add_argument(
        "--init-shards", type=int, metavar="S",
        help="data shards (Raft groups) of a cluster this node founds (default 1); fixed "
        "when the cluster is created, ignored after",
    )
    parser.add_argument(
        "--host-tag", metavar="NAME",
        help="the host this node runs on: no two replicas of a shard share a tag "
        "(default: the node's name)",
    )
    security = parser.add_argument_group("security (README: Security)")
    security.add_argument(
        "--tls-dir", type=Path,
        help="mutual TLS on both ports: ca.pem and node-<id>.pem/.key (quorumlog certs init)",
    )
    security.add_argument(
        "--plaintext", action="store_true",
        help="serve without TLS on non-loopback addresses (loopback needs no flag)",
    )
    security.add_argument(
        "--peer-allow", metavar="NAMES",
        help="more node names the peer port accepts (members are always accepted)",
    )
    security.add_argument(
        "--token-key", type=Path,
        help="accept bearer tokens verified by this key (HMAC secret or Ed25519 public key)",
    )
    security.add_argument(
        "--rate-limit", type=float, metavar="PER_SECOND",
        help="requests per second per principal on this node (default unlimited)",
    )
    security.add_argument(
        "--audit-log", type=Path, metavar="FILE",
        help="append manage operations to FILE as JSON lines (also on the node log)",
    )
    parser.add_argument(
        "--unsafe-ack-before-fsync",
        action="store_true",
        help=argparse.SUPPRESS,  # chaos canary only: acknowledges writes before they are durable
    )
    parser.add_argument(
        "--unsafe-no-fsync",
        action="store_true",
        help=argparse.SUPPRESS,  # power-loss canary only: the WAL is written, never fsynced
    )
    parser.add_argument(
        "--unsafe-no-incarnation-check",
        action="store_true",
        help=argparse.SUPPRESS,  # the incarnation rule's own test: a wiped node's votes count
    )


def config_from_args(args: argparse.Namespace) -> NodeConfig:
    values: dict[str, object] = {}
    if args.config is not None:
        values.update(load_toml(args.config))
    flags = {
        "name": args.id,
        "client_addr": args.client_addr,
        "peer_addr": args.peer_addr,
        "data_dir": args.data_dir,
        "cluster_id": args.cluster_id,
        "tick_ms": args.tick_ms,
        "election_tick": args.election_tick,
        "snapshot_every": args.snapshot_every,
        "snapshot_keep": args.snapshot_keep,
        "snapshot_bytes": args.snapshot_bytes,
        "metrics_addr": args.metrics_addr,
        "log_level": args.log_level,
        "seed": args.seed,
        "tls_dir": args.tls_dir,
        "token_key": args.token_key,
        "rate_limit": args.rate_limit,
        "audit_log": args.audit_log,
        "init_shards": args.init_shards,
        "host_tag": args.host_tag,
        "min_free_disk_mb": args.min_free_disk_mb,
        "scrub_every_s": args.scrub_every_s,
    }
    if args.peers is not None:
        values["peers"] = parse_peers(args.peers)
    if args.peer_route is not None:
        values["peer_routes"] = parse_peers(args.peer_route, "--peer-route")
    values.update({key: value for key, value in flags.items() if value is not None})
    if args.plaintext:
        values["plaintext"] = True
    if args.peer_allow is not None:
        values["peer_allow"] = [name.strip() for name in args.peer_allow.split(",") if name]
    if args.unsafe_ack_before_fsync:
        values["unsafe_ack_before_fsync"] = True
    if args.unsafe_no_fsync:
        values["unsafe_no_fsync"] = True
    if args.unsafe_no_incarnation_check:
        values["unsafe_no_incarnation_check"] = True
    if args.join:
        values["join"] = True
        values.setdefault("peers", {})
    missing = [
        flag
        for flag, key in (
            ("--id", "name"),
            ("--client-addr", "client_addr"),
            ("--peer-addr", "peer_addr"),
            ("--peers", "peers"),
            ("--data-dir", "data_dir"),
        )
        if key not in values
    ]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)} (or give them in --config)")
    return NodeConfig(**values)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        config.validate()
    except ConfigError as error:
        raise CliError(str(error)) from error
    from quorumlog.node.process.server import (  # noqa: PLC0415 -- heavy
        RaftLoopFailed,
        configure_logging,
        serve,
    )

    limit_malloc_arenas()  # before gRPC and RocksDB start their threads
    fix_mmap_threshold()
    housekeeping.start()  # RocksDB's background threads at a lower priority
    freeze_imported_objects()  # full collections then skip everything imported
    configure_logging(config.name, config.log_level)
    try:
        asyncio.run(serve(config))
    except OSError as error:
        raise CliError(str(error), code=1) from error
    except RaftLoopFailed as error:
        raise CliError(str(error), code=1) from error
    return 0
