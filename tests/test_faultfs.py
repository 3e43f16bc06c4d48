"""The fault filesystem (``chaos/faultfs``): its durability model on a plain directory (what a
power cut keeps: unsynced data and unsynced directory entries go, synced ones stay, a torn
tail is a seeded prefix), then a real FUSE mount driven through ``quorumlog faultfs``: power
cut, fsync EIO, a full disk, bit rot."""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultfs_harness import Mount, faultfs_cli

from quorumlog.chaos.faultfs.model import DiskModel


# -- the model, on a plain directory -------------------------------------------------------------
def _write(model: DiskModel, path: str, data: bytes, offset: int = 0, *, create: bool = False
           ) -> None:
    real = model.real(path)
    if create:
        real.touch()
        model.created(path)
    model.before_write(path, offset, len(data))
    with open(real, "r+b") as file:
        file.seek(offset)
        file.write(data)


@pytest.fixture
def model(tmp_path: Path) -> DiskModel:
    return DiskModel(tmp_path, random.Random(7))


def test_unsynced_data_and_entries_are_lost_synced_ones_stay(model: DiskModel) -> None:
    _write(model, "kept", b"synced", create=True)
    model.synced("kept")
    model.dir_synced("")
    _write(model, "lost", b"never synced", create=True)
    _write(model, "kept", b" and more", 6)  # after the sync: lost
    _write(model, "file-only", b"data synced, entry not", create=True)
    model.synced("file-only")
    undone = model.power_cut()
    assert not model.real("lost").exists()
    assert not model.real("file-only").exists()  # its directory was never synced after it
    assert model.real("kept").read_bytes() == b"synced"
    assert undone == {"entries": 2, "files": 1, "bytes": len(b" and more")}


def test_overwrites_and_truncates_of_synced_data_come_back(model: DiskModel) -> None:
    _write(model, "f", b"0123456789", create=True)
    model.synced("f")
    model.dir_synced("")
    _write(model, "f", b"xx", 2)
    model.before_truncate("f", 5)
    os.truncate(model.real("f"), 5)
    _write(model, "f", b"tail beyond", 5)
    model.power_cut()
    assert model.real("f").read_bytes() == b"0123456789"


def test_a_torn_power_cut_keeps_a_seeded_prefix_of_the_unsynced_tail(tmp_path: Path) -> None:
    kept = []
    for seed in (1, 2, 3):
        (tmp_path / str(seed)).mkdir()
        model = DiskModel(tmp_path / str(seed), random.Random(seed))
        _write(model, "log", b"durable|", create=True)
        model.synced("log")
        model.dir_synced("")
        _write(model, "log", b"abcdefghij", 8)
        model.power_cut(torn=True)
        data = model.real("log").read_bytes()
        assert data.startswith(b"durable|") and b"durable|abcdefghij".startswith(data)
        kept.append(len(data))
    # the prefix is the seed's draw: 0 to all 10 unsynced bytes
    assert kept == [8 + random.Random(seed).randrange(11) for seed in (1, 2, 3)]


def test_the_atomic_replace_pattern_needs_the_directory_sync(model: DiskModel) -> None:
    _write(model, "config", b"old", create=True)
    model.synced("config")
    model.dir_synced("")
    _write(model, "config.tmp", b"new", create=True)
    model.synced("config.tmp")
    model.rename("config.tmp", "config")  # no fsync of the directory: the rename may be lost
    model.power_cut()
    assert model.real("config").read_bytes() == b"old"
    assert not model.real("config.tmp").exists()
    _write(model, "config.tmp", b"new", create=True)
    model.synced("config.tmp")
    model.rename("config.tmp", "config")
    model.dir_synced("")
    model.power_cut()
    assert model.real("config").read_bytes() == b"new"


