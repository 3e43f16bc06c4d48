"""The chaos run's disks: each node's data directory on its own fault filesystem.

Owns: mounting one ``quorumlog faultfs`` per node (a child process serving
``DIR/data/<node>`` over ``DIR/data/disk-<node>``, its control socket and its log beside
them), sending it fault commands (``power_cut``, ``fsync_error``, ``disk_full``, ``bitrot``,
``status``), finding the table file a bit-rot fault damages, and unmounting every disk in the
run's ``finally``. Only runs that ask for a storage fault mount disks
(``quorumlog.chaos.run.faults.STORAGE_FAULTS``). Must never: leave a mount or a process
behind, or touch a disk while its node runs unless the fault is meant to hit a running node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from quorumlog.chaos.faultfs import control

MOUNT_TIMEOUT = 20.0
UNMOUNT_TIMEOUT = 20.0


class DiskError(Exception):
    """A fault filesystem could not be mounted or did not answer."""


class FaultDisk:
    """One node's fault filesystem."""

    def __init__(self, name: str, point: Path, seed: int) -> None:
        self.name = name
        self.point = point
        root = point.parent
        self.backing = root / f"disk-{name}"
        self.control = root / f"{name}.faultfs.sock"
        self.log_path = root / f"{name}.faultfs.log"
        self.seed = seed
        self.process: subprocess.Popen[bytes] | None = None

    def mount(self) -> None:
        self.backing.mkdir(parents=True, exist_ok=True)
        self.point.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "quorumlog.client.cli", "faultfs", "mount",
                 str(self.backing), str(self.point), "--control", str(self.control),
                 "--seed", str(self.seed)], stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not os.path.ismount(self.point):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise DiskError(f"the fault filesystem of {self.name} did not mount: "
                                + self.log_path.read_text()[-500:])
            time.sleep(0.05)  # polling a deadline-bounded wait for the mount

    def command(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = control.send(self.control, request)
        if "error" in answer:
            raise DiskError(f"{self.name}'s fault filesystem: {answer['error']}")
        return answer

    def largest_table(self) -> str | None:
        """The path (inside the mount) of the node's largest table file, if any."""
        tables = sorted((self.point / "db").glob("*.sst"), key=lambda path: path.stat().st_size)
        return f"db/{tables[-1].name}" if tables else None

    def unmount(self) -> None:
        if self.process is None:
            return
        subprocess.run(["fusermount3", "-u", "-z", str(self.point)], capture_output=True,
                       check=False, timeout=UNMOUNT_TIMEOUT)
        try:
            self.process.wait(timeout=UNMOUNT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=UNMOUNT_TIMEOUT)
        self.process = None


class ChaosDisks:
    """Every node's disk, mounted together, unmounted together."""

    def __init__(self, points: dict[str, Path], seed: int) -> None:
        self.disks = {name: FaultDisk(name, point, seed * 10 + index)
                      for index, (name, point) in enumerate(sorted(points.items()))}

    def mount_all(self) -> None:
        if shutil.which("fusermount3") is None:
            raise DiskError("storage faults need FUSE: fusermount3 is not installed "
                            "(make testdeps installs Debian's fuse3)")
        for disk in self.disks.values():
            disk.mount()

    def unmount_all(self) -> None:
        for disk in self.disks.values():
            disk.unmount()

    def __getitem__(self, name: str) -> FaultDisk:
        return self.disks[name]
