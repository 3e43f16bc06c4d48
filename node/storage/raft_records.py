"""The records of the durable Raft storage: its keys, their encodings and their checksums.

Owns: the ``m/`` and ``l/`` key names, the byte layout of every value under them, the CRC-32
every one of them carries (sealing and checking), and the storage's named errors. Must never:
read or write the database (``raft_store`` does), or accept a value whose checksum does not
match (it raises ``StorageCorrupted``).

Key layout (keys and values are raw bytes; integers are unsigned big-endian, so keys sort
numerically):

=====================  ===================================================================
key                    value
=====================  ===================================================================
``m/format``           one byte, the layout version (``1``); written when the DB is created
``m/incarnation``      ``>Q`` this data directory's incarnation (group 0 only): a random
                       non-zero id made with the database, so peers can tell a wiped or
                       replaced disk from the one they knew (``quorumlog.node.replication
                       .incarnations``)
``m/hardstate``        ``>QQQ`` term, vote, commit, then its ``>I`` CRC-32
``m/snapshot``         ``>QQ`` index, term, then the conf state: ``>II`` voter count,
                       learner count, then that many ``>Q`` node ids (voters, learners)
``m/snapshot-data``    the snapshot's opaque application data
``m/snapshot-crc``     ``>I`` CRC-32 of ``m/snapshot`` and ``m/snapshot-data`` together
``m/truncated``        ``>QQ`` index, term of the entry just before the first retained one
                       (the compaction point; ``term(first_index() - 1)`` answers from it),
                       then its ``>I`` CRC-32
``l/<index >Q>``       one log entry: ``>QB`` term, entry type with bit 7 set, ``>I`` CRC-32
                       of the index, term, type and data, then the entry data
=====================  ===================================================================

Checksums: every value above but the format byte carries a CRC-32 (zlib's), checked on every
read and at open, so a flipped bit in a stored entry, snapshot or hard state raises
``StorageCorrupted`` instead of being served or replicated (RocksDB's own block checksums
guard everything else in its files). Values written before checksums (an entry whose type
byte has bit 7 clear, a 24-byte hard state, no ``m/snapshot-crc``) still read, unchecked.
"""

from __future__ import annotations

import struct
import zlib

from quorumlog.raft.types import ConfState, Entry, EntryType, HardState, NodeId, SnapshotMetadata

FORMAT_VERSION = 1

META_PREFIX = b"m/"
LOG_PREFIX = b"l/"
LOG_END = b"l0"  # first key after every ``l/`` key ('0' follows '/')

FORMAT_KEY = b"m/format"
HARD_STATE_KEY = b"m/hardstate"
SNAPSHOT_KEY = b"m/snapshot"
SNAPSHOT_DATA_KEY = b"m/snapshot-data"
SNAPSHOT_CRC_KEY = b"m/snapshot-crc"
TRUNCATED_KEY = b"m/truncated"
INCARNATION_KEY = b"m/incarnation"

OWNED_PREFIXES = (META_PREFIX, LOG_PREFIX)

U64 = struct.Struct(">Q")
ENTRY_HEADER = struct.Struct(">QB")
HARD_STATE = struct.Struct(">QQQ")
INDEX_TERM = struct.Struct(">QQ")
CONF_COUNTS = struct.Struct(">II")
CRC = struct.Struct(">I")
CHECKED = 0x80  # bit 7 of an entry's type byte: a CRC-32 follows the header


class StorageError(Exception):
    """Base of the errors of the durable storage itself (not the core's named errors)."""


class StorageCorrupted(StorageError):
    """What is on disk breaks the layout's invariants (a gap, an unknown format...)."""


class StorageNotEmpty(StorageError):
    """``bootstrap`` was asked to found a cluster on a directory that already holds state."""


class StaleBatch(StorageError):
    """A ``LogBatch`` was written after another write, or twice; build a new one."""


# -- encodings -----------------------------------------------------------------------------------
def log_key(index: int) -> bytes:
    return LOG_PREFIX + U64.pack(index)


