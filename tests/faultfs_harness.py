"""The fault filesystem in tests: the chaos run's own mount (``chaos.run.disks.FaultDisk``)
driven through the ``quorumlog faultfs`` command line, as an operator would drive it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from quorumlog.chaos.run.disks import FaultDisk


def faultfs_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quorumlog.client.cli", "faultfs", *args],
                          capture_output=True, text=True, timeout=30, check=False)


class Mount:
    """A fault filesystem serving ``point`` (over ``disk-<name>`` beside it), mounted on
    creation (20 s deadline); ``command`` sends a CLI command; ``stop`` unmounts."""

    def __init__(self, point: Path, seed: int = 3) -> None:
        self.disk = FaultDisk(point.name, point, seed)
        self.point, self.control = self.disk.point, self.disk.control
        self.disk.mount()

    @classmethod
    def in_directory(cls, root: Path) -> Mount:
        return cls(root / "mnt")

    def command(self, *args: str) -> dict[str, object]:
        done = faultfs_cli(*args, "--control", str(self.control))
        assert done.returncode == 0, done.stderr
        answer: dict[str, object] = json.loads(done.stdout)
        return answer

    def stop(self) -> None:
        self.disk.unmount()


@contextlib.contextmanager
def node_mounts(root: Path, names: tuple[str, ...] = ("n1", "n2", "n3")
                ) -> Iterator[dict[str, Mount]]:
    """A fault filesystem at ``root/<node>`` for each node (where ``LocalCluster(root)``
    keeps that node's data); unmounted after."""
    made: dict[str, Mount] = {}
    try:
        for seed, name in enumerate(names, start=1):
            made[name] = Mount(root / name, seed)
        yield made
    finally:
        for mount in made.values():
            mount.stop()
