"""Session logs: applying append, trim and delete, and the local reads of sessions.

Owns: the writes of ``S/`` and ``s/`` (encodings in ``quorumlog.node.state.session_records``)
and of ``p/`` rings (``quorumlog.node.state.dedup`` judges them), each inside the caller's
apply batch; the apply-time checks of an append (input limits, the ACL's ``append`` rule, the
producer id's owner, a closed session); the session writes the consumer modules ask for (their
``SessionOps``); and reading sessions, messages and listings from the applied state. Must
never: write outside the apply batch while applying, read a clock (time is the entry's leader
time), or answer a read with a gap (a read racing a trim or delete answers ``OUT_OF_RANGE`` /
``NOT_FOUND``).

Semantics: appends take gapless offsets from 0 (a session deleted and appended to again
starts over at 0). Trim drops a prefix (``before_offset`` at or below the first retained
offset is a no-op; beyond the end is ``OUT_OF_RANGE``; equal to the end empties the session
but keeps its offsets). Delete removes the session's metadata, messages, producer state and
consumer keys.
"""

from __future__ import annotations

from typing import NoReturn

import rocksdict

from quorumlog.node.common.envelope import check_stored_envelopes
from quorumlog.node.common.limits import (
    ErrorCode,
    InvalidInput,
    Limits,
    check_append,
    check_session_id,
    list_limit,
    read_bounds,
)
from quorumlog.node.replication.applier import CommandError
from quorumlog.node.state.acl import APPEND, AclStore
from quorumlog.node.state.apply_batch import ApplyBatch
from quorumlog.node.state.consumer_state import ConsumerState
from quorumlog.node.state.dedup import check_sequence, producer_key, push_ring
from quorumlog.node.state.errors import OffsetTrimmed, SessionNotFound, StateCorrupted
from quorumlog.node.state.keys import SESSION_PREFIX, U64, successor
from quorumlog.node.state.message_ids import PRUNE_EVERY_MS, message_ids, parse_envelopes
from quorumlog.node.state.session_records import (
    TIMED,
    AppendResult,
    DeleteResult,
    ReadResult,
    Record,
    SessionInfo,
    SessionMeta,
    SessionPage,
    TrimResult,
    decode_message,
    encode_message,
    load_meta,
    message_key,
    message_prefix,
)
from quorumlog.proto import commands_pb2


