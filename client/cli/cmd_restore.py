"""``quorumlog restore FILE --data-dir DIR --id NAME --peers ...``: seed a new cluster.

Owns: the restore command's flags, output and exit codes: 0 restored (one line), 2 bad input
(a damaged or truncated backup, a data directory that already holds data, a node not listed
in ``--peers``) with nothing written. Must never: hold restore logic
(``quorumlog.node.process.restore`` does).

Run it once per member of the new cluster, each with its own ``--id`` and ``--data-dir`` and
the same ``--peers``, then start each node with the same ``--id``/``--peers`` (or restore a
single node with ``--peers`` naming only itself and grow it with ``cluster add-node``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from quorumlog.client.cli import CliError
from quorumlog.node.common.config import ConfigError, parse_peers, valid_name
from quorumlog.node.process.restore import RestoreError, restore_data_dir
from quorumlog.node.storage.backup_file import BackupError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", type=Path, help="a `quorumlog backup` file")
    parser.add_argument("--data-dir", required=True, type=Path, help="new node data directory")
    parser.add_argument("--id", required=True, help="the node this directory is for, e.g. n1")
    parser.add_argument(
        "--peers", required=True,
        help="the new cluster's founding members: n1=HOST:PORT,... (same on every node)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        peers = parse_peers(args.peers)
    except ConfigError as error:
        raise CliError(str(error)) from None
    if not valid_name(args.id) or args.id not in peers:
        raise CliError(f"--id {args.id!r} must be one of --peers ({', '.join(peers)})")
    try:
        restored = restore_data_dir(args.file, args.data_dir, peers)
    except (BackupError, RestoreError) as error:
        raise CliError(str(error)) from None
    header = restored.header
    print(
        f"restored {args.file} into {args.data_dir} for {args.id}: state as of index "
        f"{restored.index} (backup of cluster {header.cluster_id} from {header.source}), "
        f"voters {','.join(restored.voters)}",
        flush=True,
    )
    return 0
