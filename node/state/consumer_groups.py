"""Consumer groups and their cursors: creating groups, receiving (peek-lock or
receive-and-delete) and settling.

Owns: ``C/g/<group>`` (the ``GroupRecord``) and a cursor's delivery fields in
``C/c/<sid><group>`` (next undelivered offset, unsettled deliveries; encodings in
``quorumlog.node.state.consumer_records``); applying ``create_group``, ``receive``,
``settle`` and ``renew_locks`` (a held lock extended, checked like a settle). Must never:
deliver a message before an earlier one of the same session that is waiting for its
redelivery, drop a message (past the max delivery count it goes to the
dead-letter log, ``quorumlog.node.state.dead_letters``), or change anything when it refuses
(validate first, then mutate).

Delivery: the messages of [cursor's first unsettled, next) that are not settled are the
cursor's entries. A receive walks them in offset order: a locked one whose lock is live is
skipped (it is with a consumer); one whose lock expired, or that was abandoned and whose delay
has passed, is redelivered (or dead-lettered once it was delivered ``max_deliveries`` times);
one abandoned with a delay still running stops the receive, so no later message overtakes it.
Then new messages from ``next``. The delivery count is the lock's identity: a settle names
(offset, delivery count) and is refused when the message was redelivered since, its lock
expired, or it is settled already.
"""

from __future__ import annotations

import bisect

import rocksdict

from quorumlog.node.common.limits import ErrorCode, InvalidInput, Limits
from quorumlog.node.state import timed_messages
from quorumlog.node.state.consumer_overlay import (
    ConsumerBatch,
    SessionView,
    existing_group,
    existing_session,
)
from quorumlog.node.state.consumer_records import (
    ABANDON,
    AVAILABLE,
    COMPLETE,
    DEAD_LETTER,
    DEFAULT_LOCK_MS,
    DEFAULT_MAX_DELIVERIES,
    DEFAULT_RECEIVE,
    DEFAULT_RECEIVE_BYTES,
    DEFER,
    DEFERRED,
    DEFERRED_LOCKED,
    GROUP_PREFIX,
    LOCKED,
    MAX_IN_FLIGHT,
    MAX_LIST,
    MAX_REASON_BYTES,
    MAX_RECEIVE,
    MAX_SETTLE,
    POLICY_PREFIX,
    SCHEDULED,
    Cursor,
    check_duration,
    check_group,
    cursor_key,
    invalid,
    refuse,
    scan,
)
from quorumlog.node.state.dead_letters import dead_letter
from quorumlog.node.state.keys import sid
from quorumlog.node.state.leases import check_token
from quorumlog.node.state.session_policies import first_live, policy_of, touch
from quorumlog.node.state.session_state import check_state_write, write_state
from quorumlog.proto import consumer_commands_pb2, consumer_pb2


def create_group(
    layer: ConsumerBatch, command: consumer_commands_pb2.CreateGroupCommand, now: int
) -> consumer_pb2.GroupInfo:
    group_bytes = check_group(command.group)
    check_duration("lock duration", command.lock_ms)
    if command.max_deliveries > 1_000_000:
        raise invalid(f"max deliveries {command.max_deliveries} is over 1000000")
    key = GROUP_PREFIX + group_bytes
    record = layer.message(key, consumer_commands_pb2.GroupRecord)
    created = record is None
    if record is not None and not command.exist_ok:
        raise InvalidInput(ErrorCode.ALREADY_EXISTS, f"group {command.group!r} exists")
    if record is None:
        record = consumer_commands_pb2.GroupRecord(
            group=command.group,
            lock_ms=command.lock_ms or DEFAULT_LOCK_MS,
            max_deliveries=command.max_deliveries or DEFAULT_MAX_DELIVERIES,
            created_ms=now,
        )
        layer.put(key, record)
    return consumer_pb2.GroupInfo(
        group=record.group, lock_ms=record.lock_ms, max_deliveries=record.max_deliveries,
        created_ms=record.created_ms, created=created,
    )


