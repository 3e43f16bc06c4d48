"""Session policies: TTLs, retention, closing, and the sweep that enforces them.

Owns: ``C/m/<sid>`` (the ``SessionPolicy`` record; its dead-letter counters are
``quorumlog.node.state.dead_letters``'), ``C/t/<sid>...`` (the time index of sessions with an
age policy), ``C/policies`` (how many sessions need sweeps) and ``C/sweep`` (where the last
sweep stopped) — encodings in ``quorumlog.node.state.consumer_records``; applying
``configure``, ``close`` and ``sweep``; the append hook (a closed session refuses appends, an
aged one indexes them by leader time) and the delete hook's policy count; consumer activity
that keeps a session with a TTL alive. Must never: read a clock (a sweep's "now" is the
entry's leader time), or sweep an unbounded number of sessions or index entries in one
command (``SWEEP_LIMIT``, ``TIME_INDEX_PRUNE``).
"""

from __future__ import annotations

import rocksdict

from quorumlog.node.common.limits import Limits
from quorumlog.node.state.consumer_overlay import (
    ConsumerBatch,
    SessionOps,
    SessionView,
    existing_session,
)
from quorumlog.node.state.consumer_records import (
    POLICIES_KEY,
    POLICY_PREFIX,
    SWEEP_KEY,
    SWEEP_LIMIT,
    TIME,
    TIME_INDEX_PRUNE,
    TIME_PREFIX,
    check_duration,
    needs_time_index,
    policy_has_sweep,
    refuse,
)
from quorumlog.node.state.keys import U16, U64, sid
from quorumlog.proto import consumer_commands_pb2, consumer_pb2


def policy_of(
    layer: ConsumerBatch, session: bytes
) -> consumer_commands_pb2.SessionPolicy | None:
    return layer.message(POLICY_PREFIX + sid(session), consumer_commands_pb2.SessionPolicy)


def touch(layer: ConsumerBatch, session: bytes, now: int) -> None:
    """Consumer activity keeps a session with a TTL alive."""
    policy = policy_of(layer, session)
    if policy is not None and policy.session_ttl_ms and policy.last_activity_ms < now:
        policy.last_activity_ms = now
        layer.put(POLICY_PREFIX + sid(session), policy)


def _count_policies(layer: ConsumerBatch, delta: int) -> None:
    value = layer.raw_value(POLICIES_KEY)
    count = (0 if value is None else U64.unpack(value)[0]) + delta
    layer.put(POLICIES_KEY, U64.pack(max(0, count)))


def first_live(layer: ConsumerBatch, session: bytes, cutoff: int, end: int) -> int:
    """The first offset appended at or after ``cutoff`` (leader ms), by the time index."""
    prefix = TIME_PREFIX + sid(session)
    keys = layer.keys(prefix, prefix + U64.pack(cutoff), 1)
    return int(TIME.unpack_from(keys[0], len(prefix))[1]) if keys else end


# -- hooks (the session side calls them through ``ConsumerState``) -------------------------------
def before_append(layer: ConsumerBatch, session: bytes, first: int, now: int) -> None:
    """Before an append to an existing session is written: refuse a closed session, keep the
    time index of a session with an age policy."""
    policy = policy_of(layer, session)
    if policy is None:
        return
    if policy.closed:
        raise refuse(f"session {session.decode('utf-8')!r} is closed")
    if needs_time_index(policy):
        time = layer.now(now)
        layer.put(TIME_PREFIX + sid(session) + TIME.pack(time, first), b"")


def before_delete(layer: ConsumerBatch, session: bytes) -> None:
    """The session is being deleted: it no longer counts among those needing sweeps."""
    policy = policy_of(layer, session)
    if policy is not None and policy_has_sweep(policy):
        _count_policies(layer, -1)


