"""The fault filesystem: a FUSE pass-through over a backing directory that remembers what is not
durable (``quorumlog.chaos.faultfs.model``) and injects storage faults on command.

Owns: the FUSE operations (mfusepy, libfuse 3), each passed through to the same path under the
backing directory, telling the model about every write, truncate, sync and entry change; the
faults: ``power_cut`` (the model throws away everything not durable; the processes using the
mount must be stopped first, as a real power cut stops them), ``fsync_error`` (the next fsync
of a path returns EIO and makes nothing durable), ``disk_full`` (writes, creates and growing
truncates return ENOSPC, and ``statfs`` shows no free block, until cleared) and ``bitrot``
(flip one byte of a stored file at a seeded position); and the control socket that takes
those commands (``control.py``). Must never: show the model's own files (the trash of
unlinked files) in the mount, or let a fault change anything but what it names.
"""

from __future__ import annotations

import errno
import os
import random
import threading
from pathlib import Path
from typing import Any

from quorumlog.chaos.faultfs.model import TRASH, DiskModel

_STAT_FIELDS = ("st_atime_ns", "st_ctime_ns", "st_gid", "st_mode", "st_mtime_ns", "st_nlink",
                "st_size", "st_uid")


class Faults:
    """The storage faults of one mount, and the model they act on (one lock for both)."""

    def __init__(self, backing: Path, seed: int) -> None:
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        self.model = DiskModel(backing, random.Random(seed + 1))
        self.fsync_errors: set[str] = set()  # paths whose next fsync fails ("*": any)
        self.disk_full = False
        self.counts = {"power_cuts": 0, "fsync_errors": 0, "enospc": 0, "bitrot": 0}

    def command(self, request: dict[str, Any]) -> dict[str, Any]:
        """One control command (``control.py``); the answer, or ``{"error": ...}``."""
        name = request.get("command")
        with self.lock:
            if name == "power_cut":
                self.counts["power_cuts"] += 1
                changes = [f"{change.kind} {change.path}" + (f" -> {change.target}"
                                                             if change.target else "")
                           for change in self.model.entries]
                undone = self.model.power_cut(torn=bool(request.get("torn")))
                self.fsync_errors.clear()
                return {"ok": True, "undone": undone, "entry_changes_undone": changes[-20:]}
            if name == "fsync_error":
                self.fsync_errors.add(_relative(str(request.get("path", "*"))))
                return {"ok": True}
            if name == "disk_full":
                self.disk_full = bool(request.get("on", True))
                return {"ok": True, "disk_full": self.disk_full}
            if name == "bitrot":
                below = request.get("below")
                return self._bitrot(str(request.get("path", "")),
                                    below if isinstance(below, int) else None)
            if name == "status":
                return {"ok": True, "counts": dict(self.counts), "disk_full": self.disk_full,
                        "fsync_errors": sorted(self.fsync_errors),
                        "unsynced_files": len(self.model.files),
                        "unsynced_entries": len(self.model.entries)}
        return {"error": f"unknown command {name!r}"}

    def _bitrot(self, path: str, below: int | None = None) -> dict[str, Any]:
        real = self.model.real(_relative(path))
        if not real.is_file() or real.stat().st_size == 0:
            return {"error": f"{path!r} is not a non-empty file"}
        size = real.stat().st_size
        offset = self.rng.randrange(min(size, below) if below else size)
        with open(real, "r+b") as file:
            file.seek(offset)
            old = file.read(1)
            file.seek(offset)
            file.write(bytes([old[0] ^ 0xFF]))
        self.counts["bitrot"] += 1
        return {"ok": True, "offset": offset}

    def take_fsync_error(self, path: str) -> bool:
        for key in (path, "*"):
            if key in self.fsync_errors:
                self.fsync_errors.discard(key)
                self.counts["fsync_errors"] += 1
                return True
        return False

    def full(self) -> None:
        if self.disk_full:
            self.counts["enospc"] += 1
            raise _error(errno.ENOSPC)


def _relative(path: str) -> str:
    return path.strip("/")


def _error(code: int) -> OSError:
    from mfusepy import FuseOSError  # noqa: PLC0415 -- libfuse is loaded only to mount

    error: OSError = FuseOSError(code)
    return error


