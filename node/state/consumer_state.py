"""Consumer state: groups, cursors, peek-locks, leases, dead letters and session state blobs.

Owns: every key of the node's RocksDB under ``C/`` (the session state machine owns the other
prefixes and calls in here), applying ``ConsumerCommand`` entries and the append / delete hooks
deterministically, and the local reads the consumer service answers from. Must never: read a
clock (time is the entry's ``leader_time_ms``, clamped by ``C/clock`` so it never goes back
when leadership moves to a node whose clock is behind), keep per-message data in Python memory
beyond one ``apply`` call, or change anything when it refuses a command (every handler
validates first, then mutates; a refusal raises ``InvalidInput`` before any write).

Key layout (``<sid>`` is the state machine's ``>H`` length + UTF-8 session id, so one
session's keys are one contiguous range per sub-prefix; integers unsigned big-endian):

==============================  ==============================================================
key                             value
==============================  ==============================================================
``C/clock``                     ``>Q`` the latest leader time any consumer command used
``C/policies``                  ``>Q`` sessions with a TTL or retention policy (sweeps needed)
``C/sweep``                     UTF-8 name of the session the last sweep stopped after
``C/g/<group UTF-8>``           ``GroupRecord``: lock duration, max deliveries
``C/r/<group UTF-8>``           UTF-8 name of the session "accept next" last handed out
``C/c/<sid><group UTF-8>``      the (session, group) cursor: ``>QQQH`` next undelivered offset,
                                fencing token, lease expiry (leader ms, 0 none), owner length;
                                the owner's name; then one ``>QIQB`` per delivered but
                                unsettled message, by offset: offset, delivery count, time,
                                kind (0 locked until time, 1 available again from time)
``C/m/<sid>``                   ``SessionPolicy``: TTLs, retention, closed flag, dead-letter
                                sequence and count, last consumer activity
``C/d/<sid><sequence >Q>``      ``DeadLetterRecord`` (a copy of the payload: never lost to a
                                trim)
``C/x/<sid>``                   session state: ``>Q`` version, then the opaque blob
``C/t/<sid><time >Q><offset>``  time index: the leader time of an append and its first
                                offset, kept only for sessions with an age policy
==============================  ==============================================================

Delivery: the messages of [cursor's first unsettled, next) that are not settled are the
cursor's entries. A receive walks them in offset order: a locked one whose lock is live is
skipped (it is with a consumer); one whose lock expired, or that was abandoned and whose delay
has passed, is redelivered (or dead-lettered once it was delivered ``max_deliveries`` times);
one abandoned with a delay still running stops the receive, so no later message overtakes it.
Then new messages from ``next``. The delivery count is the lock's identity: a settle names
(offset, delivery count) and is refused when the message was redelivered since, its lock
expired, or it is settled already.

Leases: accepting a (session, group) makes the caller its owner until the lease expires and
hands out a fencing token one above the previous owner's; its earlier locks are released (so
they are redelivered first). While a lease is live every receive, settle and state write must
carry its token; a stale token or a lapsed lease is ``FAILED_PRECONDITION``. Without a lease
(token 0) anyone may receive and settle (plain competing consumers).
"""

from __future__ import annotations

import bisect

import rocksdict
from google.protobuf.message import Message

from quorumlog.node.common.limits import ErrorCode, InvalidInput, Limits, check_session_id
from quorumlog.node.state.consumer_records import (
    ABANDON,
    ACCEPT_SCAN_LIMIT,
    AVAILABLE,
    CLOCK_KEY,
    COMPLETE,
    CONSUMER_PREFIX,
    DEAD_LETTER,
    DEAD_PREFIX,
    DEFAULT_LEASE_MS,
    DEFAULT_LOCK_MS,
    DEFAULT_MAX_DELIVERIES,
    DEFAULT_RECEIVE,
    DEFAULT_RECEIVE_BYTES,
    GROUP_PREFIX,
    LOCKED,
    MAX_IN_FLIGHT,
    MAX_LIST,
    MAX_REASON_BYTES,
    MAX_RECEIVE,
    MAX_SETTLE,
    POLICIES_KEY,
    POLICY_PREFIX,
    RESUBMIT_LIMIT,
    ROTATION_PREFIX,
    SESSION_SUBPREFIXES,
    STATE_PREFIX,
    SWEEP_KEY,
    SWEEP_LIMIT,
    TIME,
    TIME_INDEX_PRUNE,
    TIME_PREFIX,
    U16,
    U64,
    ConsumerBatch,
    ConsumerResult,
    Cursor,
    PolicyHint,
    SessionOps,
    SessionView,
    check_consumer,
    check_duration,
    check_group,
    check_state_size,
    cursor_key,
    invalid,
    needs_time_index,
    overlay,
    policy_has_sweep,
    refuse,
    scan,
    sid_of,
    successor,
)
from quorumlog.proto import consumer_commands_pb2, consumer_pb2