def receive(
    batch: SessionView,
    layer: ConsumerBatch,
    command: consumer_commands_pb2.ReceiveCommand,
    now: int,
    limits: Limits,
) -> consumer_pb2.ReceiveResponse:
    session, first, end = existing_session(batch, command.session, limits)
    group = existing_group(layer, command.group)
    if command.max_messages > MAX_RECEIVE:
        raise InvalidInput(
            ErrorCode.RESOURCE_EXHAUSTED,
            f"receive of {command.max_messages} messages; the limit is {MAX_RECEIVE}",
        )
    check_duration("lock duration", command.lock_ms)
    key = cursor_key(session, command.group.encode("utf-8"))
    cursor = layer.cursor(key) or Cursor()
    where = f"session {command.session!r} in group {command.group!r}"
    check_token(cursor, command.token, now, where)
    room = command.max_messages or DEFAULT_RECEIVE
    lock_until = now + (command.lock_ms or group.lock_ms)
    delete = command.receive_and_delete
    # The token the receive was checked against (the proto's contract), so settling with
    # it passes the same check: 0 for a receive outside any lease, even after leases
    # were handed out (the latest token would be refused as an expired lease's).
    response = consumer_pb2.ReceiveResponse(
        session=command.session, group=command.group, token=command.token
    )
    delivered = response.messages
    max_bytes = command.max_bytes or DEFAULT_RECEIVE_BYTES
    used = 0  # payload bytes delivered so far (at least one message goes out)

    def span(low: int, high: int) -> int:
        """Payload bytes of offsets [low, high) (cumulative counts: two point reads)."""
        top = batch.total_bytes(session) if high == end else batch.cumulative_before(
            session, high
        )
        return top - batch.cumulative_before(session, low)

    policy = policy_of(layer, session)
    timed = policy is not None and policy.timed
    if command.deferred:
        _receive_deferred(
            batch, layer, command, cursor=cursor, times=(lock_until, now), response=response,
            policy=policy,
        )
        layer.put(key, cursor)
        touch(layer, session, now)
        response.backlog = cursor.backlog(first, end)
        return response
    kept: list[list[int]] = []
    blocked = False
    full = False
    # A lease holder that settled everything it got: what is still locked was lost on
    # the way (an unknown outcome retried) and comes again, in order.
    own = command.redeliver_own and command.token != 0 and cursor.live_owner(now)
    for item in cursor.pending:
        offset, count, until, kind = item
        if offset < first:
            continue  # trimmed away (retention): nothing left to deliver
        if kind == DEFERRED_LOCKED and until <= now:
            item[2], item[3] = 0, DEFERRED  # its lock lapsed: deferred again
        if kind in (DEFERRED, DEFERRED_LOCKED) or (kind == SCHEDULED and until > now):
            kept.append(item)  # only by offset / not due: later messages go first
            continue
        in_flight = kind == LOCKED and until > now and not own
        if blocked or full or len(delivered) >= room or in_flight:
            kept.append(item)
            continue
        if kind == AVAILABLE and until > now:
            blocked = True  # redelivery delayed: nothing after it may overtake it
            kept.append(item)
            continue
        if timed and _gone(batch, layer, session=session, group=command.group, item=item,
                           policy=policy, now=now):
            continue  # canceled, or expired (dead-lettered or counted)
        if count >= group.max_deliveries:
            dead_letter(
                batch=batch, layer=layer, session=session, group=command.group, item=item,
                reason=f"delivered {count} times: max delivery count "
                f"{group.max_deliveries} of group {command.group!r} reached", now=now,
            )
            continue
        size = span(offset, offset + 1)
        if delivered and used + size > max_bytes:
            full = True
            kept.append(item)
            continue
        used += size
        item[1] = count + 1
        delivered.add(
            offset=offset, delivery_count=count + 1,
            locked_until_ms=0 if delete else lock_until,
        )
        if not delete:
            item[2], item[3] = lock_until, LOCKED
            kept.append(item)
    cursor.pending = kept
    start = max(cursor.next, first)
    if policy is not None and policy.message_ttl_ms and start < end:
        # Messages older than the TTL are never delivered: the cursor moves past them.
        start = max(start, first_live(
            layer, session, max(0, now - policy.message_ttl_ms), end
        ))
    take = min(room - len(delivered), end - start)
    if not delete:
        take = min(take, MAX_IN_FLIGHT - len(kept))
    if not blocked and not full and take > 0:
        # The most messages that fit what is left of max_bytes (one alone always may).
        low, high = (0 if delivered else 1), take
        if span(start, start + take) <= max_bytes - used:
            low = take  # the common case: everything fits
        while low < high:
            middle = (low + high + 1) // 2
            if span(start, start + middle) <= max_bytes - used:
                low = middle
            else:
                high = middle - 1
        take = low
        timings = timed_messages.timings_in(layer, session, start, start + take) if timed else {}
        for offset in range(start, start + take):
            timing = timings.get(offset)
            if timing is not None and timing.deliver_at > now and not timing.canceled:
                kept.append([offset, 0, timing.deliver_at, SCHEDULED])  # not due yet
                continue
            if timing is not None and _gone(
                batch, layer, session=session, group=command.group, item=[offset, 0, 0, LOCKED],
                policy=policy, now=now,
            ):
                continue
            delivered.add(
                offset=offset, delivery_count=1, locked_until_ms=0 if delete else lock_until
            )
            if not delete:
                kept.append([offset, 1, lock_until, LOCKED])
        start += take
    cursor.next = max(cursor.next, start)
    layer.put(key, cursor)
    touch(layer, session, now)
    response.backlog = cursor.backlog(first, end)
    return response


