"""The chaos run's fault catalogue and its seeded, deterministic fault scheduler.

Owns: the names of the faults ``quorumlog chaos run --faults`` accepts (and which are on by
default), parsing that list, and :class:`FaultScheduler`, which turns a seed and a list into
an endless, reproducible sequence of :class:`FaultPlan` (kind, how long to hold it, its
parameters, and an index that picks among candidate nodes at run time). Must never: touch a
process, a proxy, a clock or unseeded randomness; the same seed and list always give the same
plans, so a failing run's schedule can be replayed.

Adding a fault: add a :class:`FaultKind` to ``FAULT_KINDS`` (with ``available=False`` until the
feature it needs exists, like ``membership``), give it hold times and parameters in
``_draw_params``, and teach ``quorumlog.chaos.run.nemesis`` to inject and heal it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field


class FaultListError(ValueError):
    """A ``--faults`` list names an unknown or unavailable fault."""


@dataclass(frozen=True)
class FaultKind:
    name: str
    description: str
    hold: tuple[float, float]  # seconds the fault stays on (min, max), drawn uniformly
    default: bool = True
    available: bool = True
    why_unavailable: str = ""


FAULT_KINDS: dict[str, FaultKind] = {kind.name: kind for kind in (
    FaultKind("isolate_leader", "cut every peer link into and out of the leader", (3.0, 5.0)),
    FaultKind("isolate_follower", "cut every peer link into and out of one follower",
              (3.0, 5.0)),
    FaultKind("asymmetric", "cut one direction of the link between two nodes", (3.0, 5.0)),
    FaultKind("latency", "latency with jitter on every peer link", (3.0, 5.0)),
    FaultKind("bandwidth", "bandwidth limit on every peer link", (3.0, 5.0)),
    FaultKind("slicer", "slice peer traffic into small delayed pieces", (3.0, 5.0)),
    FaultKind("client_reset", "reset_peer on client links (connections reset mid-call)",
              (3.0, 4.0)),
    FaultKind("client_timeout", "timeout toxic on the leader's client link (calls vanish)",
              (3.0, 4.0)),
    FaultKind("kill_leader", "kill -9 the leader, restart it", (1.0, 3.0)),
    FaultKind("kill_two", "kill -9 the leader and a follower, restart both", (1.0, 3.0)),
    FaultKind("kill_all", "kill -9 every node at once, restart all", (1.0, 2.0)),
    FaultKind("pause_leader", "SIGSTOP the leader longer than the election timeout",
              (3.0, 5.0)),
    FaultKind("pause_then_kill", "SIGSTOP the leader, then kill -9 it while stopped, restart",
              (2.0, 3.0)),
    FaultKind("compaction", "blackhole a follower until the leader compacts its log past it",
              (30.0, 30.0)),  # the hold is a deadline; it ends as soon as compaction passes
    FaultKind("membership", "remove a follower from the cluster and add it back",
              (3.0, 5.0)),
    # Storage faults (each node's data directory on its own fault filesystem, mounted only
    # when one of these is asked for; not default: they need FUSE).
    FaultKind("power_loss", "power cut: kill -9 the leader, a follower or every node, drop "
              "every write its disk had not made durable (a torn tail), restart", (1.0, 2.0),
              default=False),
    FaultKind("fsync_error", "the next fsync on one node's disk fails with EIO: the node must "
              "stop at once; its unsynced writes are dropped, then it restarts", (2.0, 4.0),
              default=False),
    FaultKind("disk_full", "ENOSPC on the leader's, a follower's or every disk for the hold: "
              "appends refused, reads served, writes again once space returns", (3.0, 5.0),
              default=False),
    FaultKind("bitrot", "stop a follower, flip a byte in one of its table files, restart: it "
              "must find the damage and be repaired from its peers", (1.0, 2.0),
              default=False),
)}

# Faults that need every node's data directory on a fault filesystem (chaos.run.disks).
STORAGE_FAULTS = frozenset(("power_loss", "fsync_error", "disk_full", "bitrot"))

DEFAULT_FAULTS: tuple[str, ...] = tuple(
    name for name, kind in FAULT_KINDS.items() if kind.default and kind.available)

# The final phase always does this (not schedulable): heal, then restart every node cleanly.
FINAL_FAULT = "restart_all"

# Faults a sharded cluster (``--shards`` > 1) cannot take yet, and why: left out of the
# default list there, refused when asked for. None today: membership changes move shard
# replicas (add-node / remove-node).
NOT_WITH_SHARDS: dict[str, str] = {}


def for_shards(faults: Sequence[str], shards: int, *, explicit: bool) -> tuple[str, ...]:
    """``faults`` for a cluster of ``shards`` data shards: unchanged with one shard; else
    without those in ``NOT_WITH_SHARDS`` (the default list), or ``FaultListError`` when
    ``explicit`` (asked for by name)."""
    if shards <= 1:
        return tuple(faults)
    refused = [name for name in faults if name in NOT_WITH_SHARDS]
    if refused and explicit:
        raise FaultListError("; ".join(f"fault {name!r} cannot run with --shards {shards}: "
                                       f"{NOT_WITH_SHARDS[name]}" for name in refused))
    kept = tuple(name for name in faults if name not in NOT_WITH_SHARDS)
    if not kept:
        raise FaultListError(f"no fault left to run with --shards {shards}")
    return kept


def parse_fault_list(text: str | None) -> tuple[str, ...]:
    """``None``, ``default`` or ``all`` -> every default fault (the storage faults are
    named explicitly: they need FUSE); else a comma-separated list of fault names (order
    kept, duplicates dropped). Raises ``FaultListError``."""
    if text is None or text.strip() in ("default", "all"):
        return DEFAULT_FAULTS
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip().replace("-", "_")
        if not name:
            continue
        kind = FAULT_KINDS.get(name)
        if kind is None:
            known = ", ".join(FAULT_KINDS)
            raise FaultListError(f"unknown fault {raw.strip()!r} (known: {known})")
        if not kind.available:
            raise FaultListError(f"fault {name!r} is not available: {kind.why_unavailable}")
        if name not in names:
            names.append(name)
    if not names:
        raise FaultListError("--faults names no fault")
    return tuple(names)


@dataclass(frozen=True)
class FaultPlan:
    """One scheduled fault. ``pick`` chooses among candidate nodes at run time (sorted by
    name, index ``pick % len(candidates)``); ``params`` are toxic attributes and the like."""

    number: int  # 1-based position in the schedule
    kind: str
    hold: float
    pick: int
    params: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        extra = " ".join(f"{key}={value}" for key, value in sorted(self.params.items()))
        return f"#{self.number} {self.kind} hold {self.hold:.1f}s" + (f" {extra}" if extra else "")


class FaultScheduler:
    """Rounds of the given faults, each round in a seeded shuffled order, forever."""

    def __init__(self, seed: int, kinds: Sequence[str]) -> None:
        if not kinds:
            raise FaultListError("no faults to schedule")
        for name in kinds:
            if name not in FAULT_KINDS or not FAULT_KINDS[name].available:
                raise FaultListError(f"cannot schedule fault {name!r}")
        self.seed = seed
        self.kinds = tuple(kinds)
        self._rng = random.Random(f"quorumlog-chaos-faults-{seed}")
        self._round: list[str] = []
        self._count = 0

    def __iter__(self) -> Iterator[FaultPlan]:
        return self

    def __next__(self) -> FaultPlan:
        if not self._round:
            self._round = list(self.kinds)
            self._rng.shuffle(self._round)
        kind = FAULT_KINDS[self._round.pop(0)]
        self._count += 1
        low, high = kind.hold
        hold = round(self._rng.uniform(low, high), 2)
        return FaultPlan(number=self._count, kind=kind.name, hold=hold,
                         pick=self._rng.randrange(1 << 16),
                         params=_draw_params(kind.name, self._rng))

    def take(self, count: int) -> list[FaultPlan]:
        return [next(self) for _ in range(count)]


def _draw_params(kind: str, rng: random.Random) -> dict[str, int]:
    if kind == "latency":
        return {"latency": rng.randrange(40, 120), "jitter": rng.randrange(10, 40)}
    if kind == "bandwidth":
        return {"rate": rng.randrange(20, 80)}  # KB/s per link and direction
    if kind == "slicer":
        return {"average_size": rng.randrange(16, 64), "size_variation": rng.randrange(4, 16),
                "delay": rng.randrange(200, 1000)}  # delay in microseconds
    if kind == "client_reset":
        return {"timeout": rng.randrange(50, 400)}  # ms after the first response bytes
    if kind == "client_timeout":
        return {"timeout": rng.randrange(500, 1500)}  # ms before the connection is closed
    if kind in ("power_loss", "disk_full"):
        return {"scope": rng.randrange(3)}  # 0: the leader, 1: a follower, 2: every node
    return {}


def candidates_pick(candidates: Sequence[str], pick: int) -> str:
    """The candidate a plan's ``pick`` selects (candidates sorted by name first)."""
    ordered = sorted(candidates)
    if not ordered:
        raise ValueError("no candidate node to pick from")
    return ordered[pick % len(ordered)]


def fault_help() -> str:
    lines = []
    for name, kind in FAULT_KINDS.items():
        flag = "" if kind.default and kind.available else (
            " (not available yet)" if not kind.available else " (not default)")
        lines.append(f"{name}: {kind.description}{flag}")
    return "; ".join(lines)
