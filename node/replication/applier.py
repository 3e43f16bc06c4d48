"""What the Raft driver needs from a state machine, and what it hands back per entry.

Owns: the ``StateMachine`` protocol the driver applies committed entries through, and the
per-entry result (``EntryResult``) whose per-command results it passes to waiting callers
without looking inside. Must never: know what a command means; the state layer
(``quorumlog.node.state``) implements the protocol, this layer only drives it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from quorumlog.node.common.limits import ErrorCode
from quorumlog.raft import Entry


@dataclass(frozen=True, slots=True)
class CommandError:
    """A command that changed nothing, and why."""

    code: ErrorCode
    message: str


@dataclass(slots=True)  # not frozen: built per command on the hot path
class EntryResult:
    """One entry given to ``apply``: a result per command, in order. ``error`` is set (and
    ``results`` empty) when the entry's data is not a command batch; no-ops and membership
    changes have neither. ``skipped``: the entry was already in the state (at or below the
    applied index, e.g. after a snapshot import): its effects are there, its results are not
    known any more."""

    index: int
    term: int
    results: tuple[object, ...]  # per command, in order: the state machine's results
    error: CommandError | None = None
    skipped: bool = False


class StateMachine(Protocol):
    def applied_index(self) -> int: ...

    @property
    def import_incomplete(self) -> bool: ...

    def apply(self, entries: Iterable[Entry]) -> list[EntryResult]: ...

    def import_state(self, chunks: Iterable[bytes]) -> None: ...
