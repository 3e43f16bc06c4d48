"""Duplicate detection by ``message_id``: a session remembers the ids of its messages for a
window of time (docs/envelope.md#duplicate-detection).

Owns: ``C/i/<sid><id>`` (``>QQ``: the offset the id was written at and the time it was
recorded) and ``C/j/<sid><time >Q><id>`` (the same ids ordered by that time, so expired ones
are found without a scan of the live ones), read and written through the apply call's
``ConsumerBatch`` so that what an append sees never depends on how entries were grouped into
apply calls; judging an append's ids (a message whose id is remembered within the window, or
repeated earlier in the same append, is a duplicate: it is not written and answers with the
original offset); and pruning expired ids, at most ``ID_PRUNE`` per append. Must never: read a
clock (time is the apply's monotonic leader clock, ``ConsumerBatch.now``), judge by anything
but the stored bytes, or keep ids beyond one apply call in memory.

An id is remembered from the append that wrote it until ``window`` ms later (the session
policy's ``duplicate_window_ms``, default :data:`DEFAULT_DUPLICATE_WINDOW_MS`). A duplicate
does not extend it. Expired ids are removed on a later append to the session (the lookups
compare times, so an expired id is never honoured even before it is removed).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from quorumlog.node.state.consumer_overlay import ConsumerBatch
from quorumlog.node.state.consumer_records import ID_PREFIX, ID_TIME_PREFIX
from quorumlog.node.state.keys import U64, sid
from quorumlog.proto import consumer_commands_pb2, envelope_pb2

DEFAULT_DUPLICATE_WINDOW_MS = 10 * 60 * 1000
ID_PRUNE = 10_000  # expired ids removed per pass at most
PRUNE_PAGE = 256  # time-index entries read at once while pruning
PRUNE_EVERY_MS = 1_000  # a session's expired ids are looked for at most once per second
_RECORD = struct.Struct(">QQ")


def parse_envelopes(envelopes: Sequence[bytes]) -> list[envelope_pb2.Envelope | None]:
    """Each stored envelope decoded (None for none)."""
    return [envelope_pb2.Envelope.FromString(stored) if stored else None for stored in envelopes]


def message_ids(parsed: Sequence[envelope_pb2.Envelope | None]) -> list[str]:
    """The ``message_id`` of each envelope ("" for none)."""
    return [envelope.message_id if envelope is not None else "" for envelope in parsed]


def window_of(policy: consumer_commands_pb2.SessionPolicy | None) -> int:
    if policy is None or not policy.duplicate_window_ms:
        return DEFAULT_DUPLICATE_WINDOW_MS
    return int(policy.duplicate_window_ms)


def judge(
    layer: ConsumerBatch, session: bytes, ids: Sequence[str], *, first: int, now: int,
    window: int,
) -> tuple[list[int], list[int]]:
    """For an append whose messages carry ``ids`` and whose first new message would go at
    ``first``: (the offset of every message, the positions of the duplicates)."""
    session_sid = sid(session)
    offsets: list[int] = []
    duplicates: list[int] = []
    seen: dict[str, int] = {}
    next_offset = first
    for position, message_id in enumerate(ids):
        if message_id:
            known = seen.get(message_id)
            if known is None:
                stored = layer.raw_value(ID_PREFIX + session_sid + message_id.encode("utf-8"))
                if stored is not None:
                    offset, recorded = _RECORD.unpack(stored)
                    if now - recorded < window:
                        known = offset
            if known is not None and known == next_offset:
                # Only a retry of this very append (its producer sequence already written)
                # finds its own id at the offset it is about to take: written by that try.
                known = None
            if known is not None:
                offsets.append(known)
                duplicates.append(position)
                seen[message_id] = known
                continue
            seen[message_id] = next_offset
        offsets.append(next_offset)
        next_offset += 1
    return offsets, duplicates


def record(
    layer: ConsumerBatch, session: bytes, ids: Sequence[str],
    judged: tuple[Sequence[int], Sequence[int]], now: int,
) -> None:
    """Remember the ids of the messages this append wrote (``judged``: ``judge``'s answer)."""
    offsets, duplicates = judged
    session_sid = sid(session)
    skipped = set(duplicates)
    for position, message_id in enumerate(ids):
        if not message_id or position in skipped:
            continue
        encoded = message_id.encode("utf-8")
        key = ID_PREFIX + session_sid + encoded
        stored = layer.raw_value(key)
        if stored is not None:  # an expired record of the same id: drop its time entry
            layer.delete(ID_TIME_PREFIX + session_sid + stored[8:16] + encoded)
        layer.put(key, _RECORD.pack(offsets[position], now))
        layer.put(ID_TIME_PREFIX + session_sid + U64.pack(now) + encoded, b"")


def prune(layer: ConsumerBatch, session: bytes, now: int, window: int) -> int:
    """Remove up to :data:`ID_PRUNE` ids of ``session`` recorded ``window`` ms or more
    before ``now``; how many. Reads the time index a page at a time from its oldest entry,
    so a session with many live ids costs one short page when none has expired."""
    prefix = ID_TIME_PREFIX + sid(session)
    id_prefix = ID_PREFIX + sid(session)
    removed = 0
    start = prefix
    page_size = 1  # the common case: the oldest id is not expired yet
    while removed < ID_PRUNE:
        page = layer.keys(prefix, start, min(page_size, ID_PRUNE - removed))
        if not page:
            break
        for key in page:
            recorded: int = U64.unpack_from(key, len(prefix))[0]
            if now - recorded < window:
                return removed
            encoded = key[len(prefix) + 8 :]
            layer.delete(key)
            stored = layer.raw_value(id_prefix + encoded)
            if stored is not None and _RECORD.unpack(stored)[1] == recorded:
                layer.delete(id_prefix + encoded)
            removed += 1
        start = page[-1] + b"\x00"  # the next key after the page
        page_size = PRUNE_PAGE
    return removed