def test_an_unlink_comes_back_until_its_directory_is_synced(model: DiskModel) -> None:
    model.real("d").mkdir()
    _write(model, "d/segment", b"records", create=True)
    model.synced("d/segment")
    model.dir_synced("d")
    model.unlink("d/segment")
    assert not model.real("d/segment").exists()
    model.power_cut()
    assert model.real("d/segment").read_bytes() == b"records"
    model.unlink("d/segment")
    model.dir_synced("d")
    model.power_cut()
    assert not model.real("d/segment").exists()


def test_changes_inside_a_renamed_directory_go_with_it(model: DiskModel) -> None:
    model.real("stage").mkdir()
    model.created("stage", directory=True)
    _write(model, "stage/old-log", b"obsolete", create=True)
    model.synced("stage/old-log")
    model.dir_synced("stage")
    model.unlink("stage/old-log")  # its directory not synced after this
    model.rename("stage", "live")
    model.dir_synced("")  # the directory's creation and rename: durable
    model.power_cut()
    assert model.real("live").is_dir() and not model.real("stage").exists()
    assert model.real("live/old-log").read_bytes() == b"obsolete"  # the unlink was not


def test_a_durably_removed_directory_takes_the_unlinks_inside_it_along(
    model: DiskModel
) -> None:
    """A checkpoint directory emptied and removed, its parent fsynced but never itself: the
    removal is durable, so a power cut must not try to bring the files back into it (the
    chaos run's power cut failed on exactly that)."""
    model.real("export/checkpoint").mkdir(parents=True)
    _write(model, "export/checkpoint/table", b"rows", create=True)
    model.synced("export/checkpoint/table")
    model.dir_synced("export/checkpoint")
    model.dir_synced("export")
    model.unlink("export/checkpoint/table")  # "export/checkpoint" is never fsynced again
    model.rmdir("export/checkpoint")
    model.dir_synced("export")  # the removal is durable
    assert model.entries == []
    model.power_cut()
    assert not model.real("export/checkpoint").exists()


# -- a real mount --------------------------------------------------------------------------------
@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Mount]:
    mounted = Mount.in_directory(tmp_path)
    try:
        yield mounted
    finally:
        mounted.stop()


def _durable_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def test_a_power_cut_through_the_mount(mount: Mount) -> None:
    _durable_file(mount.point / "kept", b"fsynced with its directory")
    (mount.point / "lost").write_bytes(b"never fsynced")
    with open(mount.point / "kept", "ab") as file:
        file.write(b", then more")
    assert sorted(os.listdir(mount.point)) == ["kept", "lost"]  # the model's files hidden
    answer = mount.command("power-cut")
    assert answer["undone"] == {"entries": 1, "files": 1, "bytes": len(b", then more")}
    assert sorted(os.listdir(mount.point)) == ["kept"]
    assert (mount.point / "kept").read_bytes() == b"fsynced with its directory"


def test_fsync_error_disk_full_and_bitrot(mount: Mount) -> None:
    path = mount.point / "wal"
    _durable_file(path, b"0123456789")
    mount.command("fsync-error", "wal")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"abc")
        with pytest.raises(OSError) as failed:
            os.fsync(fd)
        assert failed.value.errno == errno.EIO
        os.fsync(fd)  # only the next one failed
    finally:
        os.close(fd)
    assert mount.command("disk-full", "on")["disk_full"] is True
    with pytest.raises(OSError) as full, open(path, "ab") as file:
        file.write(b"more")
    assert full.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"0123456789abc"  # reads still work
    mount.command("disk-full", "off")
    with open(path, "ab") as file:
        file.write(b"!")
    offset = mount.command("bitrot", "wal")["offset"]
    assert isinstance(offset, int)
    data = path.read_bytes()
    original = b"0123456789abc!"
    assert [i for i in range(len(data)) if data[i] != original[i]] == [offset]
    assert data[offset] == original[offset] ^ 0xFF
    status = mount.command("status")["counts"]
    assert status == {"power_cuts": 0, "fsync_errors": 1, "enospc": 1, "bitrot": 1}
    bad = faultfs_cli("bitrot", "no-such-file", "--control", str(mount.control))
    assert bad.returncode == 1 and "'no-such-file' is not a non-empty file" in bad.stderr
