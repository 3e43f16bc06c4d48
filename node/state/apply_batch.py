"""One ``apply`` call's write batch and read-your-writes view of the session keys, and the
bounded caches carried from one call to the next.

Owns: the call's ``rocksdict.WriteBatch`` (every write of the call goes into it, so the call is
one atomic write), the session metadata and producer rings as this call changed them, the
payloads it appended (a trim or a receive in the same call reads them), a session's delete
(``S/``, ``s/``, ``p/`` and, through the consumer hook, ``C/`` ranges), and the caches of
recent sessions' metadata and producer rings kept between calls. It is the ``SessionView`` the
consumer modules read through. Must never: outlive its call (its size is bounded by the
entries applied), mutate a cached value in place (copied on first use), or let a cache grow
past its bound (cleared whole when full).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

import rocksdict

from quorumlog.node.state.consumer_overlay import ConsumerBatch
from quorumlog.node.state.consumer_state import ConsumerState
from quorumlog.node.state.dedup import checked_ring, producer_key, producer_range
from quorumlog.node.state.errors import StateCorrupted
from quorumlog.node.state.keys import APPLIED_KEY, SESSION_PREFIX, U64, successor
from quorumlog.node.state.session_records import (
    SessionMeta,
    StoredMessage,
    cumulative_of,
    decode_message,
    load_meta,
    message_key,
    message_prefix,
)

#: One append of an apply call: (first offset, cumulative payload bytes before it, payloads,
#: envelopes (empty, or one per payload), the append's leader time).
Appended = tuple[int, int, list[bytes], list[bytes], int]

# Session metadata of recently applied sessions kept between apply calls (values as written;
# cleared whole when full, so memory stays bounded whatever the number of sessions).
META_CACHE_SIZE = 4096
# Producer rings (encoded, at most PRODUCER_BATCHES_KEPT * 20 bytes each) kept between apply
# calls, so a steady producer's dedup state is not read from RocksDB on every append; cleared
# whole when full (about 3 MB at most), when a call deleted a session, and on an import.
RING_CACHE_SIZE = 8192


class ApplyBatch:
    """The write batch of one ``apply`` call, plus what it changed so far (read-your-writes
    inside the call). Lives only for the call: its size is bounded by the entries applied."""

    __slots__ = (
        "appended", "bindings", "cache", "consumer", "consumers", "db", "deleted", "dirty_metas",
        "metas", "raw", "ring_cache", "rings",
    )

    def __init__(
        self,
        db: rocksdict.Rdict,
        cache: dict[bytes, SessionMeta | None],
        ring_cache: dict[tuple[bytes, bytes], bytes | None],
        consumers: ConsumerState,
        raw: rocksdict.WriteBatch,
    ) -> None:
        self.db = db
        self.consumers = consumers
        self.consumer: ConsumerBatch | None = None  # the consumer keys' overlay, when used
        self.cache = cache  # written state only: never mutated here (copied on first use)
        self.ring_cache = ring_cache  # written rings only (bytes are immutable: no copies)
        self.raw = raw  # empty; its writes go to the group's keys
        self.metas: dict[bytes, SessionMeta | None] = {}
        self.dirty_metas: set[bytes] = set()
        self.rings: dict[tuple[bytes, bytes], bytes | None] = {}  # encoded, as in ``p/``
        self.deleted: set[bytes] = set()  # sessions deleted in this call (producer keys gone)
        # Appends of this call per session, for a trim inside the same call:
        # (first offset, cumulative bytes before it, payloads).
        # session -> [(first offset, cumulative bytes before it, payloads, envelopes (empty
        # or one per payload), the append's leader time)] of the appends of this call
        self.appended: dict[bytes, list[Appended]] = {}
        self.bindings: dict[bytes, bytes] = {}  # producer -> principal bound in this call

    def meta(self, session: bytes) -> SessionMeta | None:
        try:
            return self.metas[session]
        except KeyError:
            pass
        try:
            cached = self.cache[session]
        except KeyError:
            meta = load_meta(self.db, session)
        else:
            meta = None if cached is None else cached.copy()
        self.metas[session] = meta
        return meta

    # -- what the consumer modules read (their ``SessionView``) ------------------------------
    def meta_range(self, session: bytes) -> tuple[int, int] | None:
        meta = self.meta(session)
        return None if meta is None else (meta.first, meta.next)

    def total_bytes(self, session: bytes) -> int:
        meta = self.meta(session)
        return 0 if meta is None else meta.end_bytes

    def last_append(self, session: bytes) -> int:
        meta = self.meta(session)
        return 0 if meta is None else meta.last_append_ms

    def live_sessions(self, start: bytes, upper: bytes) -> Iterator[bytes]:
        """Names of the sessions whose ``S/<name>`` keys fall in [start, upper), in order, as
        of this point of the call (stored ones merged with those this call created or
        deleted), so a listing never depends on how entries were grouped into calls."""
        created = sorted(
            name for name, meta in self.metas.items()
            if meta is not None and start <= SESSION_PREFIX + name < upper
        )
        options = rocksdict.ReadOptions()
        options.set_iterate_upper_bound(upper)
        iterator = self.db.iter(options)
        iterator.seek(start)

        def stored() -> Iterator[bytes]:
            while iterator.valid():
                key: bytes = iterator.key()
                yield key[len(SESSION_PREFIX) :]
                iterator.next()
            iterator.status()  # an iteration that stopped on damaged data raises here

        previous = None
        for name in heapq.merge(stored(), created):
            if name != previous and self.meta(name) is not None:
                yield name
            previous = name

    def message(self, session: bytes, offset: int) -> StoredMessage | None:
        """The message at ``offset`` as of this point of the call (None: not there)."""
        for first, cumulative, payloads, envelopes, time_ms in self.appended.get(session, ()):
            if first <= offset < first + len(payloads):
                at = offset - first
                return StoredMessage(
                    cumulative + sum(map(len, payloads[:at])), time_ms,
                    envelopes[at] if envelopes else b"", payloads[at],
                )
        value: bytes | None = self.db.get(message_key(session, offset))
        return None if value is None else decode_message(session, offset, value)

    def cumulative_before(self, session: bytes, offset: int) -> int:
        for first, cumulative, payloads, _, _ in self.appended.get(session, ()):
            if first <= offset < first + len(payloads):
                return cumulative + sum(map(len, payloads[: offset - first]))
        value = self.db.get(message_key(session, offset))
        if value is None:
            raise StateCorrupted(f"session {session!r}: message {offset} missing")
        return cumulative_of(session, offset, value)

    # -- producer rings -----------------------------------------------------------------------
    def ring(self, session: bytes, producer: bytes) -> bytes | None:
        """The producer's ring as stored (encoded), None when it has none."""
        cache_key = (session, producer)
        try:
            return self.rings[cache_key]
        except KeyError:
            pass
        ring: bytes | None = None
        if session not in self.deleted:
            try:
                ring = self.ring_cache[cache_key]
            except KeyError:
                value = self.db.get(producer_key(session, producer))
                ring = None if value is None else checked_ring(value)
        self.rings[cache_key] = ring
        return ring

    # -- a session's delete, the end of the call ------------------------------------------------
    def delete_session(self, session: bytes) -> None:
        self.consumers.on_delete(self, session)
        raw = self.raw
        raw.delete(SESSION_PREFIX + session)
        messages = message_prefix(session)
        raw.delete_range(messages, successor(messages))
        raw.delete_range(*producer_range(session))
        self.metas[session] = None
        self.dirty_metas.discard(session)
        self.deleted.add(session)
        self.appended.pop(session, None)
        for cache_key in [key for key in self.rings if key[0] == session]:
            self.rings[cache_key] = None

    def finish(self, applied_index: int) -> rocksdict.WriteBatch:
        """Queue the consumer overlay, the changed metadata (after every range delete of the
        call, so they win over them) and the applied index."""
        put = self.raw.put
        if self.consumer is not None:
            self.consumer.flush(self.raw)
        for session in sorted(self.dirty_metas):
            meta = self.metas[session]
            if meta is not None:
                put(SESSION_PREFIX + session, meta.encode())
        put(APPLIED_KEY, U64.pack(applied_index))
        return self.raw

    def update_cache(self) -> None:
        """After the batch is written: remember what this call left (bounded)."""
        cache = self.cache
        if len(cache) + len(self.metas) > META_CACHE_SIZE:
            cache.clear()
        cache.update(self.metas)
        ring_cache = self.ring_cache
        if self.deleted or len(ring_cache) + len(self.rings) > RING_CACHE_SIZE:
            ring_cache.clear()  # a deleted session's rings may be cached from earlier calls
        ring_cache.update(self.rings)
