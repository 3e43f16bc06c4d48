"""Checksums of the durable Raft storage (issue 21, bit rot): a flipped bit in a stored log
entry, snapshot, hard state or compaction point raises ``StorageCorrupted`` on read and at
open, never serves the damaged value; values stored before checksums still read."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from quorumlog.node.storage.engine import StorageEngine
from quorumlog.node.storage.raft_store import (
    HARD_STATE_KEY,
    SNAPSHOT_CRC_KEY,
    SNAPSHOT_DATA_KEY,
    TRUNCATED_KEY,
    RocksStorage,
    StorageCorrupted,
    decode_entry,
    encode_entry,
    log_key,
    log_options,
)
from quorumlog.node.storage.scrub import is_corruption, scrub
from quorumlog.raft import ConfState, Entry, HardState


def _filled(path: Path) -> RocksStorage:
    storage = RocksStorage(path)
    storage.append([Entry(1, index, f"entry-{index}".encode()) for index in range(1, 21)])
    storage.set_hard_state(HardState(term=1, vote=1, commit=20))
    storage.create_snapshot(10, ConfState((1, 2, 3)), b"state-at-10")
    storage.compact(5)
    return storage


def _flip(storage: RocksStorage, key: bytes, position: int = -1) -> None:
    value = bytearray(storage.db.get(key))
    value[position] ^= 0x10
    storage.db.put(key, bytes(value))


def test_every_encoding_round_trips_and_an_entry_checks_its_index() -> None:
    entry = Entry(7, 42, b"payload")
    assert decode_entry(42, encode_entry(entry)) == entry
    with pytest.raises(StorageCorrupted, match="entry 43: checksum"):
        decode_entry(43, encode_entry(entry))  # a value stored under the wrong index


@pytest.mark.parametrize("position", [0, 7, 8, 9, 12, 13, -1])
def test_a_flipped_bit_anywhere_in_an_entry_is_found_on_read_and_at_open(
    tmp_path: Path, position: int
) -> None:
    storage = _filled(tmp_path / "db")
    _flip(storage, log_key(15), position)
    with pytest.raises(StorageCorrupted):
        storage.entries(12, 18)
    assert [e.index for e in storage.entries(16, 21)] == [16, 17, 18, 19, 20]  # the rest reads
    storage.close()
    with pytest.raises(StorageCorrupted, match="entry 15"):
        RocksStorage(tmp_path / "db")


@pytest.mark.parametrize("key", [HARD_STATE_KEY, TRUNCATED_KEY, SNAPSHOT_DATA_KEY,
                                 SNAPSHOT_CRC_KEY])
def test_a_flipped_bit_in_the_metadata_is_found_at_open(tmp_path: Path, key: bytes) -> None:
    storage = _filled(tmp_path / "db")
    _flip(storage, key)
    storage.close()
    with pytest.raises(StorageCorrupted, match="checksum"):
        RocksStorage(tmp_path / "db")


def test_a_damaged_snapshot_is_never_served(tmp_path: Path) -> None:
    storage = _filled(tmp_path / "db")
    assert storage.snapshot().data == b"state-at-10"
    _flip(storage, SNAPSHOT_DATA_KEY, 0)
    with pytest.raises(StorageCorrupted, match="snapshot checksum"):
        storage.snapshot()
    storage.close()


def test_values_stored_before_checksums_still_read(tmp_path: Path) -> None:
    storage = _filled(tmp_path / "db")
    db = storage.db
    # the previous layout: entry header without bit 7 and no CRC; 24-byte hard state; a
    # 16-byte compaction point; no snapshot checksum
    db.put(log_key(19), struct.pack(">QB", 1, 0) + b"old-19")
    db.put(HARD_STATE_KEY, struct.pack(">QQQ", 1, 1, 20))
    db.put(TRUNCATED_KEY, struct.pack(">QQ", 5, 1))
    db.delete(SNAPSHOT_CRC_KEY)
    storage.close()
    with RocksStorage(tmp_path / "db") as reopened:
        assert reopened.entries(19, 21)[0] == Entry(1, 19, b"old-19")
        assert reopened.initial_state()[0] == HardState(term=1, vote=1, commit=20)
        assert reopened.first_index() == 6
        assert reopened.snapshot().data == b"state-at-10"


def test_the_incarnation_is_made_once_and_kept(tmp_path: Path) -> None:
    with RocksStorage(tmp_path / "db") as storage:
        made = storage.incarnation()
        assert made != 0 and storage.incarnation() == made
    with RocksStorage(tmp_path / "db") as storage:
        assert storage.incarnation() == made
    with RocksStorage(tmp_path / "other") as other:
        assert other.incarnation() != made


def _flip_table(directory: Path, offset: int = 100) -> None:
    (table,) = sorted(directory.glob("*.sst"), key=lambda path: path.stat().st_size)[-1:]
    with open(table, "r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0xFF]))


def test_damage_in_a_table_file_is_an_error_at_open_never_an_empty_log(tmp_path: Path) -> None:
    storage = _filled(tmp_path / "db")
    storage.close()  # flushes the memtable into a table file
    _flip_table(tmp_path / "db")
    with pytest.raises(Exception, match="Corruption") as raised:
        RocksStorage(tmp_path / "db")
    assert is_corruption(raised.value)


def test_the_scrub_reads_every_family_and_finds_damage_nothing_else_reads(tmp_path: Path) -> None:
    path = tmp_path / "db"
    engine = StorageEngine(path, log_options(path))
    with RocksStorage(path, engine=engine, group=0) as storage:
        storage.append([Entry(1, index, b"x" * 100) for index in range(1, 50)])
    family = engine.family(3)
    for i in range(500):
        family.put(b"s/%06d" % i, b"v" * 64)
    assert asyncio.run(scrub(engine)) >= 549
    engine.close()
    _flip_table(path)  # the largest table: group 3's state keys, never read at open
    engine = StorageEngine(path, log_options(path))
    try:
        RocksStorage(path, engine=engine, group=0).close()  # the log itself opens fine
        with pytest.raises(StorageCorrupted, match="scrub of g3"):
            asyncio.run(scrub(engine))
    finally:
        engine.close()


def test_a_log_shorter_than_its_commit_index_is_damage(tmp_path: Path) -> None:
    """What a disk that lied about fsync leaves: the hard state says 20 is committed, the
    log ends before it. The node must not vote or lead from it."""
    storage = _filled(tmp_path / "db")
    for index in (19, 20):
        storage.db.delete(log_key(index))
    storage.close()
    with pytest.raises(StorageCorrupted, match="commits 20 but the log ends at 18"):
        RocksStorage(tmp_path / "db")
