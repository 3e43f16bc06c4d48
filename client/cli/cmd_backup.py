"""``quorumlog backup --out FILE``: a consistent backup of a running cluster.

Owns: the command's flags, output and exit codes: 0 written (one line: path, size, index;
or ``--json``), 2 bad input (unwritable path), 1 cluster unreachable or the stream broken —
then FILE is left as it was (the SDK writes a temporary file and renames it only when the
stream's size and SHA-256 check out). Must never: parse the backup (``quorumlog restore``
does).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from quorumlog.client.cli import CliError
from quorumlog.client.cli import common as cli_common

DEFAULT_DEADLINE = 600.0  # the whole state streams within this


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, metavar="FILE", help="backup file")
    cli_common.add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.is_dir():
        raise CliError(f"--out {out} is a directory; give a file name")
    if not out.parent.is_dir():
        raise CliError(f"--out {out}: directory {out.parent} does not exist")
    if args.deadline is None:
        args.deadline = str(DEFAULT_DEADLINE)
    with cli_common.connect(args) as client:
        try:
            result = client.backup(out)
        except PermissionError as error:
            raise CliError(f"--out {out}: {error.strerror}") from None
    if args.json:
        cli_common.print_json(
            {
                "path": str(result.path), "bytes": result.size,
                "applied_index": result.applied_index, "sha256": result.sha256,
                "seconds": round(result.seconds, 3),
            }
        )
    else:
        cli_common.print_line(
            f"backup {result.path}: {result.size} bytes, state as of index "
            f"{result.applied_index}, sha256 {result.sha256[:16]}…, {result.seconds:.1f}s"
        )
    return 0
