"""The backup file: a consistent copy of a node's state machine, and reading it back.

Owns: the file format and its integrity check. A backup is written by the leader while it
keeps serving (``backup_chunks`` over a point-in-time ``StateExport``) and read by ``quorumlog
restore`` (``read_backup``), which refuses a truncated or altered file before writing
anything. Must never: touch Raft state or the network; hold more than one chunk in memory.

A sharded cluster's backup is a bundle of such files (``quorumlog.proto.backup_bundle``).

Format (integers unsigned big-endian)::

    b"QLBACKUP"  u8 format version (1)  u32 header length  header (UTF-8 JSON object:
    format, applied_index, cluster_id, created_ms, source, members)
    frames: u32 length + one state-export chunk (the ``StateExport`` stream, whose own
            header and end marker are kept), repeated; a zero length ends them
    32 bytes: SHA-256 of every byte before it
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quorumlog.proto.backup_bundle import (
    BUNDLE_VERSION,
    MAGIC,
    BackupError,
    read_exact,
    verify,
)

__all__ = ["BackupError", "BackupHeader", "backup_chunks", "read_backup", "verify"]

FORMAT_VERSION = 1
_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class BackupHeader:
    applied_index: int
    cluster_id: int
    created_ms: int
    source: str
    members: dict[str, str]  # name -> peer address, of the cluster it was taken from
    # A sharded cluster's group this file holds ("meta" or "shard K"; a bundle's section);
    # "" for the whole state of a one-shard cluster.
    section: str = ""

    def encode(self) -> bytes:
        fields: dict[str, object] = {
            "format": FORMAT_VERSION,
            "applied_index": self.applied_index,
            "cluster_id": self.cluster_id,
            "created_ms": self.created_ms,
            "source": self.source,
            "members": self.members,
        }
        if self.section:
            fields["section"] = self.section
        return json.dumps(fields, sort_keys=True).encode()

    @staticmethod
    def decode(data: bytes) -> BackupHeader:
        try:
            raw: dict[str, Any] = json.loads(data)
            return BackupHeader(
                int(raw["applied_index"]),
                int(raw["cluster_id"]),
                int(raw["created_ms"]),
                str(raw["source"]),
                {str(k): str(v) for k, v in dict(raw["members"]).items()},
                str(raw.get("section", "")),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise BackupError(f"backup header is not valid: {error}") from None


def backup_chunks(header: BackupHeader, state_chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The backup file as a sequence of byte strings (concatenate them); the last one ends
    with the SHA-256 of everything before it."""
    digest = hashlib.sha256()
    encoded = header.encode()
    opening = MAGIC + _U8.pack(FORMAT_VERSION) + _U32.pack(len(encoded)) + encoded
    digest.update(opening)
    yield opening
    for chunk in state_chunks:
        frame = _U32.pack(len(chunk)) + chunk
        digest.update(frame)
        yield frame
    end = _U32.pack(0)
    digest.update(end)
    yield end + digest.digest()


def read_backup(path: Path) -> tuple[BackupHeader, Iterator[bytes]]:
    """Check the whole file, then return its header and an iterator of its state chunks
    (for ``SessionStateMachine.import_state``); the file stays open until it is exhausted."""
    verify(path)
    stream = path.open("rb")
    try:
        stream.read(len(MAGIC))
        (version,) = _U8.unpack(read_exact(stream, _U8.size, "format version"))
        if version == BUNDLE_VERSION:
            raise BackupError(f"{path} is a sharded cluster's backup: restore it as one")
        if version != FORMAT_VERSION:
            raise BackupError(f"backup format {version} is not supported (expected 1)")
        (length,) = _U32.unpack(read_exact(stream, _U32.size, "header length"))
        header = BackupHeader.decode(read_exact(stream, length, "header"))
    except BaseException:
        stream.close()
        raise

    def frames() -> Iterator[bytes]:
        with stream:
            while True:
                (frame_length,) = _U32.unpack(read_exact(stream, _U32.size, "frame length"))
                if frame_length == 0:
                    return
                yield read_exact(stream, frame_length, "state data")

    return header, frames()
