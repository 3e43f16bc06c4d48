"""Session ownership: leases with fencing tokens on a (session, group), and "accept next".

Owns: ``C/r/<group>`` (the session "accept next" last handed out) and a cursor's lease fields
in ``C/c/<sid><group>`` (fencing token, lease expiry, owner; encodings in
``quorumlog.node.state.consumer_records``); applying ``accept``, ``renew`` and ``release``;
the fencing check every receive, settle and state write of a leased (session, group) passes.
Must never: hand out a token that is not above every earlier one of the (session, group), let
a stale token or a lapsed lease through, or read a clock (expiry is in leader time).

Accepting a (session, group) makes the caller its owner until the lease expires and hands out
a fencing token one above the previous owner's; its earlier locks are released (so they are
redelivered first). While a lease is live every receive, settle and state write must carry
its token; a stale token or a lapsed lease is ``FAILED_PRECONDITION``. Without a lease
(token 0) anyone may receive and settle (plain competing consumers).
"""

from __future__ import annotations

from quorumlog.node.common.limits import Limits
from quorumlog.node.state.consumer_overlay import (
    ConsumerBatch,
    SessionView,
    existing_group,
    existing_session,
)
from quorumlog.node.state.consumer_records import (
    ACCEPT_SCAN_LIMIT,
    DEFAULT_LEASE_MS,
    DEFERRED_LOCKED,
    LOCKED,
    ROTATION_PREFIX,
    Cursor,
    check_consumer,
    check_duration,
    cursor_key,
    invalid,
    refuse,
)
from quorumlog.node.state.keys import SESSION_PREFIX, successor
from quorumlog.node.state.session_policies import touch
from quorumlog.proto import consumer_commands_pb2, consumer_pb2


def check_token(cursor: Cursor, token: int, now: int, where: str) -> None:
    """A live lease needs its token; a stale token or a lapsed lease is refused."""
    if cursor.live_owner(now):
        if token == cursor.token:
            return
        if token == 0:
            raise refuse(
                f"{where} is owned by consumer {cursor.owner!r} (fencing token "
                f"{cursor.token}) until {cursor.lease_until}; accept the session first"
            )
        raise refuse(
            f"fencing token {token} of {where} is stale: the current owner is "
            f"{cursor.owner!r} with token {cursor.token}"
        )
    if token == 0:
        return
    if token == cursor.token:
        raise refuse(
            f"the lease of {where} with fencing token {token} expired at "
            f"{cursor.lease_until}; accept the session again"
        )
    raise refuse(
        f"fencing token {token} of {where} is stale: the latest token is {cursor.token}"
    )


def _lease(session: str, group: str, cursor: Cursor) -> consumer_pb2.Lease:
    return consumer_pb2.Lease(
        session=session, group=group, consumer=cursor.owner, token=cursor.token,
        expires_ms=cursor.lease_until,
    )


def accept(
    batch: SessionView,
    layer: ConsumerBatch,
    command: consumer_commands_pb2.AcceptCommand,
    now: int,
    limits: Limits,
) -> consumer_pb2.Lease:
    group = existing_group(layer, command.group)
    check_consumer(command.consumer)
    check_duration("lease duration", command.lease_ms)
    lease_ms = command.lease_ms or DEFAULT_LEASE_MS
    group_bytes = command.group.encode("utf-8")
    if command.session:
        session, _, _ = existing_session(batch, command.session, limits)
        name = command.session
    else:
        found = _next_available(batch, layer, group.group, command.prefix, now)
        if found is None:
            return consumer_pb2.Lease(group=command.group)  # nothing available now
        name = found
        session = name.encode("utf-8")
        layer.put(ROTATION_PREFIX + group_bytes, session)
    key = cursor_key(session, group_bytes)
    cursor = layer.cursor(key) or Cursor()
    if cursor.live_owner(now) and cursor.owner != command.consumer:
        raise refuse(
            f"session {name!r} in group {command.group!r} is owned by consumer "
            f"{cursor.owner!r} until {cursor.lease_until}"
        )
    if not cursor.live_owner(now):
        # A new owner: a new fencing token; the previous owner's locks are released so
        # their messages are redelivered first, in order.
        cursor.token += 1
        cursor.owner = command.consumer
        cursor.release_locks()
    cursor.lease_until = now + lease_ms
    layer.put(key, cursor)
    touch(layer, session, now)
    return _lease(name, command.group, cursor)


def _next_available(
    batch: SessionView, layer: ConsumerBatch, group: str, prefix: str, now: int
) -> str | None:
    """The first session after the one last handed out (wrapping around) that has something
    to deliver to ``group`` and no live owner."""
    group_bytes = group.encode("utf-8")
    last = layer.raw_value(ROTATION_PREFIX + group_bytes) or b""
    lower = SESSION_PREFIX + prefix.encode("utf-8")
    upper = successor(lower)
    looked = 0
    for start in (max(lower, SESSION_PREFIX + last + b"\x00") if last else lower, lower):
        for session in batch.live_sessions(start, upper):
            if looked == ACCEPT_SCAN_LIMIT:
                return None
            looked += 1
            bounds = batch.meta_range(session)
            assert bounds is not None  # a live session
            cursor = layer.cursor(cursor_key(session, group_bytes)) or Cursor()
            if not cursor.live_owner(now) and cursor.deliverable(now, *bounds):
                return session.decode("utf-8")
        if not last:
            break
    return None


def _owned_cursor(
    batch: SessionView,
    layer: ConsumerBatch,
    session: str,
    group: str,
    token: int,
    *,
    limits: Limits,
) -> tuple[bytes, bytes, Cursor]:
    session_bytes, _, _ = existing_session(batch, session, limits)
    existing_group(layer, group)
    key = cursor_key(session_bytes, group.encode("utf-8"))
    cursor = layer.cursor(key) or Cursor()
    where = f"session {session!r} in group {group!r}"
    if token == 0:
        raise invalid("a fencing token is required")
    if token != cursor.token:
        raise refuse(
            f"fencing token {token} of {where} is stale: the latest token is {cursor.token}"
        )
    return session_bytes, key, cursor


def renew(
    batch: SessionView,
    layer: ConsumerBatch,
    command: consumer_commands_pb2.RenewCommand,
    now: int,
    limits: Limits,
) -> consumer_pb2.Lease:
    check_duration("lease duration", command.lease_ms)
    session, key, cursor = _owned_cursor(
        batch, layer, command.session, command.group, command.token, limits=limits
    )
    if not cursor.live_owner(now):
        raise refuse(
            f"the lease of session {command.session!r} in group {command.group!r} with "
            f"fencing token {command.token} expired at {cursor.lease_until}"
        )
    cursor.lease_until = now + (command.lease_ms or DEFAULT_LEASE_MS)
    for item in cursor.pending:  # the owner's locks last as long as its lease
        if item[3] in (LOCKED, DEFERRED_LOCKED) and item[2] > now:
            item[2] = max(item[2], cursor.lease_until)
    layer.put(key, cursor)
    touch(layer, session, now)
    return _lease(command.session, command.group, cursor)


def release(
    batch: SessionView,
    layer: ConsumerBatch,
    command: consumer_commands_pb2.ReleaseCommand,
    limits: Limits,
) -> consumer_pb2.ReleaseSessionResponse:
    _, key, cursor = _owned_cursor(
        batch, layer, command.session, command.group, command.token, limits=limits
    )
    if cursor.lease_until:
        cursor.lease_until = 0
        cursor.owner = ""
        cursor.release_locks()
        layer.put(key, cursor)
    return consumer_pb2.ReleaseSessionResponse()
