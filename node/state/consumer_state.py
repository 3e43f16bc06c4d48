"""Consumer state: the coordinator of consumer groups, leases, session state, dead letters and
session policies (every key under ``C/``).

Owns: dispatching a ``ConsumerCommand`` to the module of its concern, the hooks the session
side calls on an append and a delete, and the local reads the consumer service answers from.
Per concern (modules of ``quorumlog.node.state``; ``consumer_records`` has the ``C/`` key
table): ``consumer_groups`` (groups, cursors, receive, settle), ``leases`` (accept, renew,
release, fencing), ``session_state`` (compare-and-set blobs), ``dead_letters`` (dead-letter
log, resubmit, purge), ``session_policies`` (TTLs, retention, close, sweep), ``consumer_overlay``
(the per-apply overlay, the monotonic clock ``C/clock``). Must never: read a clock (time is
the entry's ``leader_time_ms``, clamped by ``C/clock`` so it never goes back when leadership
moves to a node whose clock is behind), keep per-message data in Python memory beyond one
``apply`` call, or change anything when it refuses a command (every handler validates first,
then mutates; a refusal raises ``InvalidInput`` before any write).
"""

from __future__ import annotations

import rocksdict
from google.protobuf.message import Message

from quorumlog.node.common.limits import Limits
from quorumlog.node.state import (
    consumer_groups,
    dead_letters,
    leases,
    message_ids,
    session_policies,
    session_state,
    timed_messages,
)
from quorumlog.node.state.consumer_overlay import (
    ConsumerBatch,
    PolicyHint,
    SessionOps,
    SessionView,
    overlay,
)
from quorumlog.node.state.consumer_records import (
    CLOCK_KEY,
    SESSION_SUBPREFIXES,
    ConsumerResult,
    Cursor,
    cursor_key,
    invalid,
)
from quorumlog.node.state.keys import CONSUMER_PREFIX, U64, sid, successor
from quorumlog.node.state.timed_messages import Timing
from quorumlog.proto import consumer_commands_pb2, consumer_pb2, envelope_pb2


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
        session_policies.before_append(overlay(batch, self._db, self._hint), session, first, now)

    def judge_ids(
        self, batch: SessionView, session: bytes, ids: list[str], *, first: int, now: int,
        prune: bool,
    ) -> tuple[list[int], list[int]]:
        """An append's ``message_id``s (``quorumlog.node.state.message_ids``): the offset of
        each message and the positions of the duplicates (``first``: where its first new
        message goes). ``prune``: remove expired ids of the session first."""
        layer, window = self._id_window(batch, session)
        clock = layer.now(now)
        if prune:
            message_ids.prune(layer, session, clock, window)
        return message_ids.judge(layer, session, ids, first=first, now=clock, window=window)

    def prune_ids(self, batch: SessionView, session: bytes, now: int) -> None:
        """Remove ids of ``session`` expired by the leader time ``now`` (an append without
        ids, the first of its session in a new second)."""
        layer, window = self._id_window(batch, session)
        message_ids.prune(layer, session, now, window)

    def _id_window(self, batch: SessionView, session: bytes) -> tuple[ConsumerBatch, int]:
        """The apply call's overlay and ``session``'s duplicate window."""
        layer = overlay(batch, self._db, self._hint)
        policy = session_policies.policy_of(layer, session) if self._hint.maybe else None
        return layer, message_ids.window_of(policy)

    def record_timings(
        self, batch: SessionView, session: bytes,
        parsed: list[envelope_pb2.Envelope | None], first: int, now: int,
    ) -> None:
        """The delivery times and times to live of the messages an append writes at
        ``first`` on (``parsed``: their envelopes), if any has one."""
        timings = []
        for position, envelope in enumerate(parsed):
            if envelope is None or not (envelope.deliver_at_ms or envelope.time_to_live_ms):
                continue
            deliver_at = envelope.deliver_at_ms if envelope.deliver_at_ms > now else 0
            expires_at = now + envelope.time_to_live_ms if envelope.time_to_live_ms else 0
            if deliver_at or expires_at:
                timings.append((first + position, Timing(deliver_at, expires_at, False)))
        if timings:
            timed_messages.record(overlay(batch, self._db, self._hint), session, timings)

    def on_trim(self, batch: SessionView, session: bytes, before: int) -> None:
        """The session was trimmed below ``before``: forget those offsets' timings."""
        if not self._hint.maybe:
            return
        layer = overlay(batch, self._db, self._hint)
        policy = session_policies.policy_of(layer, session)
        if policy is not None and policy.timed:
            timed_messages.on_trim(layer, session, before)

    def record_ids(
        self, batch: SessionView, session: bytes, ids: list[str],
        judged: tuple[list[int], list[int]], now: int,
    ) -> None:
        """Remember the ids of the messages an append wrote (``judged``: ``judge_ids``')."""
        layer = overlay(batch, self._db, self._hint)
        message_ids.record(layer, session, ids, judged, layer.now(now))

    def on_delete(self, batch: SessionView, session: bytes) -> None:
        """The session is being deleted: remove every consumer key of it."""
        layer = overlay(batch, self._db, self._hint)
        session_policies.before_delete(layer, session)
        session_sid = sid(session)
        for prefix in SESSION_SUBPREFIXES:
            batch.raw.delete_range(prefix + session_sid, successor(prefix + session_sid))
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
        limits = self.limits
        kind = command.WhichOneof("kind")
        response: Message
        if kind == "receive":
            response = consumer_groups.receive(batch, layer, command.receive, now, limits)
        elif kind == "settle":
            response = consumer_groups.settle(batch, layer, command.settle, now, limits)
        elif kind == "cancel_scheduled":
            response = timed_messages.cancel(batch, layer, command.cancel_scheduled, now, limits)
        elif kind == "renew_locks":
            response = consumer_groups.renew_locks(batch, layer, command.renew_locks, now, limits)
        elif kind == "accept":
            response = leases.accept(batch, layer, command.accept, now, limits)
        elif kind == "renew":
            response = leases.renew(batch, layer, command.renew, now, limits)
        elif kind == "release":
            response = leases.release(batch, layer, command.release, limits)
        elif kind == "set_state":
            response = session_state.set_state(batch, layer, command.set_state, now, limits)
        elif kind == "create_group":
            response = consumer_groups.create_group(layer, command.create_group, now)
        elif kind == "resubmit":
            response = dead_letters.resubmit(
                batch, layer, ops, command.resubmit, now, limits=limits
            )
        elif kind == "purge":
            response = dead_letters.purge(batch, layer, command.purge, limits=limits)
        elif kind == "configure":
            response = session_policies.configure(batch, layer, command.configure, limits)
        elif kind == "close":
            response = session_policies.close(batch, layer, command.close, limits)
        elif kind == "sweep":
            response = session_policies.sweep(batch, layer, ops, now)
        else:
            raise invalid("unknown or empty consumer command")
        return ConsumerResult(response)

    # -- local reads -----------------------------------------------------------------------------
    def has_policies(self) -> bool:
        return session_policies.has_policies(self._db)

    def scheduled(
        self, session: bytes, now: int, include_due: bool, limit: int
    ) -> list[consumer_pb2.ScheduledMessage]:
        return timed_messages.stored_scheduled(self._db, session, now, include_due, limit)

    def clock(self) -> int:
        value = self._db.get(CLOCK_KEY)
        return 0 if value is None else int(U64.unpack(value)[0])

    def group(self, group: str) -> consumer_commands_pb2.GroupRecord | None:
        return consumer_groups.stored_group(self._db, group)

    def groups(self) -> list[consumer_commands_pb2.GroupRecord]:
        return consumer_groups.stored_groups(self._db)

    def cursor(self, session: bytes, group: bytes) -> Cursor | None:
        value = self._db.get(cursor_key(session, group))
        return None if value is None else Cursor.decode(value)

    def state(self, session: bytes) -> tuple[int, bytes]:
        return session_state.stored_state(self._db, session)

    def policy(self, session: bytes) -> consumer_commands_pb2.SessionPolicy:
        return session_policies.stored_policy(self._db, session)

    def dead_letters(
        self, session: bytes, from_sequence: int, limit: int
    ) -> tuple[list[consumer_commands_pb2.DeadLetterRecord], bool]:
        return dead_letters.stored_dead_letters(self._db, session, from_sequence, limit)

    def status(
        self, session: bytes, first: int, end: int, now: int,
        groups: list[consumer_commands_pb2.GroupRecord],
    ) -> consumer_pb2.ConsumerSessionStatus:
        policy = self.policy(session)
        status = consumer_pb2.ConsumerSessionStatus(
            session=session.decode("utf-8"), dead_letters=policy.dead_letters,
            closed=policy.closed, session_ttl_ms=policy.session_ttl_ms,
            message_ttl_ms=policy.message_ttl_ms, retention_ms=policy.retention_ms,
            retention_bytes=policy.retention_bytes, messages_expired=policy.messages_expired,
            duplicate_window_ms=policy.duplicate_window_ms,
            dead_letter_expired=policy.dead_letter_expired,
        )
        for group in groups:
            cursor = self.cursor(session, group.group.encode("utf-8")) or Cursor()
            live = cursor.live_owner(now)
            status.groups.add(
                group=group.group, owner=cursor.owner if live else "",
                lease_expires_ms=cursor.lease_until if live else 0, token=cursor.token,
                backlog=cursor.backlog(first, end), in_flight=cursor.in_flight(now),
                next_offset=cursor.next_delivery(first),
                first_unsettled=cursor.first_unsettled(first),
            )
        return status


__all__ = [
    "CONSUMER_PREFIX",
    "ConsumerBatch",
    "ConsumerResult",
    "ConsumerState",
    "Cursor",
]
