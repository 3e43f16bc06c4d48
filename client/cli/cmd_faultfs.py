"""``quorumlog faultfs``: mount the fault filesystem, and inject its faults.

``mount BACKING MOUNTPOINT --control SOCKET [--seed N]``: serve MOUNTPOINT as a pass-through
of the directory BACKING (both absolute or made so), in the foreground until unmounted
(``fusermount3 -u MOUNTPOINT``, or SIGINT/SIGTERM); it prints ``mounted MOUNTPOINT`` once
serving. The other actions talk to a running mount through SOCKET and print its JSON answer:
``power-cut [--torn]`` (throw away everything not durable; stop the processes using the mount
first), ``fsync-error [PATH]`` (the next fsync of PATH, default any, returns EIO),
``disk-full on|off`` (ENOSPC on writes while on), ``bitrot PATH`` (flip a byte at a seeded
position), ``status``. Exit 1 with one line when the mount does not answer or refuses.
Owns: flags and output only (``quorumlog.chaos.faultfs``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from quorumlog.chaos.faultfs import control
from quorumlog.client.cli import CliError

ACTIONS = ("mount", "power-cut", "fsync-error", "disk-full", "bitrot", "status")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", metavar="ACTION", choices=ACTIONS, help=" | ".join(ACTIONS))
    parser.add_argument("operands", metavar="ARG", nargs="*",
                        help="mount: BACKING MOUNTPOINT; fsync-error/bitrot: PATH; "
                        "disk-full: on|off")
    parser.add_argument("--control", metavar="SOCKET", required=True,
                        help="the mount's control socket (a Unix socket path)")
    parser.add_argument("--seed", type=int, default=1, help="mount: seed of torn writes "
                        "and bit rot positions (default 1)")
    parser.add_argument("--below", type=int, metavar="BYTES",
                        help="bitrot: flip a byte before this offset (default: anywhere)")
    parser.add_argument("--torn", action="store_true",
                        help="power-cut: a seeded prefix of each unsynced tail survives")


def run(args: argparse.Namespace) -> int:
    socket_path = Path(args.control).absolute()
    if args.action == "mount":
        return _mount(args, socket_path)
    request: dict[str, object] = {"command": args.action.replace("-", "_")}
    operands = list(args.operands)
    if args.action == "power-cut":
        request["torn"] = args.torn
    elif args.action == "fsync-error":
        request["path"] = operands[0] if operands else "*"
    elif args.action == "disk-full":
        if operands not in (["on"], ["off"]):
            raise CliError("disk-full takes on or off")
        request["on"] = operands[0] == "on"
    elif args.action == "bitrot":
        if len(operands) != 1:
            raise CliError("bitrot takes the PATH of a file in the mount")
        request["path"] = operands[0]
        if args.below is not None:
            if args.below <= 0:
                raise CliError("--below must be a positive byte count")
            request["below"] = args.below
    try:
        reply = control.send(socket_path, request)
    except OSError as error:
        raise CliError(f"no fault filesystem answers on {socket_path}: {error}", 1) from None
    if "error" in reply:
        raise CliError(str(reply["error"]), 1)
    print(json.dumps(reply))
    return 0


def _mount(args: argparse.Namespace, socket_path: Path) -> int:
    if len(args.operands) != 2:
        raise CliError("mount takes BACKING MOUNTPOINT")
    backing, mountpoint = (Path(item).absolute() for item in args.operands)
    if not backing.is_dir():
        raise CliError(f"backing directory {backing} does not exist")
    if not mountpoint.is_dir():
        raise CliError(f"mount point {mountpoint} does not exist")
    from quorumlog.chaos.faultfs.fs import Faults, mount  # noqa: PLC0415 -- loads libfuse

    faults = Faults(backing, args.seed)
    control.serve(socket_path, faults)
    print(f"mounted {mountpoint}", flush=True)  # the mount is served once fuse_main runs
    try:
        mount(backing, mountpoint, faults)
    except OSError as error:  # libfuse missing, or the mount refused
        print(f"quorumlog faultfs: {error}", file=sys.stderr)
        return 1
    finally:
        socket_path.unlink(missing_ok=True)
    return 0
