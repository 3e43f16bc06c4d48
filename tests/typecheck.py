"""Run strict mypy over quorumlog's own packages.

The repository keeps each component in a top-level folder (``raft/``, ``node/``...) that is
installed as ``quorumlog.<folder>``. mypy cannot follow setuptools' editable-install import
hooks, so this script lays a tree of symlinks (``.typecheck/quorumlog/<folder>``) that mirrors
the installed namespace and checks that. Generated protobuf code is excluded by pyproject.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("raft", "node", "client", "chaos", "proto")


def main() -> int:
    tree = ROOT / ".typecheck" / "quorumlog"
    tree.mkdir(parents=True, exist_ok=True)
    for name in PACKAGES:
        link = tree / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(ROOT / name, target_is_directory=True)
    # benchmarks/ is a plain package next to quorumlog in the tree (it imports quorumlog).
    benchmarks = ROOT / ".typecheck" / "benchmarks"
    if benchmarks.is_symlink() or benchmarks.exists():
        benchmarks.unlink()
    benchmarks.symlink_to(ROOT / "benchmarks", target_is_directory=True)
    cmd = [
        sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
        "--namespace-packages", "--explicit-package-bases",
        "-p", "quorumlog", "-p", "benchmarks",
    ]
    return subprocess.call(cmd, cwd=ROOT / ".typecheck")


if __name__ == "__main__":
    raise SystemExit(main())
