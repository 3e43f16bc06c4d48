"""Durable Raft storage: one contract for ``MemoryStorage`` and ``RocksStorage``, reopening,
a RawNode running on RocksDB across a restart, and kill -9 in the middle of synced writes."""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from quorumlog.node.storage.raft_store import (
    HARD_STATE_KEY,
    TERM_RUNS_KEPT,
    LogBatch,
    RocksStorage,
    StaleBatch,
    StorageCorrupted,
    StorageNotEmpty,
    log_key,
)
from quorumlog.raft import (
    Compacted,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    RawNode,
    Ready,
    Snapshot,
    SnapshotMetadata,
    SnapshotTemporarilyUnavailable,
    StateRole,
    Unavailable,
    bootstrap_memory_storage,
)


class WritableStorage(Protocol):
    """What both storages offer: the core's read side plus MemoryStorage's write methods."""

    def initial_state(self) -> tuple[HardState, ConfState]: ...
    def first_index(self) -> int: ...
    def last_index(self) -> int: ...
    def term(self, index: int) -> int: ...
    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]: ...
    def snapshot(self) -> Snapshot: ...
    def set_hard_state(self, hard_state: HardState) -> None: ...
    def append(self, entries: list[Entry]) -> None: ...
    def apply_snapshot(self, snapshot: Snapshot) -> None: ...
    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot: ...
    def compact(self, compact_index: int) -> None: ...


def persist_ready(storage: WritableStorage, ready: Ready) -> None:
    """Step 1 of the Ready contract on either storage."""
    if isinstance(storage, RocksStorage):
        storage.write_ready(ready)
        return
    if ready.snapshot is not None:
        storage.apply_snapshot(ready.snapshot)
    storage.append(ready.entries)
    if ready.hard_state is not None:
        storage.set_hard_state(ready.hard_state)


def make_entries(lo: int, hi: int, term: int, size: int = 10) -> list[Entry]:
    """Entries ``[lo, hi)`` of ``term``, each ``size`` bytes telling its index and term."""
    return [Entry(term, index, _payload(index, term, size)) for index in range(lo, hi)]


def _payload(index: int, term: int, size: int) -> bytes:
    return f"{index}@{term};".encode().ljust(size, b"x")


def state_of(storage: WritableStorage) -> tuple[object, ...]:
    """Everything the core can observe, for comparing two storages."""
    first, last = storage.first_index(), storage.last_index()
    terms = [storage.term(index) for index in range(first - 1, last + 1)]
    return (
        storage.initial_state(),
        first,
        last,
        terms,
        storage.entries(first, last + 1),
        storage.snapshot(),
    )


