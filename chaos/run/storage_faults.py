"""The chaos run's storage faults: power loss, a failed fsync, a full disk and bit rot, each on
the nodes' fault filesystems (``quorumlog.chaos.run.disks``).

Owns: injecting each of the four (targets resolved by the nemesis), the notes that say what
happened (what a power cut undid, how a node ended on EIO, whether bit rot was found and the
node repaired), and clearing a full disk when a fault ends. The history checks judge the
outcome (nothing acknowledged lost, no duplicate, no reordering); these notes explain it.
Must never: judge the history, leave a disk full after its fault, or wait without a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Protocol

from quorumlog.chaos.run.disks import ChaosDisks, DiskError
from quorumlog.chaos.run.faults import FaultPlan
from quorumlog.chaos.run.processes import ChaosNodes

EIO_STOP_TIMEOUT = 15.0  # seconds after the hold for a node to stop on its failed fsync
REPAIR_TIMEOUT = 30.0  # seconds for a node with bit rot to find it (or scrub clean)
BITROT_BELOW = 1024  # flip a byte in a table file's first data block


class Record(Protocol):
    target: str | None
    notes: list[str]


class StorageFaults:
    def __init__(self, nodes: ChaosNodes, disks: ChaosDisks,
                 hold: Callable[[float], Any], *, power_loss_everyone: bool = False) -> None:
        self.nodes = nodes
        self.disks = disks
        self._hold = hold
        # The canary (``--unsafe-no-fsync``): every power cut hits every node at once, so
        # the data the nodes never made durable is gone from a majority.
        self.power_loss_everyone = power_loss_everyone

    def targets(self, record: Record) -> list[str]:
        if self.power_loss_everyone or record.target in (None, "all"):
            return list(self.nodes.names)
        return (record.target or "").split(",")

    async def _command(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self.disks[name].command, request)

    async def _power_cut(self, name: str, record: Record) -> None:
        answer = await self._command(name, {"command": "power_cut", "torn": True})
        undone = answer.get("undone", {})
        record.notes.append(f"{name}: power cut undid {undone}")

    async def power_loss(self, plan: FaultPlan, record: Record) -> None:
        names = self.targets(record)
        await asyncio.to_thread(self.nodes.kill, names)
        for name in names:
            await self._power_cut(name, record)
        await self._hold(plan.hold)

    async def fsync_error(self, plan: FaultPlan, record: Record) -> None:
        name = self.targets(record)[0]
        start = _log_size(self.nodes, name)
        await self._command(name, {"command": "fsync_error", "path": "*"})
        deadline = asyncio.get_running_loop().time() + plan.hold + EIO_STOP_TIMEOUT
        while self.nodes.alive(name) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)  # polling a deadline-bounded wait for the node's exit
        process = self.nodes.launcher.process(name)
        if self.nodes.alive(name):
            record.notes.append(f"{name} did not fsync within the hold: killed instead")
            await asyncio.to_thread(self.nodes.kill, [name])
        else:
            code = process.returncode if process is not None else None
            lines = _log(self.nodes, name, start).count('"level": "critical"')
            record.notes.append(f"{name} stopped on the failed fsync (exit {code}, "
                                f"{lines} critical log line)")
        # After an EIO the kernel may have dropped the dirty pages: the worst case is a power
        # cut of everything the disk had not made durable.
        await self._power_cut(name, record)
        await self._hold(1.0)

    async def disk_full(self, plan: FaultPlan, record: Record) -> None:
        names = self.targets(record)
        starts = {name: _log_size(self.nodes, name) for name in names}
        try:
            for name in names:
                await self._command(name, {"command": "disk_full", "on": True})
            await self._hold(plan.hold)
        finally:
            await self.clear()
        reopened = [name for name in names
                    if "disk has room again" in _log(self.nodes, name, starts[name])]
        record.notes.append(f"disks full: {','.join(names)}; reopened after ENOSPC: "
                            f"{','.join(reopened) or 'none'}")

    async def bitrot(self, plan: FaultPlan, record: Record) -> None:
        name = self.targets(record)[0]
        await asyncio.to_thread(self.nodes.terminate, [name])  # memtables go to tables
        path = self.disks[name].largest_table()
        if path is None:
            record.notes.append(f"{name} had no table file to damage")
            return
        answer = await self._command(name, {"command": "bitrot", "path": path,
                                            "below": BITROT_BELOW})
        start = _log_size(self.nodes, name)  # only what this life of the node logs
        self.nodes.start(name)
        record.notes.append(f"{name}: flipped the byte at {answer.get('offset')} of {path}")
        deadline = asyncio.get_running_loop().time() + REPAIR_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            if "stored data is damaged" in _log(self.nodes, name, start):
                record.notes.append(f"{name} found the damage and is repaired from its peers")
                break
            await asyncio.sleep(0.1)  # polling a deadline-bounded wait for the node's log
        else:
            record.notes.append(f"{name} did NOT report the damage within "
                                f"{REPAIR_TIMEOUT:.0f}s")
        await self._hold(plan.hold)

    async def clear(self) -> None:
        """No disk stays full (a fault's end, and every heal)."""
        for name in self.nodes.names:
            # a disk that cannot be reached cannot be full either
            with contextlib.suppress(DiskError, OSError):
                await self._command(name, {"command": "disk_full", "on": False})


def _log_size(nodes: ChaosNodes, name: str) -> int:
    path = nodes.nodes[name].log_path
    return path.stat().st_size if path.exists() else 0


def _log(nodes: ChaosNodes, name: str, start: int) -> str:
    """What node ``name`` logged from byte ``start`` on (a soak's logs grow large: a poll
    reads only the fault's part)."""
    path = nodes.nodes[name].log_path
    if not path.exists():
        return ""
    with open(path, "rb") as file:
        file.seek(start)
        return file.read().decode(errors="replace")
