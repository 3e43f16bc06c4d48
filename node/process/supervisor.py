"""Local child processes: start, signal, watch, restart and stop them (the node processes of
every local cluster, through ``quorumlog.node.process.launcher``; benchmarks' other servers).

Owns: starting a child with stdin closed and stdout + stderr appended to its own log file;
signalling one child (kill -9 and reaping it, SIGSTOP / SIGCONT, remembered as paused);
noticing (by polling, never blocking) that a child exited on its own; one line per such exit
naming the child, its pid, its exit status (``exit code 1``, ``killed by SIGKILL``), its log
file and what happens next; restarting it after the policy's delay, doubled for every fast
failure in a row (an exit within ``fast_failure`` seconds of its start) and given up after
``max_fast_failures`` of those; stopping children (SIGCONT, so a paused one can act on it,
then SIGTERM, SIGKILL after a deadline, and reaping, even when the wait is interrupted).

Children stay in the caller's process group on purpose: a terminal's Ctrl-C or hang-up, and
an outer ``kill`` of the group (a test's safety net, a CI job's timeout), reach them even when
the process that started them was killed before it could stop them.

Must never: know what the children are (no gRPC, no Raft: the caller prints their details
from ``on_started``), report an exit it caused (``kill``, ``stop``) as one, restart anything
once ``stop_all`` began, signal a process it did not start or one already reaped, or leave a
child running after ``stop`` / ``stop_all`` returns.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STOP_TIMEOUT = 10.0  # seconds a child gets after SIGTERM before SIGKILL


@dataclass(frozen=True)
class ChildSpec:
    """What to run for one child, and where its output goes (appended, across restarts)."""

    name: str
    command: tuple[str, ...]
    log_path: Path
    env: Mapping[str, str] | None = None  # None: the supervisor's environment


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
    paused: bool = False  # SIGSTOP sent, no SIGCONT since
    stopped: bool = False  # its exit was asked for (kill, stop): not reported, not restarted

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


def spawn(command: Sequence[str], log_path: Path,
          env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``command`` with stdin closed, stdout + stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env)


def stop_processes(processes: Iterable[subprocess.Popen[bytes]],
                   timeout: float = STOP_TIMEOUT) -> None:
    """SIGCONT + SIGTERM each running process, SIGKILL those alive after ``timeout``; reap
    all. Whatever interrupts the wait (a second Ctrl-C), none is left running."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            process.terminate()
    deadline = time.monotonic() + timeout
    try:
        for process in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.05, deadline - time.monotonic()))
    finally:
        for process in running:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()


def _seconds(value: float) -> str:
    return f"{value:g} s"


def print_line(line: str) -> None:
    """The default ``say``: one line on stdout, flushed (others read it as it comes)."""
    print(line, flush=True)


class Supervisor:
    """Start, signal, watch, restart and stop the children of ``specs`` under ``policy``.

    ``start`` / ``start_all`` run children; ``supervise``, called periodically, reports exits
    and starts due restarts; ``stop_all`` belongs in a ``finally``. ``reap`` alone reports
    exits without acting on them (for a caller that treats an exit as fatal, e.g. before a
    cluster is up). ``add`` adds a child or replaces its spec; ``respec``, when given, may
    replace it right before every start (a command that depends on that moment).
    """

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        policy: RestartPolicy,
        *,
        label: str = "process",
        env: Mapping[str, str] | None = None,
        on_started: Callable[[Child], None] | None = None,
        respec: Callable[[ChildSpec], ChildSpec] | None = None,
        say: Callable[[str], None] = print_line,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = {spec.name: Child(spec) for spec in specs}
        self.policy = policy
        self.label = label
        self.env = dict(env) if env is not None else None
        self.on_started = on_started
        self.respec = respec  # asked right before every start, restarts included
        self.say = say
        self.clock = clock
        self.stopping = False
        self.started_pids: list[int] = []  # every child ever started, in order

    def add(self, spec: ChildSpec) -> Child:
        """A new child, or a new spec for an existing one (a running process is kept)."""
        child = self.children.get(spec.name)
        if child is None:
            child = self.children[spec.name] = Child(spec)
        child.spec = spec
        return child

    def start(self, name: str) -> Child:
        """Start child ``name`` unless it runs (a paused one counts as running)."""
        child = self.children[name]
        if not child.alive:
            self._start(child)
        return child

    def start_all(self) -> None:
        for name in self.children:
            self.start(name)

    def signal(self, name: str, signum: int) -> None:
        """Send ``signum`` to child ``name`` if it runs; SIGSTOP / SIGCONT mark it paused."""
        child = self.children[name]
        if child.process is None or not child.alive:
            return
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(signum)
        if signum == signal.SIGSTOP:
            child.paused = True
        elif signum == signal.SIGCONT:
            child.paused = False

    def kill(self, names: Sequence[str], timeout: float = 30.0) -> None:
        """kill -9 every child in ``names`` at once, then reap them."""
        children = [self.children[name] for name in names]
        for child in children:
            child.stopped = True
            self.signal(child.spec.name, signal.SIGKILL)
        for child in children:
            if child.process is not None:
                child.process.wait(timeout=timeout)
            child.paused = False

    def stop(self, names: Sequence[str], timeout: float = STOP_TIMEOUT) -> None:
        """A clean stop of ``names``: SIGCONT + SIGTERM, SIGKILL after ``timeout``; reaped."""
        children = [self.children[name] for name in names]
        for child in children:
            child.stopped = True
            child.restart_at = None
        try:
            stop_processes([c.process for c in children if c.process is not None], timeout)
        finally:
            for child in children:
                child.paused = False

    def stop_all(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every child (``stop``); nothing is started or restarted afterwards."""
        self.stopping = True
        self.stop(list(self.children), timeout)

    def pids(self) -> dict[str, int]:
        """The pid of every running child, by name."""
        return {name: child.process.pid for name, child in self.children.items()
                if child.process is not None and child.alive}

    def active(self) -> bool:
        """Whether any child runs or has a restart scheduled."""
        return any(child.alive or child.restart_at is not None
                   for child in self.children.values())

    def reap(self) -> list[Exit]:
        """Children that exited on their own since the last call, each reported once."""
        now = self.clock()
        exits = []
        for child in self.children.values():
            process = child.process
            if child.stopped or process is None or process.poll() is None:
                continue
            exits.append(Exit(child.spec.name, process.pid, process.returncode,
                              now - child.started_at))
            child.process = None
            child.paused = False
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

    def _start(self, child: Child) -> None:
        if self.stopping:
            raise RuntimeError(f"{self.label} {child.spec.name}: not started, stopping")
        child.restart_at = None
        if self.respec is not None:
            child.spec = self.respec(child.spec)
        env = child.spec.env if child.spec.env is not None else self.env
        child.process = spawn(child.spec.command, child.spec.log_path, env)
        child.started_at = self.clock()
        child.paused = child.stopped = False
        self.started_pids.append(child.process.pid)
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
