"""A message envelope's checks and limits (docs/envelope.md).

Owns: validating the ``quorumlog.v1.Envelope`` of each message of an append on the leader
(sizes, counts, unique header keys, id and media-type syntax, ``reply_to`` as a session
name) and turning it into the bytes the replicated state stores (one deterministic
serialization; an empty envelope stores nothing), and the apply-time checks of those bytes
(count and sizes only: the leader checked the syntax, and a rule here must give the same
answer on every replica). Must never: read a clock, touch the state, or accept an envelope
it did not check field by field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from quorumlog.node.common.limits import (
    DEFAULT_LIMITS,
    ErrorCode,
    InvalidInput,
    Limits,
    check_name,
    check_session_id,
)
from quorumlog.proto import envelope_pb2

MAX_HEADERS = 64
MAX_HEADER_KEY_BYTES = 256
MAX_HEADER_VALUE_BYTES = 16 << 10
MAX_ID_BYTES = 256  # message_id, correlation_id, subject, content_type
MAX_ENVELOPE_BYTES = 64 << 10  # one message's envelope, serialized
MAX_TIME_TO_LIVE_MS = 366 * 24 * 3600 * 1000
MAX_SCHEDULE_AHEAD_MS = 366 * 24 * 3600 * 1000  # deliver_at at most this far past the clock

# RFC 9110 media type: type "/" subtype *( OWS ";" OWS parameter ); parameter values are
# tokens or quoted strings.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x09\x20-\x7e])*"'
_MEDIA_TYPE = re.compile(
    rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))*"
)


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(ErrorCode.INVALID_ARGUMENT, message)


def check_envelope(envelope: envelope_pb2.Envelope, position: int,
                   limits: Limits = DEFAULT_LIMITS, now_ms: int = 0) -> bytes:
    """The bytes to store for message ``position``'s envelope (empty: it has none), or
    ``InvalidInput`` naming the message and the field (``now_ms``: the leader's clock, which
    a ``deliver_at_ms`` may not lie too far beyond; 0: not checked)."""
    if envelope.ByteSize() == 0:
        return b""
    where = f"message {position}"
    if envelope.time_to_live_ms > MAX_TIME_TO_LIVE_MS:
        raise _invalid(
            f"{where}: time_to_live_ms {envelope.time_to_live_ms} is over the limit of "
            f"{MAX_TIME_TO_LIVE_MS}"
        )
    if now_ms and envelope.deliver_at_ms > now_ms + MAX_SCHEDULE_AHEAD_MS:
        raise _invalid(
            f"{where}: deliver_at_ms {envelope.deliver_at_ms} is more than 366 days after the "
            f"leader's clock ({now_ms})"
        )
    for field in ("message_id", "correlation_id", "subject"):
        check_name(f"{where}: {field}", getattr(envelope, field), 0, MAX_ID_BYTES)
    if envelope.content_type:
        check_name(f"{where}: content_type", envelope.content_type, 0, MAX_ID_BYTES)
        if not _MEDIA_TYPE.fullmatch(envelope.content_type):
            raise _invalid(
                f"{where}: content_type {envelope.content_type!r} is not a media type "
                "(type/subtype[; name=value]...)"
            )
    if envelope.reply_to:
        try:
            check_session_id(envelope.reply_to, limits)
        except InvalidInput as error:
            raise _invalid(f"{where}: reply_to: {error.message}") from None
    if len(envelope.headers) > MAX_HEADERS:
        raise _invalid(f"{where} has {len(envelope.headers)} headers; the limit is {MAX_HEADERS}")
    seen: set[str] = set()
    for header in envelope.headers:
        check_name(f"{where}: header key", header.key, 1, MAX_HEADER_KEY_BYTES)
        if header.key in seen:
            raise _invalid(f"{where}: header {header.key!r} appears twice")
        seen.add(header.key)
        kind = header.WhichOneof("value")
        if kind is None:
            raise _invalid(f"{where}: header {header.key!r} has no value (text or binary)")
        size = len(header.binary) if kind == "binary" else len(header.text.encode("utf-8"))
        if size > MAX_HEADER_VALUE_BYTES:
            raise _invalid(
                f"{where}: header {header.key!r} is {size} bytes; the limit is "
                f"{MAX_HEADER_VALUE_BYTES}"
            )
    stored = envelope.SerializeToString(deterministic=True)
    if len(stored) > MAX_ENVELOPE_BYTES:
        raise _invalid(
            f"{where}: envelope is {len(stored)} bytes; the limit is {MAX_ENVELOPE_BYTES}"
        )
    return stored


def check_envelopes(envelopes: Sequence[envelope_pb2.Envelope], count: int, payload_bytes: int,
                    limits: Limits = DEFAULT_LIMITS, now_ms: int = 0) -> list[bytes]:
    """An append's envelopes as stored: empty when it has none (or only empty ones), else
    one per message. ``count`` and ``payload_bytes``: the append's messages."""
    if not envelopes:
        return []
    if len(envelopes) != count:
        raise _invalid(
            f"append carries {len(envelopes)} envelopes for {count} messages "
            "(give none, or one per message)"
        )
    stored = [
        check_envelope(envelope, i, limits, now_ms) for i, envelope in enumerate(envelopes)
    ]
    if not any(stored):
        return []
    check_stored_envelopes(stored, count, payload_bytes, limits)
    return stored


def check_stored_envelopes(stored: Sequence[bytes], count: int, payload_bytes: int,
                           limits: Limits = DEFAULT_LIMITS) -> int:
    """Apply-time checks of an append's stored envelopes (the leader built them): one per
    message, each within :data:`MAX_ENVELOPE_BYTES`, and payloads plus envelopes within the
    append limit. Their total bytes."""
    if len(stored) != count:
        raise _invalid(f"append carries {len(stored)} envelopes for {count} messages")
    total = 0
    for position, envelope in enumerate(stored):
        if len(envelope) > MAX_ENVELOPE_BYTES:
            raise _invalid(
                f"message {position}: envelope is {len(envelope)} bytes; the limit is "
                f"{MAX_ENVELOPE_BYTES}"
            )
        total += len(envelope)
    if payload_bytes + total > limits.max_append_bytes:
        raise InvalidInput(
            ErrorCode.RESOURCE_EXHAUSTED,
            f"append carries {payload_bytes + total} bytes with its envelopes; the limit is "
            f"{limits.max_append_bytes}",
        )
    return total
