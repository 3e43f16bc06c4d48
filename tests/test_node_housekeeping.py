"""``quorumlog.node.process.priority``, ``housekeeping`` and the direct-I/O choice of ``storage``:
RocksDB's background threads run at a lower priority (and nothing else does), a failing chore
never stops the others, and the log works with and without O_DIRECT flushes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from waiting import wait_until

from quorumlog.node.process import housekeeping
from quorumlog.node.process.priority import BACKGROUND_NICE
from quorumlog.node.storage import raft_store as storage
from quorumlog.node.storage.raft_store import RocksStorage, supports_direct_io
from quorumlog.raft.types import Entry

PRIORITY_PROBE = """
import json, os, sys
from quorumlog.node.process.priority import lower_rocksdb_threads, rocksdb_threads
from quorumlog.node.storage.raft_store import RocksStorage
db = RocksStorage(sys.argv[1])
nice = lambda t: os.getpriority(os.PRIO_PROCESS, t)
before = [nice(t) for t in rocksdb_threads()]
changed = lower_rocksdb_threads()
print(json.dumps({"before": before, "changed": changed,
                  "after": [nice(t) for t in rocksdb_threads()],
                  "again": lower_rocksdb_threads(), "main": nice(0)}))
db.close()
"""


def test_only_rocksdb_background_threads_are_lowered(tmp_path: Path) -> None:
    # A child process: nice values cannot be raised back, so the test process stays as is.
    result = subprocess.run([sys.executable, "-c", PRIORITY_PROBE, str(tmp_path / "db")],
                            capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(result.stdout)
    assert report["before"] and set(report["before"]) == {0}, report
    assert report["changed"] == len(report["before"])
    assert set(report["after"]) == {BACKGROUND_NICE}
    assert report["again"] == 0  # already lowered: nothing to do
    assert report["main"] == 0  # the event loop's thread keeps its priority


def test_a_failing_chore_is_dropped_and_the_others_go_on() -> None:
    runs = {"good": 0, "bad": 0}
    lock = threading.Lock()

    def good() -> None:
        with lock:
            runs["good"] += 1

    def bad() -> None:
        with lock:
            runs["bad"] += 1
        raise RuntimeError("chore bug")

    thread = housekeeping.start(0.01, [bad, good])
    assert thread.daemon
    wait_until(lambda: runs["good"] >= 5, timeout=30, what="the good chore ran 5 times")
    assert runs["bad"] == 1


def test_direct_io_probe_says_no_when_o_direct_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refuse_direct(path: object, flags: int, *args: object) -> int:
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(22, "Invalid argument")
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(storage.os, "open", refuse_direct)
    assert supports_direct_io(tmp_path) is False
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind


@pytest.mark.parametrize("direct", [True, False])
def test_the_log_flushes_and_reopens_with_and_without_direct_io(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    if direct:
        assert supports_direct_io(tmp_path), "this suite expects a file system with O_DIRECT"
    else:
        monkeypatch.setattr(storage, "supports_direct_io", lambda directory: False)
    path = tmp_path / "db"
    db = RocksStorage(path)
    entries = [Entry(1, index, os.urandom(200)) for index in range(1, 5001)]
    batch = db.batch()
    batch.append(entries)
    db.write(batch, sync=True)
    db.db.flush()  # an SST written by a background flush (O_DIRECT when direct)
    db.close()
    again = RocksStorage(path)
    try:
        assert again.last_index() == 5000
        assert again.entries(4990, 5001, None) == entries[4989:]
    finally:
        again.close()
