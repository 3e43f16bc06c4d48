"""The ``LogStore`` contract, run against ``RocksStorage`` and ``MemoryLogStore`` alike, plus
what "durable" means for the in-memory store (a simulated crash drops unsynced writes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from quorumlog.node.storage.log_store import (
    Bootstrappable,
    LogStore,
    MemoryLogStore,
    StoreClosed,
)
from quorumlog.node.storage.raft_store import RocksStorage, StorageNotEmpty
from quorumlog.raft import (
    Compacted,
    ConfState,
    Entry,
    HardState,
    Ready,
    Snapshot,
    SnapshotMetadata,
    SnapshotTemporarilyUnavailable,
    Unavailable,
    bootstrap_memory_storage,
)


class Opened:
    """One store under test and how to close and open it again (nothing lost)."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self.store: LogStore = self._open(None)

    def _open(self, previous: LogStore | None) -> LogStore:
        if self.kind == "rocks":
            if previous is not None:
                previous.close()
            return RocksStorage(self.path)
        if isinstance(previous, MemoryLogStore):
            return previous.reopen()
        return MemoryLogStore()

    def reopen(self) -> LogStore:
        self.store = self._open(self.store)
        return self.store


@pytest.fixture(params=["rocks", "memory"])
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opened]:
    handle = Opened(request.param, tmp_path / "db")
    yield handle
    handle.store.close()


def entries(lo: int, hi: int, term: int) -> list[Entry]:
    return [Entry(term, index, f"{index}@{term}".encode()) for index in range(lo, hi)]


def view(store: LogStore) -> tuple[object, ...]:
    first, last = store.first_index(), store.last_index()
    return (
        store.initial_state(),
        first,
        last,
        [store.term(index) for index in range(first - 1, last + 1)],
        store.entries(first, last + 1),
        store.snapshot(),
        store.snapshot_index(),
    )


# -- the shared contract ---------------------------------------------------------------------------
def test_both_stores_satisfy_the_protocols(opened: Opened) -> None:
    assert isinstance(opened.store, LogStore)
    assert isinstance(opened.store, Bootstrappable)


def test_empty_store(opened: Opened) -> None:
    store = opened.store
    assert store.initial_state() == (HardState(), ConfState())
    assert (store.first_index(), store.last_index()) == (1, 0)
    assert store.term(0) == 0
    assert store.snapshot_index() == 0
    assert store.snapshot() == Snapshot(SnapshotMetadata())
    assert store.entries(1, 1) == []
    with pytest.raises(Unavailable):
        store.term(1)
    with pytest.raises(Unavailable):
        store.entries(1, 2)


def test_write_ready_appends_and_sets_hard_state(opened: Opened) -> None:
    store = opened.store
    store.write_ready(Ready(hard_state=HardState(2, 1, 3), entries=entries(1, 6, 2),
                            must_sync=True))
    assert store.initial_state()[0] == HardState(2, 1, 3)
    assert (store.first_index(), store.last_index()) == (1, 5)
    assert store.entries(2, 5) == entries(2, 5, 2)
    assert store.term(5) == 2
    # max_bytes bounds the result but never below one entry (the core's limit_size).
    assert store.entries(1, 6, max_bytes=1) == entries(1, 2, 2)
    assert store.entries(1, 6, max_bytes=2 * (16 + 3)) == entries(1, 3, 2)


def test_write_ready_replaces_a_conflicting_suffix(opened: Opened) -> None:
    store = opened.store
    store.write_ready(Ready(entries=entries(1, 8, 1)))
    store.write_ready(Ready(entries=entries(4, 6, 2)))
    assert store.last_index() == 5
    assert store.entries(1, 6) == entries(1, 4, 1) + entries(4, 6, 2)
    with pytest.raises(Unavailable):
        store.term(6)


def test_a_refused_write_changes_nothing(opened: Opened) -> None:
    store = opened.store
    store.write_ready(Ready(hard_state=HardState(1, 0, 0), entries=entries(1, 4, 1)))
    before = view(store)
    with pytest.raises(Unavailable):  # a gap after a hard state in the same write
        store.write_ready(Ready(hard_state=HardState(9, 9, 9), entries=entries(6, 8, 1)))
    assert view(store) == before
    old = Snapshot(SnapshotMetadata(0, 0, ConfState((1,))))
    with pytest.raises(SnapshotTemporarilyUnavailable):
        store.write_ready(Ready(snapshot=old))
    assert view(store) == before


def test_snapshot_then_entries_in_one_ready(opened: Opened) -> None:
    store = opened.store
    store.write_ready(Ready(entries=entries(1, 4, 1)))
    snapshot = Snapshot(SnapshotMetadata(10, 3, ConfState((1, 2, 3))), b"state")
    store.write_ready(Ready(snapshot=snapshot, entries=entries(11, 13, 3),
                            hard_state=HardState(3, 1, 10), must_sync=True))
    assert store.snapshot() == snapshot
    assert store.snapshot_index() == 10
    assert store.initial_state() == (HardState(3, 1, 10), ConfState((1, 2, 3)))
    assert (store.first_index(), store.last_index()) == (11, 12)
    assert store.term(10) == 3
    with pytest.raises(Compacted):
        store.term(9)
    with pytest.raises(Compacted):
        store.entries(10, 12)


