"""How much room the node's disk has left, and the refusal of writes when it runs out.

Owns: sampling the free space of the file system that holds the data directory
(``statvfs``, at most every ``every`` seconds, so the append path pays one syscall per
sample, not per call), comparing it with the reserve the node keeps (``--min-free-disk-mb``)
and wording the refusal clients get while it is below (``RESOURCE_EXHAUSTED``, raised by
``quorumlog.node.api.node_port``), and waiting until space is back. Keeping a reserve means
the node stops taking new writes before RocksDB meets ENOSPC: a write that fails in RocksDB
leaves the database read-only until it is reopened (``quorumlog.node.process.server``
reopens it once space returns). Must never: write to the disk, or block the event loop for
longer than one ``statvfs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

MIB = 1 << 20


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s file system."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def is_out_of_space(error: BaseException) -> bool:
    """Whether ``error`` (an OSError, or RocksDB's IO error text) is ENOSPC."""
    if isinstance(error, OSError) and error.errno == 28:
        return True
    return "No space left on device" in str(error)


class DiskSpace:
    """The free space of the data directory's disk against the node's reserve."""

    def __init__(
        self, path: Path, reserve_bytes: int, *, every: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.reserve_bytes = reserve_bytes
        self.every = every
        self._clock = clock
        self._sampled_at = float("-inf")
        self._free = 0
        self.low = False  # below the reserve at the last sample

    @property
    def free(self) -> int:
        """Free bytes at the last sample."""
        return self._free

    def sample(self) -> int:
        """Free bytes now (and remember them)."""
        try:
            self._free = free_bytes(self.path)
        except OSError:
            self._free = 0  # the disk cannot even be asked: treat it as full
        self._sampled_at = self._clock()
        self.low = self._free < self.reserve_bytes
        return self._free

    def refusal(self) -> str | None:
        """Why writes are refused now (None: there is room), from a sample at most
        ``every`` seconds old."""
        if self._clock() - self._sampled_at >= self.every:
            self.sample()
        if not self.low:
            return None
        return (f"disk full: {self._free // MIB} MiB free, below the "
                f"{self.reserve_bytes // MIB} MiB reserve; writes are refused until space "
                "returns")

    async def wait_for_room(self, stop: asyncio.Event | None = None) -> bool:
        """Wait until the free space is at least the reserve; False if ``stop`` was set
        first."""
        stop = stop if stop is not None else asyncio.Event()
        while self.sample() < self.reserve_bytes:
            with contextlib.suppress(TimeoutError):  # a poll of the disk every ``every``
                await asyncio.wait_for(stop.wait(), self.every)
            if stop.is_set():
                return False
        return True
