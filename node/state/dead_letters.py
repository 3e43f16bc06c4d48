"""Dead letters: poison messages moved aside, never dropped, and resubmitted or purged on
request.

Owns: ``C/d/<sid><sequence >Q>`` (one ``DeadLetterRecord``, a copy of the payload so a trim
never loses it) and the dead-letter sequence and count in the session's ``C/m/`` policy record
(encodings in ``quorumlog.node.state.consumer_records``); moving a message to the dead-letter
log (from a receive past the max delivery count, or a settle); applying ``resubmit`` (append
the payloads again, then drop the records) and ``purge`` (drop the records for good, on an
operator's explicit request). Must never: drop a dead letter other than by resubmitting it,
purging it or deleting its session, or refuse a resubmit or a purge after changing anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import rocksdict

from quorumlog.node.common.limits import ErrorCode, InvalidInput, Limits
from quorumlog.node.state.consumer_overlay import (
    ConsumerBatch,
    SessionOps,
    SessionView,
    existing_session,
)
from quorumlog.node.state.consumer_records import (
    DEAD_PREFIX,
    POLICY_PREFIX,
    PURGE_LIMIT,
    RESUBMIT_LIMIT,
    refuse,
    scan,
)
from quorumlog.node.state.keys import U64, sid
from quorumlog.node.state.session_policies import policy_of
from quorumlog.proto import consumer_commands_pb2, consumer_pb2


def dead_letter(
    *,
    batch: SessionView,
    layer: ConsumerBatch,
    session: bytes,
    group: str,
    item: list[int],
    reason: str,
    now: int,
) -> None:
    """Copy the message of ``item`` (a cursor's [offset, delivery count, ...]) to the
    session's dead-letter log; the caller drops it from the cursor."""
    policy = policy_of(layer, session) or consumer_commands_pb2.SessionPolicy()
    sequence = policy.next_dead_letter
    policy.next_dead_letter += 1
    policy.dead_letters += 1
    layer.put(POLICY_PREFIX + sid(session), policy)
    record = consumer_commands_pb2.DeadLetterRecord(
        sequence=sequence,
        offset=item[0],
        group=group,
        reason=reason,
        delivery_count=item[1],
        dead_lettered_ms=now,
    )
    stored = batch.message(session, item[0])
    if stored is not None:
        record.data = stored.payload
        record.envelope = stored.envelope
        record.append_time_ms = stored.append_time_ms
    layer.put(DEAD_PREFIX + sid(session) + U64.pack(sequence), record)


def resubmit(
    batch: SessionView,
    layer: ConsumerBatch,
    ops: SessionOps,
    command: consumer_commands_pb2.ResubmitCommand,
    now: int,
    *,
    limits: Limits,
) -> consumer_pb2.ResubmitDeadLettersResponse:
    session, named = _request(batch, command.session, command.sequences, RESUBMIT_LIMIT, limits)
    session_sid = sid(session)
    sequences = named or _held_sequences(layer, session_sid, RESUBMIT_LIMIT)
    records: list[consumer_commands_pb2.DeadLetterRecord] = []
    total = 0
    for sequence in sequences:
        record = layer.message(
            DEAD_PREFIX + session_sid + U64.pack(sequence), consumer_commands_pb2.DeadLetterRecord
        )
        if record is None:
            raise InvalidInput(
                ErrorCode.NOT_FOUND,
                f"dead letter {sequence} of session {command.session!r} not found",
            )
        if (
            len(records) >= limits.max_messages_per_append
            or total + len(record.data) + len(record.envelope) > limits.max_append_bytes
        ):
            if command.sequences:
                raise InvalidInput(
                    ErrorCode.RESOURCE_EXHAUSTED, "dead letters too large for one append"
                )
            break
        total += len(record.data) + len(record.envelope)
        records.append(record)
    policy = policy_of(layer, session)
    if policy is not None and policy.closed:
        raise refuse(f"session {command.session!r} is closed")
    response = consumer_pb2.ResubmitDeadLettersResponse()
    if records:
        envelopes = [record.envelope for record in records]
        first, count = ops.append_messages(
            batch, command.session, [record.data for record in records], now,
            command.principal, envelopes=envelopes if any(envelopes) else [],
        )
        response.offsets.extend(range(first, first + count))
        for record in records:
            layer.delete(DEAD_PREFIX + session_sid + U64.pack(record.sequence))
        policy = policy_of(layer, session)
        assert policy is not None  # a dead letter exists, so does its counter
        policy.dead_letters -= len(records)
        layer.put(POLICY_PREFIX + session_sid, policy)
    policy = policy_of(layer, session)
    response.remaining = policy.dead_letters if policy is not None else 0
    return response


def purge(
    batch: SessionView,
    layer: ConsumerBatch,
    command: consumer_commands_pb2.PurgeCommand,
    *,
    limits: Limits,
) -> consumer_pb2.PurgeDeadLettersResponse:
    """Remove the named dead letters (all held, up to ``PURGE_LIMIT``, when none is named) for
    good. A closed session may be purged: nothing is appended."""
    session, sequences = _request(batch, command.session, command.sequences, PURGE_LIMIT, limits)
    session_sid = sid(session)
    if sequences:
        missing = [
            sequence for sequence in sequences
            if layer.raw_value(DEAD_PREFIX + session_sid + U64.pack(sequence)) is None
        ]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise InvalidInput(
                ErrorCode.NOT_FOUND,
                f"dead letter {missing[0]} of session {command.session!r} not found{more}",
            )
    else:
        sequences = _held_sequences(layer, session_sid, PURGE_LIMIT)
    response = consumer_pb2.PurgeDeadLettersResponse()
    policy = policy_of(layer, session)
    if sequences:
        assert policy is not None  # a dead letter exists, so does its counter
        for sequence in sequences:
            layer.delete(DEAD_PREFIX + session_sid + U64.pack(sequence))
        policy.dead_letters -= len(sequences)
        layer.put(POLICY_PREFIX + session_sid, policy)
        response.purged = len(sequences)
    response.remaining = policy.dead_letters if policy is not None else 0
    return response


def _request(
    batch: SessionView, session: str, sequences: Sequence[int], limit: int, limits: Limits
) -> tuple[bytes, list[int]]:
    """A resubmit's or purge's session (it must exist) and the sequences it names, each once
    (at most ``limit``)."""
    session_bytes, _, _ = existing_session(batch, session, limits)
    if len(sequences) > limit:
        raise InvalidInput(
            ErrorCode.RESOURCE_EXHAUSTED,
            f"{len(sequences)} dead letters; the limit is {limit} per call",
        )
    return session_bytes, list(dict.fromkeys(sequences))


def _held_sequences(layer: ConsumerBatch, session_sid: bytes, limit: int) -> list[int]:
    """Sequences of the session's dead letters (stored and written in this batch)."""
    prefix = DEAD_PREFIX + session_sid
    return [
        int(U64.unpack_from(key, len(prefix))[0])
        for key in layer.keys(prefix, prefix, limit)
    ]


# -- local reads (the applied state) ------------------------------------------------------------
def stored_dead_letters(
    db: rocksdict.Rdict, session: bytes, from_sequence: int, limit: int
) -> tuple[list[consumer_commands_pb2.DeadLetterRecord], bool]:
    """Up to ``limit`` dead letters from ``from_sequence``; True when more follow."""
    prefix = DEAD_PREFIX + sid(session)
    found = [
        consumer_commands_pb2.DeadLetterRecord.FromString(value)
        for _, value in scan(db, prefix, prefix + U64.pack(from_sequence), limit + 1)
    ]
    return found[:limit], len(found) > limit