def test_create_snapshot_and_compact(opened: Opened) -> None:
    store = opened.store
    store.write_ready(Ready(entries=entries(1, 5, 1) + entries(5, 11, 2)))
    conf = ConfState((1, 2))
    snapshot = store.create_snapshot(8, conf, b"")
    assert snapshot.metadata == SnapshotMetadata(8, 2, conf)
    assert store.snapshot_index() == 8
    with pytest.raises(SnapshotTemporarilyUnavailable):
        store.create_snapshot(8, conf, b"")
    with pytest.raises(Unavailable):
        store.create_snapshot(11, conf, b"")
    store.compact(4)
    assert store.first_index() == 5
    assert store.term(4) == 1  # the compaction point still answers its term
    assert store.entries(5, 11) == entries(5, 11, 2)
    with pytest.raises(Compacted):
        store.compact(4)
    with pytest.raises(Unavailable):
        store.compact(11)
    # Entries below the compaction point are trimmed from an append, not refused.
    store.write_ready(Ready(entries=entries(3, 12, 2)))
    assert (store.first_index(), store.last_index()) == (5, 11)
    assert store.term(4) == 1


def test_bootstrap_matches_the_cores_memory_storage(opened: Opened) -> None:
    store = opened.store
    assert isinstance(store, Bootstrappable)
    assert store.is_empty()
    store.bootstrap((3, 1, 2))
    assert not store.is_empty()
    reference = bootstrap_memory_storage((1, 2, 3))
    assert store.initial_state() == reference.initial_state()
    assert store.snapshot() == reference.snapshot()
    assert (store.first_index(), store.last_index()) == (2, 1)
    with pytest.raises(StorageNotEmpty):
        store.bootstrap((1,))


def test_reopen_keeps_everything(opened: Opened) -> None:
    store = opened.store
    store.write_ready(Ready(hard_state=HardState(2, 2, 4), entries=entries(1, 9, 2),
                            must_sync=True))
    store.create_snapshot(6, ConfState((1, 2, 3)), b"")
    store.compact(3)
    store.write_ready(Ready(entries=entries(9, 11, 2)))  # not synced
    before = view(store)
    assert view(opened.reopen()) == before


# -- the in-memory store's durability --------------------------------------------------------------
def test_crash_drops_unsynced_writes_only() -> None:
    store = MemoryLogStore()
    store.write_ready(Ready(hard_state=HardState(1, 1, 0), entries=entries(1, 4, 1),
                            must_sync=True))
    synced = view(store)
    store.write_ready(Ready(hard_state=HardState(1, 1, 3), entries=entries(4, 6, 1)))
    store.compact(2)
    assert store.last_index() == 5  # visible at once, like a RocksDB write
    recovered = store.crash()
    assert view(recovered) == synced


def test_a_synced_write_makes_earlier_writes_durable() -> None:
    store = MemoryLogStore()
    store.write_ready(Ready(entries=entries(1, 4, 1)))  # unsynced
    store.write_ready(Ready(hard_state=HardState(1, 1, 3), must_sync=True))
    everything = view(store)
    assert view(store.crash()) == everything


def test_sync_override_and_explicit_sync() -> None:
    store = MemoryLogStore()
    # The override wins over must_sync (the chaos canary writes unsynced on purpose).
    store.write_ready(Ready(entries=entries(1, 3, 1), must_sync=True), sync=False)
    assert store.synced_writes == 0
    store.sync()
    assert store.synced_writes == 1
    assert store.crash().last_index() == 2


def test_a_crashed_or_closed_store_refuses_use() -> None:
    store = MemoryLogStore()
    store.write_ready(Ready(entries=entries(1, 3, 1), must_sync=True))
    store.crash()
    with pytest.raises(StoreClosed):
        store.last_index()
    with pytest.raises(StoreClosed):
        store.write_ready(Ready(entries=entries(3, 4, 1)))


def test_published_states_are_never_mutated() -> None:
    """The synced view is a reference to a published state: later writes (truncation,
    compaction, snapshot) must not change what a crash recovers."""
    store = MemoryLogStore()
    store.write_ready(Ready(entries=entries(1, 6, 1), must_sync=True))
    synced = view(store)
    store.write_ready(Ready(entries=entries(3, 4, 2)))
    store.create_snapshot(3, ConfState((1,)), b"", sync=False)
    store.compact(2)
    store.write_ready(Ready(snapshot=Snapshot(SnapshotMetadata(20, 4, ConfState((1,))))))
    assert view(store.crash()) == synced
