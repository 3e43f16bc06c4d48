"""The fault filesystem in tests: a ``quorumlog faultfs mount`` process and its commands."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from cluster_harness import wait_until


def faultfs_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quorumlog.client.cli", "faultfs", *args],
                          capture_output=True, text=True, timeout=30, check=False)


class Mount:
    """A fault filesystem serving ``point`` over ``backing``, controlled through ``control``;
    its output in ``log``. Mounted on creation (20 s deadline); ``stop`` unmounts."""

    def __init__(self, backing: Path, point: Path, control: Path, log: Path, seed: int = 3
                 ) -> None:
        self.backing, self.point, self.control, self.log = backing, point, control, log
        backing.mkdir()
        point.mkdir()
        with open(log, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "quorumlog.client.cli", "faultfs", "mount",
                 str(backing), str(point), "--control", str(control), "--seed", str(seed)],
                stdout=output, stderr=subprocess.STDOUT,
            )
        wait_until(lambda: os.path.ismount(point) or self.process.poll() is not None,
                   20, "the fault filesystem to mount")
        assert os.path.ismount(point), log.read_text()

    @classmethod
    def in_directory(cls, root: Path) -> Mount:
        return cls(root / "backing", root / "mnt", root / "control.sock", root / "faultfs.log")

    def command(self, *args: str) -> dict[str, object]:
        done = faultfs_cli(*args, "--control", str(self.control))
        assert done.returncode == 0, done.stderr
        answer: dict[str, object] = json.loads(done.stdout)
        return answer

    def stop(self) -> None:
        subprocess.run(["fusermount3", "-u", str(self.point)], capture_output=True, check=False,
                       timeout=30)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)


@contextlib.contextmanager
def node_mounts(root: Path, names: tuple[str, ...] = ("n1", "n2", "n3")
                ) -> Iterator[dict[str, Mount]]:
    """A fault filesystem at ``root/<node>`` for each node (where ``LocalCluster(root)``
    keeps that node's data), each over its own backing directory; unmounted after."""
    made: dict[str, Mount] = {}
    try:
        for seed, name in enumerate(names, start=1):
            made[name] = Mount(root / f"disk-{name}", root / name, root / f"{name}.sock",
                               root / f"faultfs-{name}.log", seed)
        yield made
    finally:
        for mount in made.values():
            mount.stop()
