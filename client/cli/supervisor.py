"""Supervision of a fixed set of local child processes (the nodes ``quorumlog cluster up`` runs).

Owns: starting each child with stdin closed and stdout + stderr appended to its own log file;
noticing (by polling, never blocking) that a child exited; one line per exit naming the
child, its pid, its exit status (``exit code 1``, ``killed by SIGKILL``), its log file and
what happens next; restarting it after the policy's delay, doubled for every fast failure
in a row (an exit within ``fast_failure`` seconds of its start) and given up after
``max_fast_failures`` of those; stopping every child (SIGTERM, SIGKILL after a deadline).

Must never: know what the children are (no gRPC, no Raft: the caller prints their details
from ``on_started``), restart anything once ``stop_all`` began, signal a process it did not
start, or leave a child running after ``stop_all`` returns.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ChildSpec:
    """What to run for one child, and where its output goes (appended, across restarts)."""

    name: str
    command: tuple[str, ...]
    log_path: Path


@dataclass(frozen=True)
class RestartPolicy:
    restart: bool = True
    delay: float = 3.0  # seconds between an exit and the restart
    fast_failure: float = 10.0  # an exit this soon after the start counts as a fast failure
    max_fast_failures: int = 5  # fast failures in a row before giving up on the child
    max_delay: float = 60.0

    def delay_after(self, fast_failures: int) -> float:
        """The restart delay after ``fast_failures`` fast failures in a row (doubling)."""
        return min(self.max_delay, self.delay * 2.0 ** max(0, fast_failures - 1))


@dataclass
class Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None  # when a restart is due; None: none scheduled
    fast_failures: int = 0
    gave_up: bool = False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


@dataclass(frozen=True)
class Exit:
    name: str
    pid: int
    returncode: int
    uptime: float  # seconds between its start and the moment the exit was noticed


def describe_status(returncode: int) -> str:
    """``exit code N`` or ``killed by SIGNAME`` (Popen's negative return code)."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _print_line(line: str) -> None:
    print(line, flush=True)


class Supervisor:
    """Start, watch, restart and stop the children of ``specs`` under ``policy``.

    Call ``start_all`` once, then ``supervise`` periodically (it reports exits and starts
    due restarts), and ``stop_all`` in a ``finally``. ``reap`` alone reports exits without
    acting on them (for a caller that treats an exit as fatal, e.g. before a cluster is up).
    """

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        policy: RestartPolicy,
        *,
        label: str = "process",
        env: Mapping[str, str] | None = None,
        on_started: Callable[[Child], None] | None = None,
        say: Callable[[str], None] = _print_line,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = {spec.name: Child(spec) for spec in specs}
        self.policy = policy
        self.label = label
        self.env = dict(env) if env is not None else None
        self.on_started = on_started
        self.say = say
        self.clock = clock
        self.stopping = False

    def start_all(self) -> None:
        for child in self.children.values():
            self._start(child)

    def pids(self) -> dict[str, int]:
        """The pid of every running child, by name."""
        return {name: child.process.pid for name, child in self.children.items()
                if child.process is not None and child.alive}

    def active(self) -> bool:
        """Whether any child runs or has a restart scheduled."""
        return any(child.alive or child.restart_at is not None
                   for child in self.children.values())

    def reap(self) -> list[Exit]:
        """Children that exited since the last call, each reported once."""
        now = self.clock()
        exits = []
        for child in self.children.values():
            process = child.process
            if process is None or process.poll() is None:
                continue
            exits.append(Exit(child.spec.name, process.pid, process.returncode,
                              now - child.started_at))
            child.process = None
        return exits

    def supervise(self) -> list[Exit]:
        """Report each new exit in one line, schedule its restart, start restarts now due."""
        exits = [] if self.stopping else self.reap()
        for ended in exits:
            self._after_exit(ended)
        now = self.clock()
        for child in self.children.values():
            if not self.stopping and child.restart_at is not None and now >= child.restart_at:
                self._start(child)
        return exits

    def stop_all(self, timeout: float = 10.0) -> None:
        """SIGTERM every running child, SIGKILL those still running after ``timeout``."""
        self.stopping = True
        for child in self.children.values():
            child.restart_at = None
            if child.process is not None and child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = self.clock() + timeout
        for child in self.children.values():
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()

    def _start(self, child: Child) -> None:
        child.restart_at = None
        child.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(child.spec.log_path, "ab") as log:  # the child keeps its own descriptor
            child.process = subprocess.Popen(
                list(child.spec.command), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=self.env,
            )
        child.started_at = self.clock()
        if self.on_started is not None:
            self.on_started(child)

    def _after_exit(self, ended: Exit) -> None:
        child = self.children[ended.name]
        fast = ended.uptime < self.policy.fast_failure
        child.fast_failures = child.fast_failures + 1 if fast else 0
        self.say(
            f"{self.label} {ended.name} (pid {ended.pid}) exited: "
            f"{describe_status(ended.returncode)}; log {child.spec.log_path}; "
            f"{self._next_step(child)}"
        )

    def _next_step(self, child: Child) -> str:
        """Schedule what follows an exit; the words saying so."""
        policy = self.policy
        if not policy.restart:
            return "left down (restarts are off)"
        if child.fast_failures >= policy.max_fast_failures:
            child.gave_up = True
            return (f"giving up: {child.fast_failures} exits in a row within "
                    f"{_seconds(policy.fast_failure)} of starting")
        delay = policy.delay_after(child.fast_failures)
        child.restart_at = self.clock() + delay
        streak = (f" ({child.fast_failures} exits in a row within "
                  f"{_seconds(policy.fast_failure)} of starting)" if child.fast_failures > 1
                  else "")
        return f"restarting in {_seconds(delay)}{streak}"