@pytest.fixture(params=["memory", "rocks"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WritableStorage]:
    if request.param == "memory":
        yield MemoryStorage()
        return
    with RocksStorage(tmp_path / "db") as rocks:
        yield rocks


# -- the shared contract ---------------------------------------------------------------------------
def test_empty_storage(storage: WritableStorage) -> None:
    assert storage.initial_state() == (HardState(), ConfState())
    assert (storage.first_index(), storage.last_index()) == (1, 0)
    assert storage.term(0) == 0
    with pytest.raises(Unavailable):
        storage.term(1)
    assert storage.entries(1, 1) == []
    with pytest.raises(Unavailable):
        storage.entries(1, 2)
    assert storage.snapshot().is_empty()


def test_append_and_read(storage: WritableStorage) -> None:
    storage.append(make_entries(1, 6, term=1) + make_entries(6, 11, term=2))
    assert (storage.first_index(), storage.last_index()) == (1, 10)
    assert [storage.term(index) for index in range(0, 11)] == [0] + [1] * 5 + [2] * 5
    assert storage.entries(3, 8) == make_entries(3, 6, 1) + make_entries(6, 8, 2)
    assert storage.entries(4, 4) == []
    with pytest.raises(Unavailable):
        storage.term(11)
    with pytest.raises(Unavailable):
        storage.entries(5, 12)
    with pytest.raises(Compacted):
        storage.entries(0, 3)


def test_entry_types_and_empty_data_round_trip(storage: WritableStorage) -> None:
    entries = [
        Entry(1, 1, b""),
        Entry(1, 2, b"\x00\xff" * 100, EntryType.CONF_CHANGE),
        Entry(2**40, 3, b"big term"),
    ]
    storage.append(entries)
    assert storage.entries(1, 4) == entries


def test_entries_max_bytes_keeps_at_least_one(storage: WritableStorage) -> None:
    storage.append(make_entries(1, 11, term=1, size=84))  # each counts 84 + 16 = 100 bytes
    assert len(storage.entries(1, 11, max_bytes=0)) == 1
    assert len(storage.entries(1, 11, max_bytes=99)) == 1
    assert len(storage.entries(1, 11, max_bytes=100)) == 1
    assert len(storage.entries(1, 11, max_bytes=199)) == 1
    assert len(storage.entries(1, 11, max_bytes=200)) == 2
    assert len(storage.entries(1, 11, max_bytes=350)) == 3
    assert len(storage.entries(1, 11, max_bytes=10_000)) == 10
    assert len(storage.entries(1, 11, max_bytes=None)) == 10
    assert storage.entries(4, 11, max_bytes=250) == make_entries(4, 6, term=1, size=84)
    # A single oversized entry still comes back alone.
    storage.append([Entry(1, 11, b"y" * 5000)])
    assert storage.entries(11, 12, max_bytes=10) == [Entry(1, 11, b"y" * 5000)]


def test_append_truncates_conflicting_suffix(storage: WritableStorage) -> None:
    storage.append(make_entries(1, 11, term=1))
    storage.append(make_entries(4, 6, term=2))
    assert storage.last_index() == 5
    assert [storage.term(index) for index in range(1, 6)] == [1, 1, 1, 2, 2]
    with pytest.raises(Unavailable):
        storage.term(6)
    with pytest.raises(Unavailable):
        storage.entries(1, 7)
    assert storage.entries(1, 6) == make_entries(1, 4, 1) + make_entries(4, 6, 2)
    # Appending right after the end extends; replacing the very last entry works too.
    storage.append(make_entries(6, 8, term=3))
    storage.append(make_entries(7, 8, term=4))
    assert [storage.term(index) for index in range(5, 8)] == [2, 3, 4]
    # A long truncation (beyond the point-delete limit) behaves the same.
    storage.append(make_entries(8, 200, term=4))
    storage.append(make_entries(3, 4, term=5))
    assert storage.last_index() == 3
    assert storage.entries(1, 4) == make_entries(1, 3, 1) + make_entries(3, 4, 5)


def test_append_with_a_gap_is_refused(storage: WritableStorage) -> None:
    storage.append(make_entries(1, 4, term=1))
    with pytest.raises(Unavailable):
        storage.append(make_entries(6, 8, term=1))
    assert storage.last_index() == 3


def test_compact(storage: WritableStorage) -> None:
    storage.append(make_entries(1, 11, term=1) + make_entries(11, 21, term=2))
    storage.compact(12)
    assert (storage.first_index(), storage.last_index()) == (13, 20)
    assert storage.term(12) == 2
    assert storage.term(13) == 2
    with pytest.raises(Compacted):
        storage.term(11)
    with pytest.raises(Compacted):
        storage.entries(12, 14)
    assert storage.entries(13, 21) == make_entries(13, 21, term=2)
    with pytest.raises(Compacted):
        storage.compact(12)
    with pytest.raises(Compacted):
        storage.compact(5)
    with pytest.raises(Unavailable):
        storage.compact(21)
    # Compacting everything leaves an empty log that still knows its last (index, term).
    storage.compact(20)
    assert (storage.first_index(), storage.last_index()) == (21, 20)
    assert storage.term(20) == 2
    with pytest.raises(Unavailable):
        storage.term(21)
    storage.append(make_entries(21, 23, term=3))
    assert storage.entries(21, 23) == make_entries(21, 23, term=3)


def test_append_below_the_compaction_point_is_trimmed(storage: WritableStorage) -> None:
    storage.append(make_entries(1, 11, term=1))
    storage.compact(5)
    storage.append(make_entries(1, 4, term=1))  # wholly compacted: ignored
    assert (storage.first_index(), storage.last_index()) == (6, 10)
    storage.append(make_entries(3, 9, term=2))  # 3..5 dropped, 6..8 replace, 9..10 truncated
    assert (storage.first_index(), storage.last_index()) == (6, 8)
    assert storage.entries(6, 9) == make_entries(6, 9, term=2)
    assert storage.term(5) == 1


def test_create_snapshot(storage: WritableStorage) -> None:
    storage.append(make_entries(1, 6, term=1) + make_entries(6, 11, term=3))
    conf = ConfState((1, 2, 3), (4,))
    snapshot = storage.create_snapshot(7, conf, b"state at 7")
    assert snapshot == Snapshot(SnapshotMetadata(7, 3, conf), b"state at 7")
    assert storage.snapshot() == snapshot
    assert storage.initial_state()[1] == conf
    assert storage.first_index() == 1  # creating a snapshot does not compact
    with pytest.raises(SnapshotTemporarilyUnavailable):
        storage.create_snapshot(7, conf, b"again")
    with pytest.raises(SnapshotTemporarilyUnavailable):
        storage.create_snapshot(3, conf, b"older")
    with pytest.raises(Unavailable):
        storage.create_snapshot(11, conf, b"beyond")
    storage.compact(7)
    assert storage.term(7) == 3
    assert storage.snapshot() == snapshot


def test_apply_snapshot_replaces_the_log(storage: WritableStorage) -> None:
    storage.append(make_entries(1, 11, term=1))
    conf = ConfState((1, 2, 3))
    snapshot = Snapshot(SnapshotMetadata(50, 4, conf), b"caught up")
    storage.apply_snapshot(snapshot)
    assert (storage.first_index(), storage.last_index()) == (51, 50)
    assert storage.term(50) == 4
    with pytest.raises(Compacted):
        storage.term(10)
    with pytest.raises(Unavailable):
        storage.term(51)
    assert storage.snapshot() == snapshot
    assert storage.initial_state()[1] == conf
    with pytest.raises(SnapshotTemporarilyUnavailable):
        storage.apply_snapshot(Snapshot(SnapshotMetadata(50, 4, conf)))
    with pytest.raises(Unavailable):
        storage.append(make_entries(52, 53, term=4))
    storage.append(make_entries(51, 54, term=4))
    assert storage.entries(51, 54) == make_entries(51, 54, term=4)
    # A snapshot behind the log's end still drops every entry.
    storage.apply_snapshot(Snapshot(SnapshotMetadata(52, 4, conf), b"x"))
    assert (storage.first_index(), storage.last_index()) == (53, 52)


def test_snapshot_then_entries_in_one_ready(storage: WritableStorage) -> None:
    storage.append(make_entries(1, 4, term=1))
    snapshot = Snapshot(SnapshotMetadata(10, 2, ConfState((1, 2))), b"s")
    ready = Ready(
        hard_state=HardState(3, 2, 10),
        entries=make_entries(11, 14, term=3),
        snapshot=snapshot,
        must_sync=True,
    )
    persist_ready(storage, ready)
    assert storage.initial_state() == (HardState(3, 2, 10), ConfState((1, 2)))
    assert (storage.first_index(), storage.last_index()) == (11, 13)
    assert storage.term(10) == 2
    assert storage.entries(11, 14) == make_entries(11, 14, term=3)


def test_hard_state(storage: WritableStorage) -> None:
    storage.set_hard_state(HardState(7, 3, 0))
    storage.set_hard_state(HardState(2**63, 2**32, 0))
    assert storage.initial_state()[0] == HardState(2**63, 2**32, 0)


# -- differential: random operations, both storages agree, and a reopen changes nothing ------------
def _random_operation(rng: random.Random, storage: WritableStorage, step: int) -> None:
    first, last = storage.first_index(), storage.last_index()
    term = step // 5 + 1
    choice = rng.random()
    if choice < 0.45:
        start = rng.randint(max(first, last - 5), last + 1)
        count = rng.randint(1, 8)
        storage.append(make_entries(start, start + count, term, size=rng.randint(0, 40)))
    elif choice < 0.6:
        storage.set_hard_state(HardState(term, rng.randint(0, 3), rng.randint(0, last)))
    elif choice < 0.72 and last >= first:
        storage.compact(rng.randint(first, last))
    elif choice < 0.84 and last > storage.snapshot().metadata.index:
        index = rng.randint(max(first - 1, storage.snapshot().metadata.index + 1), last)
        storage.create_snapshot(index, ConfState((1, 2, 3)), rng.randbytes(rng.randint(0, 50)))
    elif choice < 0.9:
        index = max(last, storage.snapshot().metadata.index) + rng.randint(1, 5)
        metadata = SnapshotMetadata(index, term, ConfState((1, 2), (3,)))
        storage.apply_snapshot(Snapshot(metadata, rng.randbytes(10)))


@pytest.mark.parametrize("seed", range(6))
def test_rocks_matches_memory_across_random_operations_and_reopens(
    seed: int, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    memory = MemoryStorage()
    rocks = RocksStorage(tmp_path / "db")
    try:
        for step in range(150):
            operation_seed = rng.random()
            _random_operation(random.Random(operation_seed), memory, step)
            _random_operation(random.Random(operation_seed), rocks, step)
            assert state_of(rocks) == state_of(memory), f"seed {seed} step {step}"
            if rng.random() < 0.1:
                rocks.close()
                rocks = RocksStorage(tmp_path / "db")
                assert state_of(rocks) == state_of(memory), f"seed {seed} reopen at {step}"
    finally:
        rocks.close()


# -- RocksStorage only ---------------------------------------------------------------------------
def test_reopen_restores_everything(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with RocksStorage(path) as rocks:
        rocks.append(make_entries(1, 31, term=1) + make_entries(31, 61, term=2))
        rocks.set_hard_state(HardState(2, 1, 55))
        rocks.create_snapshot(40, ConfState((1, 2, 3)), b"state machine at 40")
        rocks.compact(35)
        rocks.append(make_entries(58, 70, term=3))
        before = state_of(rocks)
    with RocksStorage(path) as rocks:
        assert state_of(rocks) == before
        assert (rocks.first_index(), rocks.last_index()) == (36, 69)
        assert rocks.term(35) == 2
        assert rocks.initial_state() == (HardState(2, 1, 55), ConfState((1, 2, 3)))
        assert rocks.snapshot().data == b"state machine at 40"
    with RocksStorage(path) as rocks:
        rocks.apply_snapshot(Snapshot(SnapshotMetadata(100, 5, ConfState((1,))), b"s100"))
        before = state_of(rocks)
    with RocksStorage(path) as rocks:
        assert state_of(rocks) == before
        assert (rocks.first_index(), rocks.last_index()) == (101, 100)


@pytest.mark.parametrize("suffix", [3, 500])  # point deletes, and a range delete
def test_truncated_suffix_stays_gone_after_reopen(tmp_path: Path, suffix: int) -> None:
    path = tmp_path / "db"
    with RocksStorage(path) as rocks:
        rocks.append(make_entries(1, 11 + suffix, term=1))
        rocks.append(make_entries(8, 11, term=2))
    with RocksStorage(path) as rocks:
        assert rocks.last_index() == 10
        assert rocks.entries(1, 11) == make_entries(1, 8, 1) + make_entries(8, 11, 2)
        assert rocks.db.get(log_key(11)) is None


def test_bootstrap_matches_memory_and_refuses_non_empty(tmp_path: Path) -> None:
    with RocksStorage(tmp_path / "a") as rocks:
        rocks.bootstrap((3, 1, 2))
        assert state_of(rocks) == state_of(bootstrap_memory_storage((3, 1, 2)))
        with pytest.raises(StorageNotEmpty):
            rocks.bootstrap((1, 2, 3))
    with RocksStorage(tmp_path / "a") as rocks:
        assert state_of(rocks) == state_of(bootstrap_memory_storage((1, 2, 3)))
        with pytest.raises(StorageNotEmpty):
            rocks.bootstrap((1, 2, 3))
    with RocksStorage(tmp_path / "b") as rocks:  # another prefix's key makes it non-empty too
        batch = rocks.batch()
        batch.put(b"s/orders/0", b"hello")
        rocks.write(batch, sync=True)
        with pytest.raises(StorageNotEmpty):
            rocks.bootstrap((1,))


def test_other_prefixes_share_the_atomic_write(tmp_path: Path) -> None:
    with RocksStorage(tmp_path / "db") as rocks:
        batch = rocks.batch()
        batch.append(make_entries(1, 4, term=1))
        batch.set_hard_state(HardState(1, 1, 3))
        batch.put(b"s/orders/\x00", b"first message")
        batch.put(b"c/orders/billing", b"cursor")
        assert rocks.last_index() == 0  # nothing visible before the write
        assert rocks.db.get(b"s/orders/\x00") is None
        rocks.write(batch, sync=True)
        assert rocks.last_index() == 3
        assert rocks.db.get(b"s/orders/\x00") == b"first message"
        for reserved in (b"m/anything", b"l/\x00", HARD_STATE_KEY):
            with pytest.raises(ValueError, match="reserved"):
                rocks.batch().put(reserved, b"x")
            with pytest.raises(ValueError, match="reserved"):
                rocks.batch().delete(reserved)
        with pytest.raises(ValueError, match="overlaps"):
            rocks.batch().delete_range(b"a", b"z")
        cleanup = rocks.batch()
        cleanup.delete_range(b"c/", b"c0")
        cleanup.delete(b"s/orders/\x00")
        rocks.write(cleanup, sync=False)
        assert rocks.db.get(b"c/orders/billing") is None
        assert rocks.db.get(b"s/orders/\x00") is None
        assert rocks.entries(1, 4) == make_entries(1, 4, term=1)


def test_stale_batch_is_refused(tmp_path: Path) -> None:
    with RocksStorage(tmp_path / "db") as rocks:
        stale = rocks.batch()
        stale.append(make_entries(1, 3, term=1))
        rocks.append(make_entries(1, 2, term=2))
        with pytest.raises(StaleBatch):
            rocks.write(stale, sync=True)
        batch = rocks.batch()
        batch.append(make_entries(2, 3, term=2))
        rocks.write(batch, sync=True)
        with pytest.raises(StaleBatch):
            rocks.write(batch, sync=True)  # a batch is written once
        assert rocks.entries(1, 3) == make_entries(1, 3, term=2)


def test_failed_validation_changes_nothing(tmp_path: Path) -> None:
    with RocksStorage(tmp_path / "db") as rocks:
        rocks.append(make_entries(1, 4, term=1))
        batch = rocks.batch()
        batch.set_hard_state(HardState(5, 1, 2))
        with pytest.raises(Unavailable):
            batch.append(make_entries(9, 10, term=1))
        # The caller drops the batch: nothing reached the disk or the positions.
        assert rocks.initial_state()[0] == HardState()
        assert rocks.last_index() == 3


def test_write_ready_syncs_exactly_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []
    original = RocksStorage.write

    def spy(self: RocksStorage, batch: LogBatch, *, sync: bool) -> None:
        calls.append(sync)
        original(self, batch, sync=sync)

    monkeypatch.setattr(RocksStorage, "write", spy)
    with RocksStorage(tmp_path / "db") as rocks:
        rocks.write_ready(Ready(hard_state=HardState(1, 0, 0), must_sync=False))
        rocks.write_ready(Ready(entries=make_entries(1, 3, term=1), must_sync=True))
    assert calls == [False, True]


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    with RocksStorage(tmp_path / "db") as rocks:
        rocks.db.put(b"m/format", b"\x63")
    with pytest.raises(StorageCorrupted, match="format"):
        RocksStorage(tmp_path / "db")


def test_python_memory_does_not_grow_with_the_log(tmp_path: Path) -> None:
    with RocksStorage(tmp_path / "db") as rocks:
        rocks.append(make_entries(1, 101, term=1, size=1000))
        tracemalloc.start()
        try:
            baseline, _ = tracemalloc.get_traced_memory()
            index = 101
            for term in range(2, 202):  # 200 terms x 25 entries x 1 kB = 5 MB of log
                batch = make_entries(index, index + 25, term, size=1000)
                rocks.append(batch, sync=False)
                index += 25
            grown, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert rocks.last_index() == 5100
        assert grown - baseline < 256 * 1024, f"Python memory grew by {grown - baseline} bytes"
        assert len(rocks._state.term_runs) <= TERM_RUNS_KEPT
        # Terms older than the in-memory runs are still answered, from RocksDB.
        assert rocks.term(150) == 3
        assert rocks.term(5100) == 201
        assert rocks.entries(150, 151) == make_entries(150, 151, term=3, size=1000)


# -- a RawNode on RocksDB, across a restart --------------------------------------------------------
def _run_until_idle(node: RawNode, storage: RocksStorage) -> list[Entry]:
    committed: list[Entry] = []
    while node.has_ready():
        ready = node.ready()
        storage.write_ready(ready)
        committed += ready.committed_entries
        node.advance(ready)
    return committed


def test_rawnode_single_node_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "node1"
    proposed = [f"message {number}".encode() * (number % 7 + 1) for number in range(300)]
    with RocksStorage(path) as storage:
        storage.bootstrap((1,))
        node = RawNode(Config(id=1, rng=random.Random(1), applied=1), storage)
        node.campaign()
        applied = _run_until_idle(node, storage)
        assert node.raft.role is StateRole.LEADER
        for number, data in enumerate(proposed[:100]):
            node.propose(data)
            if number % 10 == 0:
                applied += _run_until_idle(node, storage)
        node.propose_batch(proposed[100:])
        applied += _run_until_idle(node, storage)
        assert [entry.data for entry in applied if entry.data] == proposed
        term, last = node.raft.term, node.raft.log.last_index()
        assert storage.initial_state()[0].commit == last
    with RocksStorage(path) as storage:
        assert storage.initial_state()[0] == HardState(term, 1, last)
        assert storage.last_index() == last
        node = RawNode(Config(id=1, rng=random.Random(2), applied=1), storage)
        replayed = _run_until_idle(node, storage)
        assert [entry.data for entry in replayed if entry.data] == proposed
        node.campaign()
        _run_until_idle(node, storage)
        assert node.raft.role is StateRole.LEADER and node.raft.term > term
        _, index = node.propose(b"after restart")
        assert _run_until_idle(node, storage)[-1] == Entry(node.raft.term, index, b"after restart")


# -- kill -9 in the middle of synced writes -------------------------------------------------------
CRASH_WRITER = textwrap.dedent(
    """
    import sys
    from quorumlog.node.storage.raft_store import RocksStorage
    from quorumlog.raft import Entry, HardState

    path, term = sys.argv[1], int(sys.argv[2])

    def payload(index, term):
        return (b"%d@%d;" % (index, term)) * (index % 13 + 1)

    storage = RocksStorage(path)
    index = storage.last_index() + 1
    batch_number = 0
    while True:
        count = batch_number % 5 + 1
        batch = storage.batch()
        batch.append([Entry(term, i, payload(i, term)) for i in range(index, index + count)])
        batch.set_hard_state(HardState(term, 1, index + count - 1))
        batch.put(b"s/last", b"%d" % (index + count - 1))
        storage.write(batch, sync=True)
        sys.stdout.write("%d %d\\n" % (index + count - 1, term))
        sys.stdout.flush()
        index += count
        batch_number += 1
    """
)


def _crash_payload(index: int, term: int) -> bytes:
    return (b"%d@%d;" % (index, term)) * (index % 13 + 1)


def _run_writer_and_kill(path: Path, term: int, kill_after: int) -> list[tuple[int, int]]:
    """Start the writer, SIGKILL it after ``kill_after`` acknowledgements; return them all."""
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, str(path), str(term)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    lines: queue.Queue[bytes | None] = queue.Queue()

    def pump() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    acknowledged: list[tuple[int, int]] = []
    deadline = time.monotonic() + 120
    try:
        while len(acknowledged) < kill_after:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"writer acknowledged only {len(acknowledged)} batches in time")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                assert child.stderr is not None
                pytest.fail(f"writer exited early: {child.stderr.read().decode()[-2000:]}")
            index, line_term = map(int, line.split())
            acknowledged.append((index, line_term))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
        assert child.returncode == -signal.SIGKILL
        reader.join(timeout=60)
        # Lines written before the kill are acknowledgements too.
        while (line := lines.get(timeout=60)) is not None:
            index, line_term = map(int, line.split())
            acknowledged.append((index, line_term))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    return acknowledged


def test_every_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "db"
    acknowledged_terms: dict[int, int] = {}  # last index of an acknowledged batch -> term
    highest = 0
    for round_number, kill_after in enumerate((25, 60, 1, 120, 7, 200)):
        term = round_number + 1
        acknowledged = _run_writer_and_kill(path, term, kill_after)
        assert len(acknowledged) >= kill_after
        assert [index for index, _ in acknowledged] == sorted(index for index, _ in acknowledged)
        acknowledged_terms.update(acknowledged)
        highest = acknowledged[-1][0]
        with RocksStorage(path) as storage:
            last = storage.last_index()
            assert last >= highest, f"round {round_number}: acknowledged {highest}, log {last}"
            log = storage.entries(1, last + 1)  # raises StorageCorrupted on any gap
            assert [entry.index for entry in log] == list(range(1, last + 1))
            for entry in log:
                assert entry.data == _crash_payload(entry.index, entry.term), entry.index
            for index, index_term in acknowledged_terms.items():
                assert storage.term(index) == index_term
            hard_state = storage.initial_state()[0]
            assert hard_state.commit >= highest
            # The hard state, the log and the other prefix's key were written atomically.
            assert hard_state.commit == last
            assert hard_state.term == storage.term(last)
            assert storage.db.get(b"s/last") == b"%d" % last