# -- commands -----------------------------------------------------------------------------------
def configure(
    batch: SessionView,
    layer: ConsumerBatch,
    command: consumer_commands_pb2.ConfigureSessionCommand,
    limits: Limits,
) -> consumer_pb2.ConfigureSessionResponse:
    session, _, _ = existing_session(batch, command.session, limits)
    for what, value in (
        ("session TTL", command.session_ttl_ms),
        ("message TTL", command.message_ttl_ms),
        ("retention", command.retention_ms),
        ("duplicate window", command.duplicate_window_ms),
    ):
        check_duration(what, value)
    policy = policy_of(layer, session) or consumer_commands_pb2.SessionPolicy()
    before = policy_has_sweep(policy)
    policy.session_ttl_ms = command.session_ttl_ms
    policy.message_ttl_ms = command.message_ttl_ms
    policy.retention_ms = command.retention_ms
    policy.retention_bytes = command.retention_bytes
    policy.duplicate_window_ms = command.duplicate_window_ms
    policy.dead_letter_expired = command.dead_letter_expired
    after = policy_has_sweep(policy)
    if before != after:
        _count_policies(layer, 1 if after else -1)
    layer.put(POLICY_PREFIX + sid(session), policy)
    return consumer_pb2.ConfigureSessionResponse()


def close(
    batch: SessionView,
    layer: ConsumerBatch,
    command: consumer_commands_pb2.CloseSessionCommand,
    limits: Limits,
) -> consumer_pb2.CloseSessionResponse:
    session, _, _ = existing_session(batch, command.session, limits)
    policy = policy_of(layer, session) or consumer_commands_pb2.SessionPolicy()
    policy.closed = True
    layer.put(POLICY_PREFIX + sid(session), policy)
    return consumer_pb2.CloseSessionResponse()


def sweep(
    batch: SessionView, layer: ConsumerBatch, ops: SessionOps, now: int
) -> consumer_pb2.ConfigureSessionResponse:
    """Expire idle sessions and apply retention, for a bounded number of sessions after the
    one the last sweep stopped at."""
    last = layer.raw_value(SWEEP_KEY) or b""
    start = POLICY_PREFIX + (sid(last) + b"\x00" if last else b"")
    swept = 0
    stopped = b""
    for key in layer.keys(POLICY_PREFIX, start, SWEEP_LIMIT):
        swept += 1
        length = U16.unpack_from(key, len(POLICY_PREFIX))[0]
        session = key[len(POLICY_PREFIX) + 2 : len(POLICY_PREFIX) + 2 + length]
        stopped = session
        policy = policy_of(layer, session)
        bounds = batch.meta_range(session)
        if policy is None or bounds is None or not policy_has_sweep(policy):
            continue
        name = session.decode("utf-8")
        if policy.session_ttl_ms:
            last_active = max(policy.last_activity_ms, batch.last_append(session))
            if now - last_active >= policy.session_ttl_ms:
                ops.delete(batch, name)
                continue
        first, end = bounds
        before = first
        if policy.retention_ms:
            before = max(before, first_live(
                layer, session, max(0, now - policy.retention_ms), end
            ))
        if policy.retention_bytes:
            before = max(before, _size_cut(batch, session, first, end, policy.retention_bytes))
        if before > first:
            ops.trim_before(batch, name, before)
        horizon = now - max(policy.retention_ms, policy.message_ttl_ms)
        if needs_time_index(policy) and horizon > 0:
            # Index entries older than every cutoff still to come are never read again.
            prefix = TIME_PREFIX + sid(session)
            bound = prefix + U64.pack(horizon)
            for entry in layer.keys(prefix, prefix, TIME_INDEX_PRUNE):
                if entry >= bound:
                    break
                layer.delete(entry)
    layer.put(SWEEP_KEY, stopped if swept == SWEEP_LIMIT else b"")
    return consumer_pb2.ConfigureSessionResponse()


def _size_cut(batch: SessionView, session: bytes, first: int, end: int, limit: int) -> int:
    """The smallest offset from which the session holds at most ``limit`` bytes."""
    total = batch.total_bytes(session)
    low, high = first, end
    while low < high:
        middle = (low + high) // 2
        if total - batch.cumulative_before(session, middle) <= limit:
            high = middle
        else:
            low = middle + 1
    return low


# -- local reads (the applied state) ------------------------------------------------------------
def stored_policy(db: rocksdict.Rdict, session: bytes) -> consumer_commands_pb2.SessionPolicy:
    value = db.get(POLICY_PREFIX + sid(session))
    if value is None:
        return consumer_commands_pb2.SessionPolicy()
    return consumer_commands_pb2.SessionPolicy.FromString(value)


def has_policies(db: rocksdict.Rdict) -> bool:
    value = db.get(POLICIES_KEY)
    return value is not None and U64.unpack(value)[0] > 0
