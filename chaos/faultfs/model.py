"""What a disk keeps when the power goes: the durability model of the fault filesystem.

Owns: the record of every change made through the filesystem that is not durable yet, over
the backing directory the filesystem passes through to, and :meth:`DiskModel.power_cut`, which
throws those changes away as a power loss would:

- file data: bytes written since the file's last ``fsync``/``fdatasync`` (overwrites keep the
  old bytes they replaced, a file that grew is cut back to its size at the last sync; with
  ``torn`` a seeded prefix of that unsynced tail survives, as a real disk may keep part of it);
- directory entries: a create, unlink, rename, mkdir or rmdir is durable once every directory it
  changed was fsynced after it; until then a power cut undoes it (an unlinked file is kept aside
  until then, so it can come back).

Must never: touch anything outside the backing directory, lose a change the model says is
durable, or draw randomness other than from the seeded ``random.Random`` it is given. Thread
safety is the caller's (``quorumlog.chaos.faultfs.fs`` holds one lock around every call).
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

TRASH = ".faultfs-trash"  # in the backing directory: unlinked files kept until durable


@dataclass
class FileState:
    """One file's data changes since its last sync."""

    durable_size: int  # its size at the last sync (0 for a file created since)
    undo: list[tuple[int, bytes]] = field(default_factory=list)  # old bytes, oldest first


@dataclass
class EntryChange:
    """One directory-entry change not yet durable."""

    kind: str  # create, unlink, rename, mkdir, rmdir
    path: str  # relative to the backing directory ("a/b")
    target: str = ""  # rename: the new path
    kept: str = ""  # unlink, or a rename that replaced a file: where the old file is kept
    pending: set[str] = field(default_factory=set)  # directories still to be fsynced


def parent(path: str) -> str:
    return os.path.dirname(path)


def _moved(path: str, old: str, new: str) -> str:
    """``path`` after ``old`` was renamed to ``new``: ``old`` itself or anything under it
    (with ``old`` ending in "/": only what is under it), else unchanged."""
    if path == old:
        return new
    prefix = old if old.endswith("/") else old + "/"
    if path.startswith(prefix):
        return (new if new.endswith("/") else new + "/") + path[len(prefix):]
    return path