def log_index(key: bytes) -> int:
    if len(key) != len(LOG_PREFIX) + 8 or not key.startswith(LOG_PREFIX):
        raise StorageCorrupted(f"malformed log key {key!r}")
    index: int = U64.unpack_from(key, len(LOG_PREFIX))[0]
    return index


def entry_crc(index: int, header: bytes, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(header, zlib.crc32(U64.pack(index))))


def encode_entry(entry: Entry) -> bytes:
    header = ENTRY_HEADER.pack(entry.term, int(entry.type) | CHECKED)
    return header + CRC.pack(entry_crc(entry.index, header, entry.data)) + entry.data


def decode_entry(index: int, value: bytes) -> Entry:
    if len(value) < ENTRY_HEADER.size:
        raise StorageCorrupted(f"entry {index}: {len(value)} bytes is too short")
    term, entry_type = ENTRY_HEADER.unpack_from(value)
    if not entry_type & CHECKED:  # written before checksums
        return Entry(term, index, value[ENTRY_HEADER.size :], EntryType(entry_type))
    start = ENTRY_HEADER.size + CRC.size
    if len(value) < start:
        raise StorageCorrupted(f"entry {index}: {len(value)} bytes is too short")
    data = value[start:]
    (stored,) = CRC.unpack_from(value, ENTRY_HEADER.size)
    if stored != entry_crc(index, value[: ENTRY_HEADER.size], data):
        raise StorageCorrupted(f"entry {index}: checksum mismatch (bit rot or a torn write)")
    try:
        kind = EntryType(entry_type & ~CHECKED)
    except ValueError:
        raise StorageCorrupted(f"entry {index}: unknown type {entry_type}") from None
    return Entry(term, index, data, kind)


def seal(value: bytes) -> bytes:
    """``value`` followed by its CRC-32."""
    return value + CRC.pack(zlib.crc32(value))


def unseal(what: str, value: bytes, size: int) -> bytes:
    """The ``size`` bytes ``seal`` sealed, checked (a legacy unsealed value passes)."""
    if len(value) == size:
        return value
    if len(value) != size + CRC.size or CRC.unpack_from(value, size)[0] != zlib.crc32(
            value[:size]):
        raise StorageCorrupted(f"{what}: checksum mismatch (bit rot or a torn write)")
    return value[:size]


def encode_hard_state(hard_state: HardState) -> bytes:
    return seal(HARD_STATE.pack(hard_state.term, hard_state.vote, hard_state.commit))


def decode_hard_state(value: bytes) -> HardState:
    term, vote, commit = HARD_STATE.unpack(unseal("hard state", value, HARD_STATE.size))
    return HardState(term, vote, commit)


def encode_conf_state(conf_state: ConfState) -> bytes:
    ids = (*conf_state.voters, *conf_state.learners)
    counts = CONF_COUNTS.pack(len(conf_state.voters), len(conf_state.learners))
    return counts + struct.pack(f">{len(ids)}Q", *ids)


def decode_conf_state(value: bytes, offset: int) -> ConfState:
    voter_count, learner_count = CONF_COUNTS.unpack_from(value, offset)
    offset += CONF_COUNTS.size
    ids: tuple[NodeId, ...] = struct.unpack_from(f">{voter_count + learner_count}Q", value, offset)
    if offset + 8 * len(ids) != len(value):
        raise StorageCorrupted("conf state has trailing bytes")
    return ConfState(ids[:voter_count], ids[voter_count:])


def encode_snapshot_metadata(metadata: SnapshotMetadata) -> bytes:
    return INDEX_TERM.pack(metadata.index, metadata.term) + encode_conf_state(
        metadata.conf_state
    )


def decode_snapshot_metadata(value: bytes) -> SnapshotMetadata:
    index, term = INDEX_TERM.unpack_from(value)
    return SnapshotMetadata(index, term, decode_conf_state(value, INDEX_TERM.size))


def snapshot_crc(encoded_metadata: bytes, data: bytes) -> bytes:
    """The ``m/snapshot-crc`` value of a snapshot's metadata and data."""
    return CRC.pack(zlib.crc32(data, zlib.crc32(encoded_metadata)))
