"""Child processes of a benchmark run, and the machine's load next to every figure.

Owns: the benchmarks' 3-node quorumlog cluster (``local_cluster``: ``quorumlog bench``'s local
cluster through the launcher, ``quorumlog.node.process.launcher``, with its data in a new
directory that is deleted afterwards); a registry of the other servers a benchmark starts
(etcd) that stops every one of them (SIGTERM, then SIGKILL after a timeout, then reaping;
``quorumlog.node.process.supervisor.stop_processes``) on normal exit, exception, Ctrl-C or
SIGTERM; the load average and CPU time. Must never: stop a process it did not start, or
return from ``stop_all`` while a child it started is still running.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from quorumlog.client.cli import CliError
from quorumlog.client.cli.bench import local_cluster as bench_cluster
from quorumlog.client.cli.bench import sigterm_as_interrupt
from quorumlog.node.process.launcher import Launcher
from quorumlog.node.process.supervisor import spawn, stop_processes


class Processes:
    """A registry of started children; a context manager that stops them all on exit."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, command: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
        process = spawn(command, log_path, {**os.environ, "PYTHONUNBUFFERED": "1"})
        self.started.append(process)
        return process

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.started]

    def running(self) -> list[int]:
        return [process.pid for process in self.started if process.poll() is None]

    def stop_all(self) -> None:
        stop_processes(self.started)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop_all()


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (the machine is shared: note them with figures)."""
    return [round(value, 2) for value in os.getloadavg()]


def report_of(name: str, work: Callable[[], dict[str, Any]], *, as_json: bool,
              human: Callable[[dict[str, Any]], str],
              failures: tuple[type[Exception], ...] = (CliError,)) -> int:
    """Run a script's ``work`` (SIGTERM acts as Ctrl-C) and print its report: exit 0; 1 on
    ``failures``, 130 when interrupted (``work`` has stopped its processes by then)."""
    try:
        with sigterm_as_interrupt():
            report = work()
    except failures as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted; every process stopped, data deleted", file=sys.stderr)
        return 130
    print(json.dumps(report) if as_json else human(report))
    return 0


READY_TIMEOUT = 60.0


@contextlib.contextmanager
def local_cluster(prefix: str, data_root: Path | None, extra: Sequence[str] = ()
                  ) -> Iterator[Launcher]:
    """A 3-node quorumlog cluster with a leader, data in a new directory under ``data_root``;
    on exit every node it ever started is stopped and the data deleted."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=data_root))
    try:
        with bench_cluster(3, root, extra, ready_timeout=READY_TIMEOUT) as (cluster, _):
            yield cluster
    finally:
        shutil.rmtree(root, ignore_errors=True)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used (all threads), None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by the servers and by this (client) process between ``start`` and ``report``:
    the per-message cost that a 2-core machine's throughput is the inverse of."""

    def __init__(self, server_pids: Sequence[int]) -> None:
        self.server_pids = list(server_pids)
        self._start: dict[int, float | None] = {}

    def _read(self) -> dict[int, float | None]:
        return {pid: cpu_seconds(pid) for pid in [*self.server_pids, os.getpid()]}

    def start(self) -> None:
        self._start = self._read()

    def report(self, messages: int) -> dict[str, float | None]:
        end = self._read()

        def per_message(pids: list[int]) -> float | None:
            used = [(end.get(pid), self._start.get(pid)) for pid in pids]
            if messages <= 0 or any(a is None or b is None for a, b in used):
                return None
            return round(sum(a - b for a, b in used if a is not None and b is not None)
                         / messages * 1e6, 1)

        return {"server_cpu_us_per_message": per_message(self.server_pids),
                "client_cpu_us_per_message": per_message([os.getpid()])}
