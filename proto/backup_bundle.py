"""The backup file's framing shared by the node and the SDK: the magic, the whole-file
SHA-256 check, and the *bundle* of a sharded cluster's backup.

Owns: what the SDK writes (it bundles the per-group backups it fetched from each group's
leader) and the node's restore reads, so both import it from here (the SDK may import only
``quorumlog.proto``). A bundle (format version 2): one version-1 backup file per group (the
meta group, then every shard in order), byte for byte, each with its own SHA-256, and a
digest of the whole::

    b"QLBACKUP"  u8 format version (2)  u32 header length  header (UTF-8 JSON object:
    format, shards, cluster_id, created_ms, source, sections: [{section, bytes, sha256,
    applied_index}] in file order)
    the sections' version-1 files, concatenated
    32 bytes: SHA-256 of every byte before it

The version-1 file itself is ``quorumlog.node.storage.backup_file``'s. Must never: touch the
network or hold more than one read buffer of a file in memory.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

MAGIC = b"QLBACKUP"
BUNDLE_VERSION = 2
_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")
_DIGEST_BYTES = 32
_READ_BYTES = 1 << 20


class BackupError(ValueError):
    """The file is not a complete quorumlog backup; the message says what is wrong."""


def read_exact(stream: IO[bytes], size: int, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise BackupError(f"file ends inside the {what} (truncated backup?)")
    return data


def verify(path: Path) -> None:
    """Raise ``BackupError`` unless ``path`` ends with the right SHA-256 of its content."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error.strerror}") from None
    if size < len(MAGIC) + _U8.size + _U32.size + _DIGEST_BYTES:
        raise BackupError(f"{path} is too short ({size} bytes) to be a quorumlog backup")
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        if stream.read(len(MAGIC)) != MAGIC:
            raise BackupError(f"{path} is not a quorumlog backup (no QLBACKUP header)")
        stream.seek(0)
        remaining = size - _DIGEST_BYTES
        while remaining > 0:
            data = stream.read(min(_READ_BYTES, remaining))
            digest.update(data)
            remaining -= len(data)
        if stream.read(_DIGEST_BYTES) != digest.digest():
            raise BackupError(f"{path} is damaged: its SHA-256 does not match its content")



# -- bundles: a sharded cluster's backup ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Section:
    """One group's version-1 file inside a bundle: where it is and what it holds."""

    section: str  # "meta" or "shard K"
    offset: int  # of its first byte in the bundle
    size: int
    sha256: str
    applied_index: int


@dataclass(frozen=True, slots=True)
class Bundle:
    shards: int
    cluster_id: int
    created_ms: int
    source: str
    sections: tuple[Section, ...]


def format_version(path: Path) -> int:
    """The format version byte of the backup at ``path`` (1: one group, 2: a bundle)."""
    try:
        with path.open("rb") as stream:
            if stream.read(len(MAGIC)) != MAGIC:
                raise BackupError(f"{path} is not a quorumlog backup (no QLBACKUP header)")
            (version,) = _U8.unpack(read_exact(stream, _U8.size, "format version"))
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error.strerror}") from None
    return int(version)


def write_bundle(
    out: IO[bytes], shards: int, cluster_id: int, source: str,
    sections: list[tuple[str, Path, int]],
) -> tuple[int, bytes]:
    """Write a bundle of ``sections`` ((name, version-1 file, applied index), in order) to
    ``out``; (bytes written, SHA-256 of the whole file)."""
    entries = []
    for name, path, applied in sections:
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            while data := stream.read(_READ_BYTES):
                digest.update(data)
        entries.append({"section": name, "bytes": path.stat().st_size,
                        "sha256": digest.hexdigest(), "applied_index": applied})
    header = json.dumps({
        "format": BUNDLE_VERSION, "shards": shards, "cluster_id": cluster_id,
        "created_ms": int(time.time() * 1000), "source": source, "sections": entries,
    }, sort_keys=True).encode()
    whole = hashlib.sha256()
    opening = MAGIC + _U8.pack(BUNDLE_VERSION) + _U32.pack(len(header)) + header
    whole.update(opening)
    out.write(opening)
    total = len(opening)
    for _, path, _ in sections:
        with path.open("rb") as stream:
            while data := stream.read(_READ_BYTES):
                whole.update(data)
                out.write(data)
                total += len(data)
    final = whole.digest()
    out.write(final)
    return total + len(final), final


def read_bundle(path: Path) -> Bundle:
    """Check the whole bundle and every section's SHA-256; its table of sections."""
    verify(path)
    with path.open("rb") as stream:
        stream.read(len(MAGIC))
        (version,) = _U8.unpack(read_exact(stream, _U8.size, "format version"))
        if version != BUNDLE_VERSION:
            raise BackupError(f"{path} is not a sharded cluster's backup (format {version})")
        (length,) = _U32.unpack(read_exact(stream, _U32.size, "header length"))
        try:
            raw: dict[str, Any] = json.loads(read_exact(stream, length, "header"))
            offset = len(MAGIC) + _U8.size + _U32.size + length
            sections = []
            for entry in raw["sections"]:
                sections.append(Section(str(entry["section"]), offset, int(entry["bytes"]),
                                        str(entry["sha256"]), int(entry["applied_index"])))
                offset += int(entry["bytes"])
            bundle = Bundle(int(raw["shards"]), int(raw["cluster_id"]),
                            int(raw["created_ms"]), str(raw["source"]), tuple(sections))
        except (ValueError, KeyError, TypeError) as error:
            raise BackupError(f"bundle header is not valid: {error}") from None
        if offset + _DIGEST_BYTES != path.stat().st_size:
            raise BackupError(f"{path}: its sections do not add up to its size")
    expected = ["meta"] + [f"shard {k}" for k in range(bundle.shards)]
    if [section.section for section in bundle.sections] != expected:
        raise BackupError(f"{path}: sections {[s.section for s in bundle.sections]} are not "
                          f"the meta group and {bundle.shards} shards")
    return bundle


def extract_section(path: Path, section: Section, target: Path) -> Path:
    """Copy ``section`` out of the bundle at ``path`` into ``target`` (a version-1 file),
    checking its SHA-256."""
    digest = hashlib.sha256()
    with path.open("rb") as stream, target.open("wb") as out:
        stream.seek(section.offset)
        remaining = section.size
        while remaining > 0:
            data = read_exact(stream, min(_READ_BYTES, remaining), section.section)
            digest.update(data)
            out.write(data)
            remaining -= len(data)
    if digest.hexdigest() != section.sha256:
        raise BackupError(f"{path}: section {section.section} is damaged")
    return target
