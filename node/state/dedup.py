"""Idempotent producers: the per-(session, producer) ring of latest appends and the verdict
on a retry.

Owns: the ``p/`` keys' encoding (the ring), how many batches a ring keeps (part of the
replicated format: changing it changes what a retry is answered), and the judgement of an
append's ``(producer_id, sequence)`` against the ring. Must never: write to the database
itself (the apply batch, ``quorumlog.node.state.apply_batch``, caches and queues the rings),
or decode a whole ring on the common path (a new append reads only its newest batch).

Keys (see ``quorumlog.node.state.keys`` for the map and the ``<sid>`` encoding):

=============================  ================================================================
key                            value
=============================  ================================================================
``p/<sid><producer UTF-8>``    idempotent producer state: up to ``PRODUCER_BATCHES_KEPT``
                               ``>QIQ`` (first sequence, message count, first offset) of its
                               latest appends, oldest first
=============================  ================================================================

An append with a producer id whose first sequence is at or above the producer's high-water
mark (the end of its latest append) is new; gaps are allowed. Below it:

- inside one remembered batch (the common retry: the same batch again) -> ``duplicate`` with
  the original offsets (a sub-range gets the sub-range's offsets);
- straddling the high-water mark, or overlapping remembered batches without lying inside one
  -> ``INVALID_ARGUMENT`` (a partial overlap: part of it was written, part was not);
- entirely in a gap between remembered batches -> ``INVALID_ARGUMENT`` (out of order: those
  sequences were skipped);
- entirely older than every remembered batch -> ``duplicate`` with ``count == 0`` and
  ``first_offset == 0``: written long ago, offsets no longer known (a retry must never write
  twice, and the producer has moved on since).

A session's delete removes its rings with it (one range: ``producer_range``).
"""

from __future__ import annotations

import struct

from quorumlog.node.common.limits import ErrorCode
from quorumlog.node.replication.applier import CommandError
from quorumlog.node.state.errors import StateCorrupted
from quorumlog.node.state.keys import PRODUCER_PREFIX, sid, successor
from quorumlog.node.state.session_records import AppendResult

# Part of the replicated format: changing it changes what a retry is answered.
PRODUCER_BATCHES_KEPT = 16

_PRODUCER_BATCH = struct.Struct(">QIQ")

Ring = list[tuple[int, int, int]]  # (first sequence, count, first offset), oldest first
# Rings stay encoded (the ``p/`` value) on the apply path: an append reads only the newest
# batch and pushes one, so the whole ring is decoded only to judge a retry.
_RING_KEPT_BYTES = (PRODUCER_BATCHES_KEPT - 1) * _PRODUCER_BATCH.size


def producer_key(session: bytes, producer: bytes) -> bytes:
    return PRODUCER_PREFIX + sid(session) + producer


def producer_range(session: bytes) -> tuple[bytes, bytes]:
    """[start, end) of every ring of the session."""
    producers = PRODUCER_PREFIX + sid(session)
    return producers, successor(producers)


def checked_ring(value: bytes) -> bytes:
    if not value or len(value) % _PRODUCER_BATCH.size:
        raise StateCorrupted(f"producer state of {len(value)} bytes")
    return value


def decode_ring(value: bytes) -> Ring:
    return list(_PRODUCER_BATCH.iter_unpack(checked_ring(value)))


def push_ring(value: bytes | None, sequence: int, count: int, first: int) -> bytes:
    """The ring after one more batch: the newest PRODUCER_BATCHES_KEPT batches."""
    pushed = _PRODUCER_BATCH.pack(sequence, count, first)
    return value[-_RING_KEPT_BYTES:] + pushed if value else pushed


def check_sequence(
    session: str, producer: str, encoded: bytes, sequence: int, count: int
) -> AppendResult | CommandError | None:
    """None for a new append; otherwise the duplicate's result or the error (module doc).
    ``encoded`` is the stored ring; only a retry's check decodes all of it."""
    last_sequence, last_count, _ = _PRODUCER_BATCH.unpack_from(
        encoded, len(encoded) - _PRODUCER_BATCH.size
    )
    high = last_sequence + last_count
    if sequence >= high:
        return None
    ring = decode_ring(encoded)
    end = sequence + count
    span = f"sequences {sequence}..{end - 1} of producer {producer!r} in session {session!r}"
    if end > high:
        return CommandError(
            ErrorCode.INVALID_ARGUMENT,
            f"{span} partially overlap what it already wrote (up to sequence {high - 1})",
        )
    for batch_sequence, batch_count, batch_offset in reversed(ring):
        batch_end = batch_sequence + batch_count
        if batch_sequence <= sequence and end <= batch_end:
            return AppendResult(session, batch_offset + sequence - batch_sequence, count, True)
        if sequence < batch_end and batch_sequence < end:
            return CommandError(
                ErrorCode.INVALID_ARGUMENT,
                f"{span} partially overlap its append of sequences "
                f"{batch_sequence}..{batch_end - 1}",
            )
    if end <= ring[0][0]:
        return AppendResult(session, 0, 0, True)
    return CommandError(
        ErrorCode.INVALID_ARGUMENT,
        f"{span} are out of order: the producer skipped them and has written up to {high - 1}",
    )