class SessionLog:
    """Sessions over the node's RocksDB: the apply side (into an ``ApplyBatch``) and reads."""

    def __init__(
        self, db: rocksdict.Rdict, limits: Limits, acl: AclStore, consumers: ConsumerState
    ) -> None:
        self._db = db
        self.limits = limits
        self.acl = acl
        self.consumers = consumers

    # -- applying ------------------------------------------------------------------------
    def append(
        self, batch: ApplyBatch, command: commands_pb2.AppendCommand, now: int,
        *, judge_ids: bool = True,
    ) -> AppendResult | CommandError:
        """Apply one append. ``judge_ids`` False (a dead letter resubmitted): a remembered
        ``message_id`` is written again, and remembered at its new offset."""
        session = command.session
        messages = list(command.messages)
        envelopes = list(command.envelopes) if command.envelopes else []
        sequence = command.sequence
        try:
            session_bytes, producer_bytes, total = check_append(
                session, messages, command.producer_id, sequence, self.limits
            )
            if envelopes:
                check_stored_envelopes(envelopes, len(messages), total, self.limits)
        except InvalidInput as invalid:
            return CommandError(invalid.code, invalid.message)
        refusal = self._authorize_append(batch, session, producer_bytes, command.principal)
        if refusal is not None:
            return refusal
        count = len(messages)  # the producer sequences this append takes
        parsed = parse_envelopes(envelopes) if envelopes else None
        ids = message_ids(parsed) if parsed is not None else None
        if ids is not None and not any(ids):
            ids = None
        ring: bytes | None = None
        if producer_bytes:
            ring = batch.ring(session_bytes, producer_bytes)
            if ring:
                verdict = check_sequence(session, command.producer_id, ring, sequence, count)
                if verdict is not None:
                    if ids is not None and isinstance(verdict, AppendResult) and verdict.count:
                        # A retry of an append with message ids: answer as the first try did.
                        offsets, duplicates = self.consumers.judge_ids(
                            batch, session_bytes, ids, first=verdict.first_offset, now=now,
                            prune=False,
                        )
                        verdict.count = count - len(duplicates)
                        verdict.offsets, verdict.duplicate_positions = offsets, duplicates
                    return verdict
        meta = batch.meta(session_bytes)
        if meta is not None:
            try:
                self.consumers.on_append(batch, session_bytes, meta.next, now)
            except InvalidInput as refused:  # a closed session
                return CommandError(refused.code, refused.message)
        judged: tuple[list[int], list[int]] | None = None
        prune = meta is not None and (
            now // PRUNE_EVERY_MS != meta.last_append_ms // PRUNE_EVERY_MS
        )
        if ids is None and prune:
            self.consumers.prune_ids(batch, session_bytes, now)
        elif ids is not None and not judge_ids:
            first_new = 0 if meta is None else meta.next
            judged = (list(range(first_new, first_new + count)), [])
        elif ids is not None:
            judged = self.consumers.judge_ids(
                batch, session_bytes, ids, first=0 if meta is None else meta.next, now=now,
                prune=prune,
            )
            if judged[1]:  # leave the duplicates out
                skip = set(judged[1])
                messages = [m for i, m in enumerate(messages) if i not in skip]
                envelopes = [e for i, e in enumerate(envelopes) if i not in skip]
                assert parsed is not None
                parsed = [e for i, e in enumerate(parsed) if i not in skip]
                total = sum(map(len, messages))
        if meta is None:
            meta = SessionMeta(0, 0, 0, 0, now, now)
            batch.metas[session_bytes] = meta
        first = meta.next
        put = batch.raw.put
        if messages:
            if parsed is not None:
                self.consumers.record_timings(batch, session_bytes, parsed, first, now)
            self._write(batch, session_bytes, meta, (messages, envelopes), now)
            meta.end_bytes += total
            meta.last_append_ms = max(meta.last_append_ms, now)
            batch.dirty_metas.add(session_bytes)
        if producer_bytes:
            ring = push_ring(ring, sequence, count, first)
            batch.rings[(session_bytes, producer_bytes)] = ring
            put(producer_key(session_bytes, producer_bytes), ring)
        if judged is None:
            return AppendResult(session, first, count, False)
        assert ids is not None
        offsets, duplicates = judged
        self.consumers.record_ids(batch, session_bytes, ids, judged, now)
        if not duplicates:
            return AppendResult(session, first, count, False)
        return AppendResult(
            session, first, len(messages), not messages, offsets, duplicates
        )

    @staticmethod
    def _write(
        batch: ApplyBatch, session_bytes: bytes, meta: SessionMeta,
        written: tuple[list[bytes], list[bytes]], now: int,
    ) -> None:
        """The ``s/`` values of ``written`` (payloads, and envelopes: none or one each) from
        ``meta.next`` on (``meta.next`` advances)."""
        messages, envelopes = written
        first = offset = meta.next
        cumulative = meta.end_bytes
        put = batch.raw.put
        pack = U64.pack
        prefix = message_prefix(session_bytes)
        time_bytes = pack(now)  # the entry's leader time: every replica stores the same
        if envelopes:
            for message, envelope in zip(messages, envelopes, strict=True):
                value = encode_message(cumulative, time_bytes, envelope, message)
                put(prefix + pack(offset), value)
                offset += 1
                cumulative += len(message)
        else:
            for message in messages:
                put(prefix + pack(offset), pack(cumulative | TIMED) + time_bytes + message)
                offset += 1
                cumulative += len(message)
        batch.appended.setdefault(session_bytes, []).append(
            (first, meta.end_bytes, messages, envelopes, now)
        )
        meta.next = offset

    def _authorize_append(
        self, batch: ApplyBatch, session: str, producer: bytes, principal: str
    ) -> CommandError | None:
        """The ACL's ``append`` rule and the producer id's owner, at apply time so a rule
        changed after the leader's check still decides (``quorumlog.node.state.acl``)."""
        if not self.acl.allows(principal, APPEND, session):
            return CommandError(
                ErrorCode.PERMISSION_DENIED,
                f"principal {principal!r} may not append to session {session!r}",
            )
        if producer:
            refused = self.acl.bind_producer(batch.raw, batch.bindings, producer, principal)
            if refused is not None:
                return CommandError(refused.code, refused.message)
        return None

    def trim(
        self, batch: ApplyBatch, command: commands_pb2.TrimCommand
    ) -> TrimResult | CommandError:
        session = command.session
        try:
            session_bytes = check_session_id(session, self.limits)
        except InvalidInput as invalid:
            return CommandError(invalid.code, invalid.message)
        meta = batch.meta(session_bytes)
        if meta is None:
            return CommandError(ErrorCode.NOT_FOUND, f"session {session!r} not found")
        before = command.before_offset
        if before > meta.next:
            return CommandError(
                ErrorCode.OUT_OF_RANGE,
                f"cannot trim session {session!r} before offset {before}: "
                f"its end offset is {meta.next}",
            )
        if before > meta.first:
            start_bytes = (
                meta.end_bytes
                if before == meta.next
                else batch.cumulative_before(session_bytes, before)
            )
            batch.raw.delete_range(
                message_key(session_bytes, meta.first), message_key(session_bytes, before)
            )
            self.consumers.on_trim(batch, session_bytes, before)
            meta.first = before
            meta.start_bytes = start_bytes
            batch.dirty_metas.add(session_bytes)
        return TrimResult(session, meta.first, meta.info(session))

    def delete_session(
        self, batch: ApplyBatch, command: commands_pb2.DeleteSessionCommand
    ) -> DeleteResult | CommandError:
        session = command.session
        try:
            session_bytes = check_session_id(session, self.limits)
        except InvalidInput as invalid:
            return CommandError(invalid.code, invalid.message)
        if batch.meta(session_bytes) is None:
            return CommandError(ErrorCode.NOT_FOUND, f"session {session!r} not found")
        batch.delete_session(session_bytes)
        return DeleteResult(session)

    # -- session writes the consumer modules ask for (their ``SessionOps``) ----------------
    def append_messages(
        self, batch: ApplyBatch, session: str, messages: list[bytes], now: int, principal: str,
        *, envelopes: list[bytes] | None = None,
    ) -> tuple[int, int]:
        """Append inside this apply call as ``principal`` (``envelopes``: empty, or one
        serialized envelope per message; their message ids are written again, not judged:
        a resubmitted dead letter); (first offset, count) or ``InvalidInput``."""
        command = commands_pb2.AppendCommand(
            session=session, messages=messages, principal=principal, envelopes=envelopes or []
        )
        result = self.append(batch, command, now, judge_ids=False)
        if isinstance(result, CommandError):
            raise InvalidInput(result.code, result.message)
        return result.first_offset, result.count

    def trim_before(self, batch: ApplyBatch, session: str, before: int) -> None:
        self.trim(batch, commands_pb2.TrimCommand(session=session, before_offset=before))

    def delete(self, batch: ApplyBatch, session: str) -> None:
        batch.delete_session(session.encode("utf-8"))

    # -- reads (local applied state) -----------------------------------------------------
    def describe(self, session: str) -> SessionInfo:
        session_bytes = check_session_id(session, self.limits)
        meta = load_meta(self._db, session_bytes)
        if meta is None:
            raise SessionNotFound(session)
        return meta.info(session)

    def read(
        self, session: str, from_offset: int, max_count: int = 0, max_bytes: int = 0
    ) -> ReadResult:
        """Records from ``from_offset``: at most ``max_count`` and about ``max_bytes`` of
        payload, but at least one when any is available (0 means the limits' default)."""
        max_count, max_bytes = read_bounds(max_count, max_bytes, self.limits)
        session_bytes = check_session_id(session, self.limits)
        meta = load_meta(self._db, session_bytes)
        if meta is None:
            raise SessionNotFound(session)
        if from_offset < meta.first:
            raise OffsetTrimmed(session, from_offset, meta.first)
        if from_offset >= meta.next:
            return ReadResult(session, [], from_offset, meta.first, meta.next)
        end = min(meta.next, from_offset + max_count)
        prefix = message_prefix(session_bytes)
        options = rocksdict.ReadOptions()
        options.set_iterate_upper_bound(prefix + U64.pack(end))
        iterator = self._db.iter(options)
        iterator.seek(prefix + U64.pack(from_offset))
        records: list[Record] = []
        offset = from_offset
        total = 0
        key_length = len(prefix) + 8
        while iterator.valid():
            key: bytes = iterator.key()
            if len(key) != key_length or U64.unpack_from(key, len(prefix))[0] != offset:
                break  # trimmed or deleted under us (a concurrent apply): answered below
            stored = decode_message(session_bytes, offset, iterator.value())
            size = len(stored.payload) + len(stored.envelope)
            if records and total + size > max_bytes:
                break
            total += size
            records.append(Record(offset, stored.payload, stored.append_time_ms, stored.envelope))
            offset += 1
            iterator.next()
        else:
            iterator.status()  # an iteration that stopped on damaged data raises here
            if offset != end:
                self._raise_moved(session, session_bytes, offset)
        if not records:
            self._raise_moved(session, session_bytes, offset)
        return ReadResult(session, records, offset, meta.first, meta.next)

    def _raise_moved(self, session: str, session_bytes: bytes, offset: int) -> NoReturn:
        meta = load_meta(self._db, session_bytes)
        if meta is None:
            raise SessionNotFound(session)
        if offset < meta.first:
            raise OffsetTrimmed(session, offset, meta.first)
        raise StateCorrupted(f"session {session!r}: message {offset} missing")

    def list_sessions(self, prefix: str = "", limit: int = 0, start_after: str = "") -> SessionPage:
        """Sessions whose name starts with ``prefix``, sorted by name (UTF-8 byte order),
        after ``start_after``; at most ``limit`` (0: the default)."""
        limit = list_limit(limit, self.limits)
        lower = SESSION_PREFIX + prefix.encode("utf-8")
        upper = successor(lower)
        start = lower
        if start_after:
            start = max(start, SESSION_PREFIX + start_after.encode("utf-8") + b"\x00")
        options = rocksdict.ReadOptions()
        options.set_iterate_upper_bound(upper)
        iterator = self._db.iter(options)
        iterator.seek(start)
        sessions: list[SessionInfo] = []
        while iterator.valid():
            if len(sessions) == limit:
                return SessionPage(sessions, True)
            key: bytes = iterator.key()
            name_bytes = key[len(SESSION_PREFIX) :]
            name = name_bytes.decode("utf-8")
            sessions.append(SessionMeta.decode(name_bytes, iterator.value()).info(name))
            iterator.next()
        iterator.status()  # an iteration that stopped on damaged data raises here
        return SessionPage(sessions, False)