def _gone(
    batch: SessionView, layer: ConsumerBatch, *, session: bytes, group: str, item: list[int],
    policy: consumer_commands_pb2.SessionPolicy | None, now: int,
) -> bool:
    """Whether the message of ``item`` must not be delivered: a canceled scheduled message
    (dropped), or one whose time to live passed (dead-lettered with reason "expired" when the
    session's policy says so, else counted in ``messages_expired``)."""
    timing = timed_messages.timing_of(layer, session, item[0])
    if timing is None:
        return False
    if timing.canceled:
        return True
    if not timing.expires_at or timing.expires_at > now:
        return False
    if policy is not None and policy.dead_letter_expired:
        dead_letter(
            batch=batch, layer=layer, session=session, group=group, item=item,
            reason=f"expired: its time to live ended at {timing.expires_at}", now=now,
        )
    else:
        policy = policy_of(layer, session) or consumer_commands_pb2.SessionPolicy()
        policy.messages_expired += 1
        layer.put(POLICY_PREFIX + sid(session), policy)
    return True


def _receive_deferred(
    batch: SessionView,
    layer: ConsumerBatch,
    command: consumer_commands_pb2.ReceiveCommand,
    *,
    cursor: Cursor,
    times: tuple[int, int],
    response: consumer_pb2.ReceiveResponse,
    policy: consumer_commands_pb2.SessionPolicy | None,
) -> None:
    """Deliver the deferred messages ``command.deferred`` names (each locked as a deferred
    one: settle it, or it is deferred again when the lock lapses)."""
    lock_until, now = times
    session = command.session.encode("utf-8")
    where = f"session {command.session!r} in group {command.group!r}"
    offsets = [item[0] for item in cursor.pending]
    positions: list[int] = []
    for offset in command.deferred:
        position = bisect.bisect_left(offsets, offset)
        if position == len(offsets) or offsets[position] != offset or not (
            cursor.pending[position][3] == DEFERRED
            or (cursor.pending[position][3] == DEFERRED_LOCKED
                and cursor.pending[position][2] <= now)
        ):
            raise InvalidInput(ErrorCode.NOT_FOUND, f"offset {offset} of {where} is not deferred")
        if position in positions:
            raise invalid(f"offset {offset} is received twice in one request")
        positions.append(position)
    removed: set[int] = set()
    for position in positions:
        item = cursor.pending[position]
        if policy is not None and policy.timed and _gone(
            batch, layer, session=session, group=command.group, item=item, policy=policy, now=now
        ):
            removed.add(position)
            continue
        item[1] += 1
        if command.receive_and_delete:
            removed.add(position)
        else:
            item[2], item[3] = lock_until, DEFERRED_LOCKED
        response.messages.add(
            offset=item[0], delivery_count=item[1],
            locked_until_ms=0 if command.receive_and_delete else lock_until,
        )
    if removed:
        cursor.pending = [
            item for position, item in enumerate(cursor.pending) if position not in removed
        ]


def settle(
    batch: SessionView,
    layer: ConsumerBatch,
    command: consumer_commands_pb2.SettleCommand,
    now: int,
    limits: Limits,
) -> consumer_pb2.SettleResponse:
    session, _, _ = existing_session(batch, command.session, limits)
    group = existing_group(layer, command.group)
    settlements = command.settlements
    if len(settlements) > MAX_SETTLE:
        raise InvalidInput(
            ErrorCode.RESOURCE_EXHAUSTED,
            f"settle of {len(settlements)} messages; the limit is {MAX_SETTLE}",
        )
    key = cursor_key(session, command.group.encode("utf-8"))
    cursor = layer.cursor(key) or Cursor()
    where = f"session {command.session!r} in group {command.group!r}"
    check_token(cursor, command.token, now, where)
    offsets = [item[0] for item in cursor.pending]
    chosen: dict[int, tuple[int, consumer_commands_pb2.Settlement]] = {}
    for settlement in settlements:
        offset = settlement.offset
        if offset in chosen:
            raise invalid(f"offset {offset} is settled twice in one request")
        if settlement.action not in (COMPLETE, ABANDON, DEAD_LETTER, DEFER):
            raise invalid(f"unknown settle action {settlement.action}")
        check_duration("redelivery delay", settlement.delay_ms)
        if len(settlement.reason.encode("utf-8")) > MAX_REASON_BYTES:
            raise invalid(f"dead-letter reason is over {MAX_REASON_BYTES} bytes")
        position = _held_lock(cursor, offsets, (offset, settlement.delivery_count), now, where)
        chosen[offset] = (position, settlement)
    version = 0
    if command.HasField("state"):
        version = check_state_write(layer, session, command.state)
    # Validated: from here on nothing refuses.
    response = consumer_pb2.SettleResponse()
    removed: set[int] = set()
    for position, settlement in chosen.values():
        item = cursor.pending[position]
        if settlement.action == COMPLETE:
            removed.add(position)
            response.completed += 1
        elif settlement.action == DEFER:
            item[2], item[3] = 0, DEFERRED  # delivery count kept
            response.deferred += 1
        elif settlement.action == ABANDON and item[3] == DEFERRED_LOCKED:
            item[2], item[3] = 0, DEFERRED  # back to waiting for its offset
            response.abandoned += 1
        elif settlement.action == ABANDON and item[1] < group.max_deliveries:
            item[2], item[3] = now + settlement.delay_ms, AVAILABLE
            response.abandoned += 1
        else:
            if settlement.action == DEAD_LETTER:
                reason = settlement.reason or "dead-lettered by the consumer"
            else:
                reason = (
                    f"abandoned after {item[1]} deliveries: max delivery count "
                    f"{group.max_deliveries} of group {command.group!r} reached"
                )
            dead_letter(
                batch=batch, layer=layer, session=session, group=command.group, item=item,
                reason=reason, now=now,
            )
            removed.add(position)
            response.dead_lettered += 1
    if removed:
        cursor.pending = [
            item for position, item in enumerate(cursor.pending) if position not in removed
        ]
    layer.put(key, cursor)
    if command.HasField("state"):
        write_state(layer, session, version, command.state.data)
        response.state_version = version
    touch(layer, session, now)
    return response