# -- applying ------------------------------------------------------------------------------------
class ConsumerState:
    """Applies consumer commands into the state machine's write batch; answers local reads."""

    def __init__(self, db: rocksdict.Rdict, limits: Limits) -> None:
        self._db = db
        self.limits = limits
        self._hint = PolicyHint(db)

    def invalidate(self) -> None:
        """The whole state was replaced (a snapshot import): recompute what is cached."""
        self._hint.recompute(self._db)

    # hooks called by the session state machine --------------------------------------------
    def on_append(self, batch: SessionView, session: bytes, first: int, now: int) -> None:
        """Before an append to an existing session is written: refuse a closed session,
        keep the time index of a session with an age policy."""
        if not self._hint.maybe:
            return  # no session has a policy record: nothing to check
        layer = overlay(batch, self._db, self._hint)
        policy = self._policy(layer, session)
        if policy is None:
            return
        if policy.closed:
            raise refuse(f"session {session.decode('utf-8')!r} is closed")
        if needs_time_index(policy):
            time = layer.now(now)
            layer.put(TIME_PREFIX + sid_of(session) + TIME.pack(time, first), b"")

    def on_delete(self, batch: SessionView, session: bytes) -> None:
        """The session is being deleted: remove every consumer key of it."""
        layer = overlay(batch, self._db, self._hint)
        policy = self._policy(layer, session)
        if policy is not None and policy_has_sweep(policy):
            self._count_policies(layer, -1)
        sid = sid_of(session)
        for prefix in SESSION_SUBPREFIXES:
            batch.raw.delete_range(prefix + sid, successor(prefix + sid))
        layer.forget_session(session)

    # the commands ----------------------------------------------------------------------------
    def apply(
        self,
        batch: SessionView,
        ops: SessionOps,
        command: consumer_commands_pb2.ConsumerCommand,
        leader_time: int,
    ) -> ConsumerResult:
        """Apply one command; raises ``InvalidInput`` (having changed nothing) to refuse it."""
        layer = overlay(batch, self._db, self._hint)
        now = layer.now(leader_time)
        kind = command.WhichOneof("kind")
        response: Message
        if kind == "receive":
            response = self._receive(batch, layer, command.receive, now)
        elif kind == "settle":
            response = self._settle(batch, layer, command.settle, now)
        elif kind == "accept":
            response = self._accept(batch, layer, command.accept, now)
        elif kind == "renew":
            response = self._renew(batch, layer, command.renew, now)
        elif kind == "release":
            response = self._release(batch, layer, command.release, now)
        elif kind == "set_state":
            response = self._set_state(batch, layer, command.set_state, now)
        elif kind == "create_group":
            response = self._create_group(layer, command.create_group, now)
        elif kind == "resubmit":
            response = self._resubmit(batch, layer, ops, command.resubmit, now)
        elif kind == "configure":
            response = self._configure(batch, layer, command.configure)
        elif kind == "close":
            response = self._close(batch, layer, command.close)
        elif kind == "sweep":
            response = self._sweep(batch, layer, ops, now)
        else:
            raise invalid("unknown or empty consumer command")
        return ConsumerResult(response)

    # -- shared checks ---------------------------------------------------------------------------
    def _session(self, batch: SessionView, session: str) -> tuple[bytes, int, int]:
        """(session bytes, first retained offset, end offset) of an existing session."""
        session_bytes = check_session_id(session, self.limits)
        bounds = batch.meta_range(session_bytes)
        if bounds is None:
            raise InvalidInput(ErrorCode.NOT_FOUND, f"session {session!r} not found")
        return session_bytes, bounds[0], bounds[1]

    def _group(self, layer: ConsumerBatch, group: str) -> consumer_commands_pb2.GroupRecord:
        group_bytes = check_group(group)
        record = layer.message(GROUP_PREFIX + group_bytes, consumer_commands_pb2.GroupRecord)
        if record is None:
            raise InvalidInput(
                ErrorCode.NOT_FOUND, f"group {group!r} not found (create it first)"
            )
        return record

    @staticmethod
    def _check_token(cursor: Cursor, token: int, now: int, where: str) -> None:
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

    def _policy(
        self, layer: ConsumerBatch, session: bytes
    ) -> consumer_commands_pb2.SessionPolicy | None:
        record = layer.message(POLICY_PREFIX + sid_of(session), consumer_commands_pb2.SessionPolicy)
        return record

    def _touch(self, layer: ConsumerBatch, session: bytes, now: int) -> None:
        """Consumer activity keeps a session with a TTL alive."""
        policy = self._policy(layer, session)
        if policy is not None and policy.session_ttl_ms and policy.last_activity_ms < now:
            policy.last_activity_ms = now
            layer.put(POLICY_PREFIX + sid_of(session), policy)

    def _count_policies(self, layer: ConsumerBatch, delta: int) -> None:
        value = layer.raw_value(POLICIES_KEY)
        count = (0 if value is None else U64.unpack(value)[0]) + delta
        layer.put(POLICIES_KEY, U64.pack(max(0, count)))

    def _first_live(
        self, batch: SessionView, layer: ConsumerBatch, session: bytes, cutoff: int, end: int
    ) -> int:
        """The first offset appended at or after ``cutoff`` (leader ms), by the time index."""
        prefix = TIME_PREFIX + sid_of(session)
        keys = layer.keys(prefix, prefix + U64.pack(cutoff), 1)
        return int(TIME.unpack_from(keys[0], len(prefix))[1]) if keys else end

    def _dead_letter(
        self,
        *,
        batch: SessionView,
        layer: ConsumerBatch,
        session: bytes,
        group: str,
        item: list[int],
        reason: str,
        now: int,
    ) -> None:
        policy = self._policy(layer, session) or consumer_commands_pb2.SessionPolicy()
        sequence = policy.next_dead_letter
        policy.next_dead_letter += 1
        policy.dead_letters += 1
        layer.put(POLICY_PREFIX + sid_of(session), policy)
        record = consumer_commands_pb2.DeadLetterRecord(
            sequence=sequence,
            offset=item[0],
            group=group,
            reason=reason,
            delivery_count=item[1],
            dead_lettered_ms=now,
            data=batch.payload(session, item[0]) or b"",
        )
        layer.put(DEAD_PREFIX + sid_of(session) + U64.pack(sequence), record)

    # -- receive ---------------------------------------------------------------------------------
    def _receive(
        self,
        batch: SessionView,
        layer: ConsumerBatch,
        command: consumer_commands_pb2.ReceiveCommand,
        now: int,
    ) -> consumer_pb2.ReceiveResponse:
        session, first, end = self._session(batch, command.session)
        group = self._group(layer, command.group)
        if command.max_messages > MAX_RECEIVE:
            raise InvalidInput(
                ErrorCode.RESOURCE_EXHAUSTED,
                f"receive of {command.max_messages} messages; the limit is {MAX_RECEIVE}",
            )
        check_duration("lock duration", command.lock_ms)
        key = cursor_key(session, command.group.encode("utf-8"))
        cursor = layer.cursor(key) or Cursor()
        where = f"session {command.session!r} in group {command.group!r}"
        self._check_token(cursor, command.token, now, where)
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
            in_flight = kind == LOCKED and until > now and not own
            if blocked or full or len(delivered) >= room or in_flight:
                kept.append(item)
                continue
            if kind == AVAILABLE and until > now:
                blocked = True  # redelivery delayed: nothing after it may overtake it
                kept.append(item)
                continue
            if count >= group.max_deliveries:
                self._dead_letter(
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
        policy = self._policy(layer, session)
        if policy is not None and policy.message_ttl_ms and start < end:
            # Messages older than the TTL are never delivered: the cursor moves past them.
            start = max(start, self._first_live(
                batch, layer, session, max(0, now - policy.message_ttl_ms), end
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
            for offset in range(start, start + take):
                delivered.add(
                    offset=offset, delivery_count=1, locked_until_ms=0 if delete else lock_until
                )
                if not delete:
                    kept.append([offset, 1, lock_until, LOCKED])
            start += take
        cursor.next = max(cursor.next, start)
        layer.put(key, cursor)
        self._touch(layer, session, now)
        response.backlog = cursor.backlog(first, end)
        return response

    # -- settle ----------------------------------------------------------------------------------
    def _check_state_write(
        self, layer: ConsumerBatch, session: bytes, state: consumer_commands_pb2.StateWrite
    ) -> int:
        """The new version of a valid compare-and-set state write."""
        check_state_size(state.data)
        value = layer.raw_value(STATE_PREFIX + sid_of(session))
        version = 0 if value is None else U64.unpack_from(value)[0]
        if state.expected_version != version:
            raise refuse(
                f"session state is at version {version}, not {state.expected_version}; "
                "read it again"
            )
        return version + 1

    def _settle(
        self,
        batch: SessionView,
        layer: ConsumerBatch,
        command: consumer_commands_pb2.SettleCommand,
        now: int,
    ) -> consumer_pb2.SettleResponse:
        session, _, _ = self._session(batch, command.session)
        group = self._group(layer, command.group)
        settlements = command.settlements
        if len(settlements) > MAX_SETTLE:
            raise InvalidInput(
                ErrorCode.RESOURCE_EXHAUSTED,
                f"settle of {len(settlements)} messages; the limit is {MAX_SETTLE}",
            )
        key = cursor_key(session, command.group.encode("utf-8"))
        cursor = layer.cursor(key) or Cursor()
        where = f"session {command.session!r} in group {command.group!r}"
        self._check_token(cursor, command.token, now, where)
        offsets = [item[0] for item in cursor.pending]
        chosen: dict[int, tuple[int, consumer_commands_pb2.Settlement]] = {}
        for settlement in settlements:
            offset = settlement.offset
            if offset in chosen:
                raise invalid(f"offset {offset} is settled twice in one request")
            if settlement.action not in (COMPLETE, ABANDON, DEAD_LETTER):
                raise invalid(f"unknown settle action {settlement.action}")
            check_duration("redelivery delay", settlement.delay_ms)
            if len(settlement.reason.encode("utf-8")) > MAX_REASON_BYTES:
                raise invalid(f"dead-letter reason is over {MAX_REASON_BYTES} bytes")
            position = bisect.bisect_left(offsets, offset)
            if position == len(offsets) or offsets[position] != offset:
                raise refuse(
                    f"offset {offset} of {where} holds no lock: it is settled, was never "
                    "delivered, or was trimmed"
                )
            _, count, until, kind = cursor.pending[position]
            if count != settlement.delivery_count:
                raise refuse(
                    f"lock of offset {offset} of {where} is delivery {count}, not "
                    f"{settlement.delivery_count}: the message was redelivered"
                )
            if kind != LOCKED:
                raise refuse(f"offset {offset} of {where} was abandoned; it holds no lock")
            if until <= now:
                raise refuse(f"the lock on offset {offset} of {where} expired at {until}")
            chosen[offset] = (position, settlement)
        version = 0
        if command.HasField("state"):
            version = self._check_state_write(layer, session, command.state)
        # Validated: from here on nothing refuses.
        response = consumer_pb2.SettleResponse()
        removed: set[int] = set()
        for position, settlement in chosen.values():
            item = cursor.pending[position]
            if settlement.action == COMPLETE:
                removed.add(position)
                response.completed += 1
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
                self._dead_letter(
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
            layer.put(STATE_PREFIX + sid_of(session), U64.pack(version) + command.state.data)
            response.state_version = version
        self._touch(layer, session, now)
        return response

    # -- leases ----------------------------------------------------------------------------------
    def _lease(
        self, session: str, group: str, cursor: Cursor
    ) -> consumer_pb2.Lease:
        return consumer_pb2.Lease(
            session=session, group=group, consumer=cursor.owner, token=cursor.token,
            expires_ms=cursor.lease_until,
        )

    def _accept(
        self,
        batch: SessionView,
        layer: ConsumerBatch,
        command: consumer_commands_pb2.AcceptCommand,
        now: int,
    ) -> consumer_pb2.Lease:
        group = self._group(layer, command.group)
        check_consumer(command.consumer)
        check_duration("lease duration", command.lease_ms)
        lease_ms = command.lease_ms or DEFAULT_LEASE_MS
        group_bytes = command.group.encode("utf-8")
        if command.session:
            session, _, _ = self._session(batch, command.session)
            name = command.session
        else:
            found = self._next_available(batch, layer, group.group, command.prefix, now)
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
        self._touch(layer, session, now)
        return self._lease(name, command.group, cursor)

    def _next_available(
        self, batch: SessionView, layer: ConsumerBatch, group: str, prefix: str, now: int
    ) -> str | None:
        """The first session after the one last handed out (wrapping around) that has
        something to deliver to ``group`` and no live owner."""
        group_bytes = group.encode("utf-8")
        last = layer.raw_value(ROTATION_PREFIX + group_bytes) or b""
        lower = b"S/" + prefix.encode("utf-8")
        upper = successor(lower)
        looked = 0
        for start in (max(lower, b"S/" + last + b"\x00") if last else lower, lower):
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
        self, batch: SessionView, layer: ConsumerBatch, session: str, group: str, token: int
    ) -> tuple[bytes, bytes, Cursor]:
        session_bytes, _, _ = self._session(batch, session)
        self._group(layer, group)
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

    def _renew(
        self,
        batch: SessionView,
        layer: ConsumerBatch,
        command: consumer_commands_pb2.RenewCommand,
        now: int,
    ) -> consumer_pb2.Lease:
        check_duration("lease duration", command.lease_ms)
        session, key, cursor = self._owned_cursor(
            batch, layer, command.session, command.group, command.token
        )
        if not cursor.live_owner(now):
            raise refuse(
                f"the lease of session {command.session!r} in group {command.group!r} with "
                f"fencing token {command.token} expired at {cursor.lease_until}"
            )
        cursor.lease_until = now + (command.lease_ms or DEFAULT_LEASE_MS)
        for item in cursor.pending:  # the owner's locks last as long as its lease
            if item[3] == LOCKED and item[2] > now:
                item[2] = max(item[2], cursor.lease_until)
        layer.put(key, cursor)
        self._touch(layer, session, now)
        return self._lease(command.session, command.group, cursor)

    def _release(
        self,
        batch: SessionView,
        layer: ConsumerBatch,
        command: consumer_commands_pb2.ReleaseCommand,
        now: int,
    ) -> consumer_pb2.ReleaseSessionResponse:
        _, key, cursor = self._owned_cursor(
            batch, layer, command.session, command.group, command.token
        )
        if cursor.lease_until:
            cursor.lease_until = 0
            cursor.owner = ""
            cursor.release_locks()
            layer.put(key, cursor)
        return consumer_pb2.ReleaseSessionResponse()

    # -- state -----------------------------------------------------------------------------------
    def _set_state(
        self,
        batch: SessionView,
        layer: ConsumerBatch,
        command: consumer_commands_pb2.SetStateCommand,
        now: int,
    ) -> consumer_pb2.SessionState:
        session, _, _ = self._session(batch, command.session)
        self._group(layer, command.group)
        cursor = layer.cursor(cursor_key(session, command.group.encode("utf-8"))) or Cursor()
        where = f"session {command.session!r} in group {command.group!r}"
        self._check_token(cursor, command.token, now, where)
        version = self._check_state_write(layer, session, command.state)
        layer.put(STATE_PREFIX + sid_of(session), U64.pack(version) + command.state.data)
        self._touch(layer, session, now)
        return consumer_pb2.SessionState(
            session=command.session, version=version, data=command.state.data
        )

    # -- groups, dead letters, policies ----------------------------------------------------------
    def _create_group(
        self,
        layer: ConsumerBatch,
        command: consumer_commands_pb2.CreateGroupCommand,
        now: int,
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

    def _resubmit(
        self,
        batch: SessionView,
        layer: ConsumerBatch,
        ops: SessionOps,
        command: consumer_commands_pb2.ResubmitCommand,
        now: int,
    ) -> consumer_pb2.ResubmitDeadLettersResponse:
        session, _, _ = self._session(batch, command.session)
        sid = sid_of(session)
        if len(command.sequences) > RESUBMIT_LIMIT:
            raise InvalidInput(
                ErrorCode.RESOURCE_EXHAUSTED,
                f"{len(command.sequences)} dead letters; the limit is {RESUBMIT_LIMIT} per call",
            )
        sequences = list(dict.fromkeys(command.sequences)) or self._held_sequences(layer, sid)
        records: list[consumer_commands_pb2.DeadLetterRecord] = []
        total = 0
        for sequence in sequences:
            record = layer.message(
                DEAD_PREFIX + sid + U64.pack(sequence), consumer_commands_pb2.DeadLetterRecord
            )
            if record is None:
                raise InvalidInput(
                    ErrorCode.NOT_FOUND,
                    f"dead letter {sequence} of session {command.session!r} not found",
                )
            if (
                len(records) >= self.limits.max_messages_per_append
                or total + len(record.data) > self.limits.max_append_bytes
            ):
                if command.sequences:
                    raise InvalidInput(
                        ErrorCode.RESOURCE_EXHAUSTED, "dead letters too large for one append"
                    )
                break
            total += len(record.data)
            records.append(record)
        policy = self._policy(layer, session)
        if policy is not None and policy.closed:
            raise refuse(f"session {command.session!r} is closed")
        response = consumer_pb2.ResubmitDeadLettersResponse()
        if records:
            first, count = ops.append_messages(
                batch, command.session, [record.data for record in records], now,
                command.principal,
            )
            response.offsets.extend(range(first, first + count))
            for record in records:
                layer.delete(DEAD_PREFIX + sid + U64.pack(record.sequence))
            policy = self._policy(layer, session)
            assert policy is not None  # a dead letter exists, so does its counter
            policy.dead_letters -= len(records)
            layer.put(POLICY_PREFIX + sid, policy)
        policy = self._policy(layer, session)
        response.remaining = policy.dead_letters if policy is not None else 0
        return response

    def _held_sequences(self, layer: ConsumerBatch, sid: bytes) -> list[int]:
        """Sequences of the session's dead letters (stored and written in this batch)."""
        prefix = DEAD_PREFIX + sid
        return [
            int(U64.unpack_from(key, len(prefix))[0])
            for key in layer.keys(prefix, prefix, RESUBMIT_LIMIT)
        ]

    def _configure(
        self,
        batch: SessionView,
        layer: ConsumerBatch,
        command: consumer_commands_pb2.ConfigureSessionCommand,
    ) -> consumer_pb2.ConfigureSessionResponse:
        session, _, _ = self._session(batch, command.session)
        for what, value in (
            ("session TTL", command.session_ttl_ms),
            ("message TTL", command.message_ttl_ms),
            ("retention", command.retention_ms),
        ):
            check_duration(what, value)
        policy = self._policy(layer, session) or consumer_commands_pb2.SessionPolicy()
        before = policy_has_sweep(policy)
        policy.session_ttl_ms = command.session_ttl_ms
        policy.message_ttl_ms = command.message_ttl_ms
        policy.retention_ms = command.retention_ms
        policy.retention_bytes = command.retention_bytes
        after = policy_has_sweep(policy)
        if before != after:
            self._count_policies(layer, 1 if after else -1)
        layer.put(POLICY_PREFIX + sid_of(session), policy)
        return consumer_pb2.ConfigureSessionResponse()

    def _close(
        self,
        batch: SessionView,
        layer: ConsumerBatch,
        command: consumer_commands_pb2.CloseSessionCommand,
    ) -> consumer_pb2.CloseSessionResponse:
        session, _, _ = self._session(batch, command.session)
        policy = self._policy(layer, session) or consumer_commands_pb2.SessionPolicy()
        policy.closed = True
        layer.put(POLICY_PREFIX + sid_of(session), policy)
        return consumer_pb2.CloseSessionResponse()

    def _sweep(
        self, batch: SessionView, layer: ConsumerBatch, ops: SessionOps, now: int
    ) -> consumer_pb2.ConfigureSessionResponse:
        """Expire idle sessions and apply retention, for a bounded number of sessions
        after the one the last sweep stopped at."""
        last = layer.raw_value(SWEEP_KEY) or b""
        start = POLICY_PREFIX + (sid_of(last) + b"\x00" if last else b"")
        swept = 0
        stopped = b""
        for key in layer.keys(POLICY_PREFIX, start, SWEEP_LIMIT):
            swept += 1
            length = U16.unpack_from(key, len(POLICY_PREFIX))[0]
            session = key[len(POLICY_PREFIX) + 2 : len(POLICY_PREFIX) + 2 + length]
            stopped = session
            policy = self._policy(layer, session)
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
                before = max(before, self._first_live(
                    batch, layer, session, max(0, now - policy.retention_ms), end
                ))
            if policy.retention_bytes:
                before = max(before, self._size_cut(batch, session, first, end,
                                                    policy.retention_bytes))
            if before > first:
                ops.trim_before(batch, name, before)
            horizon = now - max(policy.retention_ms, policy.message_ttl_ms)
            if needs_time_index(policy) and horizon > 0:
                # Index entries older than every cutoff still to come are never read again.
                prefix = TIME_PREFIX + sid_of(session)
                bound = prefix + U64.pack(horizon)
                for entry in layer.keys(prefix, prefix, TIME_INDEX_PRUNE):
                    if entry >= bound:
                        break
                    layer.delete(entry)
        layer.put(SWEEP_KEY, stopped if swept == SWEEP_LIMIT else b"")
        return consumer_pb2.ConfigureSessionResponse()

    @staticmethod
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

    # -- local reads -----------------------------------------------------------------------------
    def has_policies(self) -> bool:
        value = self._db.get(POLICIES_KEY)
        return value is not None and U64.unpack(value)[0] > 0

    def clock(self) -> int:
        value = self._db.get(CLOCK_KEY)
        return 0 if value is None else int(U64.unpack(value)[0])

    def group(self, group: str) -> consumer_commands_pb2.GroupRecord | None:
        value = self._db.get(GROUP_PREFIX + check_group(group))
        return None if value is None else consumer_commands_pb2.GroupRecord.FromString(value)

    def groups(self) -> list[consumer_commands_pb2.GroupRecord]:
        return [
            consumer_commands_pb2.GroupRecord.FromString(value)
            for _, value in scan(self._db, GROUP_PREFIX, GROUP_PREFIX, MAX_LIST)
        ]

    def cursor(self, session: bytes, group: bytes) -> Cursor | None:
        value = self._db.get(cursor_key(session, group))
        return None if value is None else Cursor.decode(value)

    def state(self, session: bytes) -> tuple[int, bytes]:
        value = self._db.get(STATE_PREFIX + sid_of(session))
        if value is None:
            return 0, b""
        return int(U64.unpack_from(value)[0]), bytes(value[8:])

    def policy(self, session: bytes) -> consumer_commands_pb2.SessionPolicy:
        value = self._db.get(POLICY_PREFIX + sid_of(session))
        if value is None:
            return consumer_commands_pb2.SessionPolicy()
        return consumer_commands_pb2.SessionPolicy.FromString(value)

    def dead_letters(
        self, session: bytes, from_sequence: int, limit: int
    ) -> tuple[list[consumer_commands_pb2.DeadLetterRecord], bool]:
        prefix = DEAD_PREFIX + sid_of(session)
        found = [
            consumer_commands_pb2.DeadLetterRecord.FromString(value)
            for _, value in scan(self._db, prefix, prefix + U64.pack(from_sequence), limit + 1)
        ]
        return found[:limit], len(found) > limit

    def status(
        self, session: bytes, first: int, end: int, now: int,
        groups: list[consumer_commands_pb2.GroupRecord],
    ) -> consumer_pb2.ConsumerSessionStatus:
        policy = self.policy(session)
        status = consumer_pb2.ConsumerSessionStatus(
            session=session.decode("utf-8"), dead_letters=policy.dead_letters,
            closed=policy.closed, session_ttl_ms=policy.session_ttl_ms,
            message_ttl_ms=policy.message_ttl_ms, retention_ms=policy.retention_ms,
            retention_bytes=policy.retention_bytes,
        )
        for group in groups:
            cursor = self.cursor(session, group.group.encode("utf-8")) or Cursor()
            live = cursor.live_owner(now)
            status.groups.add(
                group=group.group, owner=cursor.owner if live else "",
                lease_expires_ms=cursor.lease_until if live else 0, token=cursor.token,
                backlog=cursor.backlog(first, end), in_flight=cursor.in_flight(now),
            )
        return status


__all__ = [
    "CONSUMER_PREFIX",
    "ConsumerBatch",
    "ConsumerResult",
    "ConsumerState",
    "Cursor",
]
