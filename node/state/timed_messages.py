"""Messages with a delivery time (scheduled) or a time to live (docs/envelope.md#scheduled-
delivery-and-time-to-live).

Owns: ``C/e/<sid><offset>`` (``>QQB``: deliver at, expires at, canceled; encodings here, key
table in ``quorumlog.node.state.consumer_records``), written when such a message is appended
and marking its session's policy ``timed`` so receives of other sessions never look;
canceling scheduled messages; dropping the entries of trimmed offsets; the answers receive
needs (is this message due, expired, canceled) and the local listing of scheduled messages.
Must never: read a clock (times are the entries' leader times, ``ConsumerBatch.now``), or
delete a message from the session log (readers of the raw log see every message, with its
``deliver_at_ms`` in the envelope).

Times: ``deliver_at`` is the envelope's ``deliver_at_ms`` when it lies after the append's time
(else 0: at once); ``expires_at`` is the append's time plus ``time_to_live_ms`` (0: never).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

import rocksdict

from quorumlog.node.common.limits import ErrorCode, InvalidInput, Limits
from quorumlog.node.state.consumer_overlay import ConsumerBatch, SessionView, existing_session
from quorumlog.node.state.consumer_records import POLICY_PREFIX, TIMED_PREFIX, refuse, scan
from quorumlog.node.state.keys import U64, sid
from quorumlog.node.state.session_policies import policy_of
from quorumlog.proto import consumer_commands_pb2, consumer_pb2

_TIMING = struct.Struct(">QQB")
TRIM_LIMIT = 10_000  # entries of trimmed offsets dropped per trim at most
MAX_CANCEL = 1_000


class Timing(NamedTuple):
    deliver_at: int  # leader ms; 0: at once
    expires_at: int  # leader ms; 0: never
    canceled: bool

    def encode(self) -> bytes:
        return _TIMING.pack(self.deliver_at, self.expires_at, int(self.canceled))

    @staticmethod
    def decode(value: bytes) -> Timing:
        deliver_at, expires_at, canceled = _TIMING.unpack(value)
        return Timing(deliver_at, expires_at, bool(canceled))


def _key(session: bytes, offset: int) -> bytes:
    return TIMED_PREFIX + sid(session) + U64.pack(offset)


def record(
    layer: ConsumerBatch, session: bytes, timings: Sequence[tuple[int, Timing]]
) -> None:
    """Remember the ``(offset, timing)`` of messages an append wrote."""
    if not timings:
        return
    for offset, timing in timings:
        layer.put(_key(session, offset), timing.encode())
    policy = policy_of(layer, session) or consumer_commands_pb2.SessionPolicy()
    if not policy.timed:
        policy.timed = True
        layer.put(POLICY_PREFIX + sid(session), policy)


def timing_of(layer: ConsumerBatch, session: bytes, offset: int) -> Timing | None:
    value = layer.raw_value(_key(session, offset))
    return None if value is None else Timing.decode(value)


def timings_in(
    layer: ConsumerBatch, session: bytes, low: int, high: int
) -> dict[int, Timing]:
    """The timings of offsets in [low, high)."""
    if high <= low:
        return {}
    prefix = TIMED_PREFIX + sid(session)
    found: dict[int, Timing] = {}
    for key in layer.keys(prefix, prefix + U64.pack(low), high - low):
        offset: int = U64.unpack_from(key, len(prefix))[0]
        if offset >= high:
            break
        value = layer.raw_value(key)
        if value is not None:
            found[offset] = Timing.decode(value)
    return found


def on_trim(layer: ConsumerBatch, session: bytes, before: int) -> None:
    """The session was trimmed below ``before``: drop the entries of those offsets."""
    prefix = TIMED_PREFIX + sid(session)
    for key in layer.keys(prefix, prefix, TRIM_LIMIT):
        if U64.unpack_from(key, len(prefix))[0] >= before:
            break
        layer.delete(key)


def cancel(
    batch: SessionView,
    layer: ConsumerBatch,
    command: consumer_commands_pb2.CancelScheduledCommand,
    now: int,
    limits: Limits,
) -> consumer_pb2.CancelScheduledResponse:
    """Cancel scheduled messages not yet due: all of them or none (the refusal says which
    one is not)."""
    session, _, _ = existing_session(batch, command.session, limits)
    if not command.offsets:
        raise InvalidInput(ErrorCode.INVALID_ARGUMENT, "cancel names no offsets")
    if len(command.offsets) > MAX_CANCEL:
        raise InvalidInput(
            ErrorCode.RESOURCE_EXHAUSTED,
            f"cancel of {len(command.offsets)} messages; the limit is {MAX_CANCEL}",
        )
    where = f"session {command.session!r}"
    chosen: dict[int, Timing] = {}
    for offset in command.offsets:
        timing = timing_of(layer, session, offset)
        if timing is None or not timing.deliver_at:
            raise refuse(f"offset {offset} of {where} is not a scheduled message")
        if timing.canceled:
            raise refuse(f"offset {offset} of {where} is canceled already")
        if timing.deliver_at <= now:
            raise refuse(
                f"offset {offset} of {where} was due at {timing.deliver_at} (now {now}): "
                "it may have been delivered"
            )
        chosen[offset] = timing
    for offset, timing in chosen.items():
        layer.put(_key(session, offset), timing._replace(canceled=True).encode())
    return consumer_pb2.CancelScheduledResponse()


# -- local reads (the applied state) ------------------------------------------------------------
def stored_scheduled(
    db: rocksdict.Rdict, session: bytes, now: int, include_due: bool, limit: int
) -> list[consumer_pb2.ScheduledMessage]:
    """Scheduled messages of ``session`` by offset (not yet due unless ``include_due``)."""
    prefix = TIMED_PREFIX + sid(session)
    found: list[consumer_pb2.ScheduledMessage] = []
    for key, value in scan(db, prefix, prefix, 1 << 62):
        timing = Timing.decode(value)
        if not timing.deliver_at or (timing.deliver_at <= now and not include_due):
            continue
        found.append(consumer_pb2.ScheduledMessage(
            offset=U64.unpack_from(key, len(prefix))[0], deliver_at_ms=timing.deliver_at,
            canceled=timing.canceled,
        ))
        if len(found) >= limit:
            break
    return found