def operations(faults: Faults) -> Any:
    """The mfusepy ``Operations`` of a mount (built here: importing mfusepy loads libfuse)."""
    import mfusepy  # noqa: PLC0415 -- libfuse is loaded only to mount

    model = faults.model
    lock = faults.lock

    class FaultOperations(mfusepy.Operations):  # type: ignore[misc]
        use_ns = True

        def _real(self, path: str) -> str:
            relative = _relative(path)
            if relative == TRASH or relative.startswith(TRASH + "/"):
                raise _error(errno.ENOENT)
            return str(model.real(relative))

        def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
            try:
                stat = os.lstat(self._real(path))
            except FileNotFoundError:
                raise _error(errno.ENOENT) from None
            return {name: getattr(stat, name) for name in _STAT_FIELDS}

        def readdir(self, path: str, fh: int) -> list[str]:
            names = os.listdir(self._real(path))
            if _relative(path) == "":
                names = [name for name in names if name != TRASH]
            return [".", "..", *names]

        def statfs(self, path: str) -> dict[str, int]:
            stat = os.statvfs(self._real(path))
            answer = {name: getattr(stat, name) for name in (
                "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
                "f_flag", "f_frsize", "f_namemax")}
            if faults.disk_full:  # a full disk says so, as a real one does
                answer["f_bavail"] = answer["f_bfree"] = 0
            return answer

        def chmod(self, path: str, mode: int) -> int:
            os.chmod(self._real(path), mode)
            return 0

        def utimens(self, path: str, times: Any = None) -> int:
            os.utime(self._real(path), ns=times)
            return 0

        def open(self, path: str, flags: int) -> int:
            with lock:
                if flags & os.O_TRUNC:
                    faults.full()
                    model.before_truncate(_relative(path), 0)
                return os.open(self._real(path), flags & ~os.O_CREAT)

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            with lock:
                faults.full()
                real = self._real(path)
                existed = os.path.exists(real)
                fd = os.open(real, os.O_RDWR | os.O_CREAT, mode)
                if not existed:
                    model.created(_relative(path))
                return fd

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return os.pread(fh, size, offset)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            with lock:
                faults.full()
                model.before_write(_relative(path), offset, len(data))
                return os.pwrite(fh, data, offset)

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            with lock:
                real = self._real(path)
                if length > os.path.getsize(real):
                    faults.full()
                model.before_truncate(_relative(path), length)
                os.truncate(real, length)
                return 0

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            with lock:
                if faults.take_fsync_error(_relative(path)):
                    raise _error(errno.EIO)
                os.fsync(fh)
                model.synced(_relative(path))
                return 0

        def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
            with lock:
                model.dir_synced(_relative(path))
                return 0

        def flush(self, path: str, fh: int) -> int:
            return 0

        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            return 0

        def unlink(self, path: str) -> int:
            with lock:
                self._real(path)
                model.unlink(_relative(path))
                return 0

        def rename(self, old: str, new: str) -> int:
            with lock:
                self._real(old)
                self._real(new)
                model.rename(_relative(old), _relative(new))
                return 0

        def link(self, target: str, source: str) -> int:
            with lock:
                faults.full()
                os.link(self._real(source), self._real(target))
                model.created(_relative(target))
                model.synced(_relative(target))  # the data is the source's, synced or not
                return 0

        def mkdir(self, path: str, mode: int) -> int:
            with lock:
                faults.full()
                os.mkdir(self._real(path), mode)
                model.created(_relative(path), directory=True)
                return 0

        def rmdir(self, path: str) -> int:
            with lock:
                self._real(path)
                model.rmdir(_relative(path))
                return 0

    return FaultOperations()


def mount(backing: Path, mountpoint: Path, faults: Faults) -> None:
    """Serve ``mountpoint`` until it is unmounted (``fusermount3 -u``); blocks."""
    import mfusepy  # noqa: PLC0415 -- libfuse is loaded only to mount

    # No kernel caching of data or attributes: what a power cut changed under the mount is
    # what the next read sees.
    mfusepy.FUSE(operations(faults), str(mountpoint), foreground=True, nothreads=True,
                 direct_io=True, attr_timeout=0, entry_timeout=0, negative_timeout=0)
