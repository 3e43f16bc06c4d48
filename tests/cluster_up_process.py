"""``quorumlog cluster up`` as a subprocess for tests of the launcher and its supervision.

Owns: starting ``cluster up`` (any command line) in its own process group (a free base port
for its layout, base..base+N-1 for clients, base+100.. for peers and base+200.. for metrics,
is the launcher's ``free_base_port``), reading its stdout line by line with arrival times,
parsing its node lines (``n1: client ADDR peer ADDR metrics ADDR pid PID log PATH``; the
metrics part optional), deadline-bounded waits for lines and conditions, and killing the whole
process group (cluster up and its nodes) in a ``finally``.
Must never: wait with a bare sleep for something to happen, or leave a process behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from quorumlog.node.process.launcher import free_base_port

__all__ = ["ClusterUp", "GroupProcess", "Line", "addresses", "cluster_up", "free_base_port",
           "pid_gone", "up_command", "wait_for"]

NODE_LINE = re.compile(
    r"^(?P<name>n\d+): client (?P<client>\S+) peer (?P<peer>\S+)"
    r"(?: metrics (?P<metrics>\S+))? pid (?P<pid>\d+) "
    r"log (?P<log>.+)$"
)


def addresses(base: int, nodes: int = 3) -> str:
    """The client addresses of ``cluster up --base-port base`` (a ``--cluster`` value)."""
    return ",".join(f"127.0.0.1:{base + i}" for i in range(nodes))


def up_command(data_dir: Path, base: int, *flags: str, nodes: int = 3) -> list[str]:
    """``quorumlog cluster up`` of this checkout (``python -m``) on ``--base-port base``."""
    return [
        sys.executable, "-m", "quorumlog.client.cli", "cluster", "up", "--nodes", str(nodes),
        "--data-dir", str(data_dir), "--base-port", str(base), *flags,
    ]


def pid_gone(pid: int) -> bool:
    """The process no longer runs (gone, or a zombie waiting to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` (exceptions count as "not yet") until it holds or fail."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception as error:
            last_error = error
        time.sleep(0.05)  # polling interval of a deadline-bounded wait
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} ({last_error})")


@dataclass(frozen=True)
class Line:
    index: int
    at: float  # time.monotonic() when it was read
    text: str


@dataclass(frozen=True)
class NodeLine:
    name: str
    pid: int
    log: str
    at: float
    metrics: str = ""  # the announced metrics address ("" when the line has none)


class OutputLines:
    """A text stream read by a thread into a list of timestamped lines."""

    def __init__(self, stream: Iterator[str] | None) -> None:
        self.lines: list[Line] = []
        self.finished = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Iterator[str] | None) -> None:
        for text in stream or ():
            with self._changed:
                self.lines.append(Line(len(self.lines), time.monotonic(), text.rstrip("\n")))
                self._changed.notify_all()
        with self._changed:
            self.finished = True
            self._changed.notify_all()

    def wait_line(self, matches: Callable[[str], bool], timeout: float, what: str,
                  after: int = 0) -> Line:
        """The first line at index >= ``after`` that ``matches``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[after:]:
                    if matches(line.text):
                        return line
                remaining = deadline - time.monotonic()
                if self.finished or remaining <= 0:
                    raise AssertionError(f"no line for {what} within {timeout:g}s; got:\n"
                                         + self.text())
                self._changed.wait(remaining)

    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class GroupProcess:
    """A command in its own process group (session), stdout read by ``OutputLines``."""

    def __init__(self, command: Sequence[str], cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            list(command), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.output = OutputLines(self.process.stdout)

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self.output.join(timeout=10)
        return code

    def kill_everything(self) -> None:
        """Safety net: SIGKILL the whole group (it may outlive its leader), reap, close."""
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


class ClusterUp(GroupProcess):
    """``quorumlog cluster up`` (or any command that prints its lines) in its own group."""

    ready: Line | None = None  # the ``cluster ready: leader <id>`` line, once ``wait_ready`` saw it

    def node_lines(self, after: int = 0) -> list[NodeLine]:
        found = []
        for line in self.output.lines[after:]:
            match = NODE_LINE.match(line.text)
            if match:
                found.append(NodeLine(match["name"], int(match["pid"]), match["log"], line.at,
                                      match["metrics"] or ""))
        return found

    def wait_ready(self, timeout: float = 60.0) -> tuple[str, dict[str, int]]:
        """The first leader and each node's pid, from the lines up to ``cluster ready``."""
        ready = self.output.wait_line(lambda text: text.startswith("cluster ready: leader "),
                                      timeout, "cluster ready")
        self.ready = ready
        pids = {node.name: node.pid for node in self.node_lines() if node.at <= ready.at}
        return ready.text.removeprefix("cluster ready: leader "), pids

    def lines_before_ready(self) -> list[str]:
        """Every line printed before ``cluster ready`` (call ``wait_ready`` first)."""
        assert self.ready is not None, "wait_ready first"
        return [line.text for line in self.output.lines[:self.ready.index]]

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60.0) -> tuple[int, list[str]]:
        """``signum`` to cluster up alone (it stops its nodes); its exit code and the lines
        printed after ``cluster ready``."""
        self.process.send_signal(signum)
        code = self.wait(timeout)
        after = self.ready.index + 1 if self.ready is not None else 0
        return code, [line.text for line in self.output.lines[after:]]

    def wait_restarted(self, name: str, after: int, timeout: float) -> NodeLine:
        """The node line printed when ``name`` was started again (after line ``after``)."""
        prefix = f"{name}: client "
        line = self.output.wait_line(lambda text: text.startswith(prefix), timeout,
                                     f"{name} restarted", after=after)
        (node,) = self.node_lines(after=line.index)[:1]
        return node


@contextmanager
def cluster_up(command: Sequence[str], cwd: Path | None = None,
               env: dict[str, str] | None = None) -> Iterator[ClusterUp]:
    up = ClusterUp(command, cwd, env)
    try:
        yield up
    except BaseException:
        print(up.output.text())
        raise
    finally:
        up.kill_everything()