def _held_lock(
    cursor: Cursor, offsets: list[int], lock: tuple[int, int], now: int, where: str
) -> int:
    """The position in ``cursor.pending`` of the live lock ``lock`` (offset, delivery count)
    names, or the refusal saying why it holds none."""
    offset, delivery_count = lock
    position = bisect.bisect_left(offsets, offset)
    if position == len(offsets) or offsets[position] != offset:
        raise refuse(
            f"offset {offset} of {where} holds no lock: it is settled, was never "
            "delivered, or was trimmed"
        )
    _, count, until, kind = cursor.pending[position]
    if count != delivery_count:
        raise refuse(
            f"lock of offset {offset} of {where} is delivery {count}, not "
            f"{delivery_count}: the message was redelivered"
        )
    if kind not in (LOCKED, DEFERRED_LOCKED):
        raise refuse(f"offset {offset} of {where} holds no lock (abandoned or deferred)")
    if until <= now:
        raise refuse(f"the lock on offset {offset} of {where} expired at {until}")
    return position


def renew_locks(
    batch: SessionView,
    layer: ConsumerBatch,
    command: consumer_commands_pb2.RenewLocksCommand,
    now: int,
    limits: Limits,
) -> consumer_pb2.RenewMessageLockResponse:
    """Extend live locks to ``now + lock_ms`` (the group's when 0): all of them, or none
    when any is not held (the refusal names it)."""
    session, _, _ = existing_session(batch, command.session, limits)
    group = existing_group(layer, command.group)
    if len(command.locks) > MAX_SETTLE:
        raise InvalidInput(
            ErrorCode.RESOURCE_EXHAUSTED,
            f"renewal of {len(command.locks)} locks; the limit is {MAX_SETTLE}",
        )
    if not command.locks:
        raise invalid("renewal names no locks")
    check_duration("lock duration", command.lock_ms)
    key = cursor_key(session, command.group.encode("utf-8"))
    cursor = layer.cursor(key) or Cursor()
    where = f"session {command.session!r} in group {command.group!r}"
    check_token(cursor, command.token, now, where)
    offsets = [item[0] for item in cursor.pending]
    positions: list[int] = []
    seen: set[int] = set()
    for lock in command.locks:
        if lock.offset in seen:
            raise invalid(f"offset {lock.offset} is renewed twice in one request")
        seen.add(lock.offset)
        positions.append(
            _held_lock(cursor, offsets, (lock.offset, lock.delivery_count), now, where)
        )
    until = now + (command.lock_ms or group.lock_ms or DEFAULT_LOCK_MS)
    response = consumer_pb2.RenewMessageLockResponse()
    for position in positions:
        cursor.pending[position][2] = until
        response.locked_until_ms.append(until)
    layer.put(key, cursor)
    touch(layer, session, now)
    return response


# -- local reads (the applied state) ------------------------------------------------------------
def stored_group(db: rocksdict.Rdict, group: str) -> consumer_commands_pb2.GroupRecord | None:
    value = db.get(GROUP_PREFIX + check_group(group))
    return None if value is None else consumer_commands_pb2.GroupRecord.FromString(value)


def stored_groups(db: rocksdict.Rdict) -> list[consumer_commands_pb2.GroupRecord]:
    return [
        consumer_commands_pb2.GroupRecord.FromString(value)
        for _, value in scan(db, GROUP_PREFIX, GROUP_PREFIX, MAX_LIST)
    ]
