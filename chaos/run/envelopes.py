"""The chaos run's message envelopes: every value a producer writes carries an envelope
derived from the value alone, so every observer can tell whether it came back byte for byte.

Owns: :func:`envelope_for` (``message_id`` = the value, so a re-sent value is a duplicate by id;
``correlation_id``; a text header holding the value and a binary header holding the first 8
bytes of its SHA-256, kept in that order; and, for a value ``p1-7@<ms>``, that delivery time)
and :func:`observed` (the value as an observer records it: the value itself when its envelope is
exactly the expected one, else the value with :data:`MISMATCH` and what differed appended, which
the checker reports as ``envelope_mismatch``). Must never: draw randomness or read a clock (both
sides must derive the same envelope from the value).
"""

from __future__ import annotations

import hashlib

from quorumlog.proto import envelope_pb2

MISMATCH = " !envelope: "
SCHEDULED = "@"  # a value ``p1-7@<ms>`` is scheduled for delivery at that leader time


def scheduled_at(value: str) -> int:
    """The delivery time a scheduled value names (``p1-7@<ms>``), 0 for any other."""
    _, at, when = value.rpartition(SCHEDULED)
    return int(when) if at and when.isdigit() else 0


def envelope_for(value: str) -> envelope_pb2.Envelope:
    digest = hashlib.sha256(value.encode("utf-8")).digest()[:8]
    return envelope_pb2.Envelope(
        message_id=value, correlation_id=f"c/{value}",
        headers=[envelope_pb2.Header(key="v", text=value),
                 envelope_pb2.Header(key="h", binary=digest)],
        deliver_at_ms=scheduled_at(value),
    )


def observed(data: bytes, envelope: envelope_pb2.Envelope | None) -> str:
    """``data`` as recorded: the value, or the value marked with what its envelope got wrong."""
    value = data.decode("utf-8", "replace")
    expected = envelope_for(value).SerializeToString(deterministic=True)
    if envelope is None:
        return f"{value}{MISMATCH}missing"
    found = envelope.SerializeToString(deterministic=True)
    if found != expected:
        return f"{value}{MISMATCH}{found.hex()} != {expected.hex()}"
    return value


def observed_record(record: object) -> str:
    """:func:`observed` of a protobuf ``Record`` / ``ReceivedMessage`` / ``DeadLetter``."""
    envelope = record.envelope if record.HasField("envelope") else None  # type: ignore[attr-defined]
    return observed(record.data, envelope)  # type: ignore[attr-defined]
