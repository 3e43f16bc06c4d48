"""Which shard a session belongs to: the one hash every client and every node agree on.

Owns: ``shard_of`` and the hash's documented name. A session's shard is the IEEE CRC-32
(zlib's, the one in every language's standard library: Go ``hash/crc32.ChecksumIEEE``, Java
``java.util.zip.CRC32``, Node ``zlib.crc32``) of the session name's UTF-8 bytes, modulo the
cluster's shard count, which is fixed when the cluster is created. Must never: change (every
stored session would be looked for in the wrong shard), or depend on anything but the name and
the count.
"""

from __future__ import annotations

import zlib

#: The name ``ClusterStatus`` and the docs give the hash.
HASH_NAME = "crc32-ieee(utf8(session)) mod shard_count"

MAX_SHARDS = 256


def shard_of(session: str | bytes, shard_count: int) -> int:
    """The shard (0 .. shard_count - 1) that stores ``session``."""
    if shard_count < 1:
        raise ValueError(f"shard count must be at least 1, not {shard_count}")
    data = session.encode() if isinstance(session, str) else session
    return zlib.crc32(data) % shard_count