class DiskModel:
    def __init__(self, backing: Path, rng: random.Random) -> None:
        self.backing = backing
        self.rng = rng
        self.files: dict[str, FileState] = {}  # by current path
        self.entries: list[EntryChange] = []
        self._kept = 0
        (backing / TRASH).mkdir(exist_ok=True)

    def real(self, path: str) -> Path:
        return self.backing / path

    # -- file data --------------------------------------------------------------------------
    def _state(self, path: str) -> FileState:
        state = self.files.get(path)
        if state is None:
            real = self.real(path)
            size = real.stat().st_size if real.exists() else 0
            state = self.files[path] = FileState(size)
        return state

    def before_write(self, path: str, offset: int, length: int) -> None:
        """A write of ``length`` bytes at ``offset`` is about to happen."""
        state = self._state(path)
        end = min(offset + length, state.durable_size)
        if offset < end:
            with open(self.real(path), "rb") as file:
                file.seek(offset)
                state.undo.append((offset, file.read(end - offset)))

    def before_truncate(self, path: str, length: int) -> None:
        state = self._state(path)
        if length < state.durable_size:
            with open(self.real(path), "rb") as file:
                file.seek(length)
                state.undo.append((length, file.read(state.durable_size - length)))

    def synced(self, path: str) -> None:
        """``fsync``/``fdatasync`` of ``path`` returned: its data is durable."""
        real = self.real(path)
        self.files[path] = FileState(real.stat().st_size if real.exists() else 0)

    # -- directory entries ------------------------------------------------------------------
    def created(self, path: str, *, directory: bool = False) -> None:
        self.files[path] = FileState(0)
        self.entries.append(EntryChange("mkdir" if directory else "create", path,
                                        pending={parent(path)}))

    def unlink(self, path: str) -> None:
        """Unlink ``path``: moved aside (not deleted) until its directory is synced."""
        kept = self._keep(path)
        self.entries.append(EntryChange("unlink", path, kept=kept, pending={parent(path)}))

    def rmdir(self, path: str) -> None:
        os.rmdir(self.real(path))
        self.entries.append(EntryChange("rmdir", path, pending={parent(path)}))

    def rename(self, old: str, new: str) -> None:
        kept = self._keep(new) if self.real(new).is_file() else ""
        os.rename(self.real(old), self.real(new))
        for key in [key for key in self.files if key == old or key.startswith(old + "/")]:
            self.files[new + key[len(old):]] = self.files.pop(key)
        for change in self.entries:  # changes inside a renamed directory go with it
            change.path = _moved(change.path, old + "/", new + "/")
            change.target = _moved(change.target, old + "/", new + "/")
            change.pending = {_moved(directory, old, new) for directory in change.pending}
        self.entries.append(EntryChange("rename", old, target=new, kept=kept,
                                        pending={parent(old), parent(new)}))

    def _keep(self, path: str) -> str:
        self._kept += 1
        kept = f"{TRASH}/{self._kept}"
        os.rename(self.real(path), self.real(kept))
        if path in self.files:
            self.files[kept] = self.files.pop(path)
        return kept

    def dir_synced(self, directory: str) -> None:
        """``fsync`` of ``directory`` returned: its entry changes are durable. A directory
        whose removal is durable takes the changes still pending inside it along (it was
        empty when removed: what was unlinked in it is gone for good)."""
        still: list[EntryChange] = []
        removed: list[str] = []
        for change in self.entries:
            change.pending.discard(directory)
            if change.pending:
                still.append(change)
                continue
            if change.kept:
                self._drop(change.kept)
            if change.kind == "rmdir":
                removed.append(change.path + "/")
        while removed:
            inside = removed.pop()
            kept: list[EntryChange] = []
            for change in still:
                if change.path.startswith(inside) or change.target.startswith(inside):
                    if change.kept:
                        self._drop(change.kept)
                    if change.kind == "rmdir":
                        removed.append(change.path + "/")
                    continue
                kept.append(change)
            still = kept
        self.entries = still

    def _drop(self, kept: str) -> None:
        self.files.pop(kept, None)
        real = self.real(kept)
        if real.exists():
            real.unlink()

    # -- the power cut ----------------------------------------------------------------------
    def power_cut(self, *, torn: bool = False) -> dict[str, int]:
        """Throw away every change that is not durable; what was undone."""
        undone = {"entries": 0, "files": 0, "bytes": 0}
        for change in reversed(self.entries):
            self._undo_entry(change)
            undone["entries"] += 1
        self.entries = []
        for path, state in sorted(self.files.items()):
            real = self.real(path)
            if not real.is_file():
                continue
            size = real.stat().st_size
            keep = state.durable_size
            if torn and size > keep:
                keep += self.rng.randrange(size - keep + 1)  # a torn, seeded prefix survives
            if size == state.durable_size and not state.undo:
                continue
            undone["files"] += 1
            undone["bytes"] += max(0, size - keep)
            with open(real, "r+b") as file:
                for offset, old in reversed(state.undo):  # all within the durable size
                    file.seek(offset)
                    file.write(old)
                file.truncate(keep)
        self.files = {}
        shutil.rmtree(self.real(TRASH), ignore_errors=True)
        self.real(TRASH).mkdir()
        return undone

    def _undo_entry(self, change: EntryChange) -> None:
        real = self.real(change.path)
        if change.kind == "create":
            if real.is_file():
                real.unlink()
            self.files.pop(change.path, None)
        elif change.kind == "mkdir":
            shutil.rmtree(real, ignore_errors=True)
        elif change.kind == "rmdir":
            real.mkdir(exist_ok=True)
        elif change.kind == "unlink":
            real.parent.mkdir(parents=True, exist_ok=True)
            os.rename(self.real(change.kept), real)
            if change.kept in self.files:
                self.files[change.path] = self.files.pop(change.kept)
        elif change.kind == "rename":
            os.rename(self.real(change.target), real)
            if change.target in self.files:
                self.files[change.path] = self.files.pop(change.target)
            if change.kept:
                os.rename(self.real(change.kept), self.real(change.target))
                if change.kept in self.files:
                    self.files[change.target] = self.files.pop(change.kept)
