"""Helpers of the operations tests (membership, backup/restore, rolling restart, netns).

Owns: running the ``quorumlog`` command line as a subprocess, reading a node's view of the
membership, and a bounded write load through the SDK that records every acknowledged append
so a test can prove none was lost. Must never: wait without a deadline or run unbounded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from cluster_harness import LocalCluster

from quorumlog.client import Client, errors
from quorumlog.client.sdk import Consistency

CLI_TIMEOUT = 120.0  # per CLI run; generous for a loaded 2-core machine


def cli(*args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "QUORUMLOG_CLUSTER"}
    return subprocess.run(
        [sys.executable, "-m", "quorumlog.client.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=environment, check=False,
    )


def members(cluster: LocalCluster, name: str) -> dict[str, str]:
    """``{member: "voter" | "learner"}`` as node ``name`` reports it."""
    status = cluster.status(name, timeout=5.0)
    return {m.id: "voter" if m.voter else "learner" for m in status.members}


def read_all(client: Client, session: str, consistency: Consistency) -> list[bytes]:
    records: list[bytes] = []
    offset = 0
    while True:
        try:
            page = client.read(session, offset, consistency=consistency)
        except errors.NotFound:
            return records
        records.extend(record.data for record in page.records)
        if not page.records:
            return records
        offset = page.next_offset


@dataclass
class WriteLoad:
    """Appends ``session-<i % sessions>``: ``op-<i>`` from one thread, at most ``limit`` ops
    or ``seconds``; every acknowledged offset and every failure is recorded."""

    addresses: list[str]
    sessions: int = 4
    limit: int = 20_000
    seconds: float = 120.0
    deadline: float = 30.0  # per append, retries included (SDK)
    acknowledged: dict[str, dict[int, bytes]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    done: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> WriteLoad:
        self._thread = threading.Thread(target=self._run, name="write-load", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        end = time.monotonic() + self.seconds
        with Client(self.addresses, deadline=self.deadline) as client:
            for i in range(self.limit):
                if self._stop.is_set() or time.monotonic() > end:
                    return
                session = f"session-{i % self.sessions}"
                payload = f"op-{i}".encode()
                try:
                    result = client.append(session, payload)
                except errors.QuorumLogError as error:
                    self.failures.append(f"{session} {payload!r}: {error.code} {error}")
                    continue
                self.acknowledged.setdefault(session, {})[result.first_offset] = payload
                self.done += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.deadline + 30)
            assert not self._thread.is_alive(), "write load did not stop"

    def lost(self, client: Client) -> list[str]:
        """Acknowledged appends not found at their offset (linearizable reads)."""
        missing = []
        for session, written in self.acknowledged.items():
            stored = read_all(client, session, Consistency.LINEARIZABLE)
            for offset, payload in written.items():
                if offset >= len(stored) or stored[offset] != payload:
                    missing.append(f"{session}@{offset}={payload!r}")
        return missing
