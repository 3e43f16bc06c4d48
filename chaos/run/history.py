"""The chaos history format: a typed writer and a strict reader for JSON-lines histories.

Owns: the on-disk format of a chaos run's history (below), its event types, the canonical
per-session hash of final records (``records_hash``), pairing invocations with completions
into :class:`Operation` records and fault starts with ends into :class:`FaultWindow` records,
and precise :class:`HistoryError` messages naming the offending line.
Must never: judge a history (that is ``quorumlog.chaos.run.checker``), talk to a cluster, read a
clock, or silently skip a malformed line.

Format: UTF-8, one JSON object per line (blank lines are ignored). Every event has ``"type"``
and ``"time"`` (monotonic seconds, a finite number, shared by every writer of one run).
Unknown keys are ignored so the workload can add fields without breaking old checkers.

Operations (one in flight per ``process``; a process's next ``invoke`` comes only after the
completion of its previous one)::

    {"type": "invoke", "process": 3, "op": "append", "session": "s1",
     "values": ["p3-17"], "producer": "p3", "sequence": 17, "time": 12.5}
    {"type": "ok", "process": 3, "op": "append", "offsets": [41], "time": 12.6}
    {"type": "invoke", "process": 4, "op": "read", "session": "s1", "from_offset": 0,
     "consistency": "linearizable", "time": 12.7}
    {"type": "ok", "process": 4, "op": "read", "records": [[0, "p3-1"], [1, "p4-1"]],
     "end_offset": 2, "time": 12.8}

- ``type``: ``invoke``, then exactly one of ``ok`` (succeeded), ``fail`` (definitely did not
  happen, e.g. INVALID_ARGUMENT or a refusal before proposing) or ``info`` (outcome unknown:
  timeout, connection lost). An invocation never completed by the end of the file counts as
  ``info``.
- ``process``: the worker id (integer or string). ``op``: ``append``, ``read`` (a page of
  records; ``consistency`` is ``linearizable`` (the default) or ``follower``), ``consume``
  (records delivered to a consumer; checked for content, not for freshness) or any other name
  (counted, otherwise not analysed).
- ``session``, ``values`` (or a single ``value``), ``producer``, ``sequence`` (of the first
  value; value ``i`` has ``sequence + i``), ``from_offset`` and ``consistency`` belong on the
  invocation; a completion may repeat them and must then agree. Values are strings, unique per
  producer write (a retry of the same write repeats the same values and sequence).
- ``shard`` (optional, on the invocation): the data shard the operation's session belongs to in
  a sharded cluster (``quorumlog.proto.sharding.shard_of``); absent with one shard. Every
  guarantee is judged per session whatever the shard; the checker adds per-shard counts.
- On ``ok``: ``offsets`` (or a single ``offset``), one per value, for appends; ``records`` (a
  list of ``[offset, value]``) and optionally ``end_offset`` (the session's next offset as of
  the read) for reads and consumes. ``error`` (free text) may be on any completion.

Consumer-group operations (judged by ``quorumlog.chaos.run.consumer_checker``)::

    {"type": "invoke", "process": "c0", "op": "create_group", "group": "g",
     "max_deliveries": 4, "time": 1.0}
    {"type": "invoke", "process": "c0", "op": "accept", "group": "g", "consumer": "c0",
     "time": 2.0}
    {"type": "ok", "process": "c0", "op": "accept", "session": "s3", "token": 7, "time": 2.1}
    {"type": "invoke", "process": "c0", "op": "receive", "session": "s3", "group": "g",
     "token": 7, "max_messages": 10, "time": 2.2}
    {"type": "ok", "process": "c0", "op": "receive", "records": [[4, "p1-9"]],
     "counts": [1], "time": 2.3}
    {"type": "invoke", "process": "c0", "op": "settle", "session": "s3", "group": "g",
     "token": 7, "settlements": [[4, 1, "complete"]], "time": 2.4}
    {"type": "ok", "process": "c0", "op": "dead_letters", "records": [[5, "p2-3"]], ...}
    {"type": "ok", "process": "drain", "op": "drain", "group": "g", "time": 90.0}

- ``group``, ``token`` (the fencing token the call carries; on an ``accept`` completion, the
  token granted), ``consumer`` (the lease owner's name), ``max_messages``, ``max_deliveries``
  (of the group, on ``create_group``). ``renew``, ``release`` and ``set_state`` carry
  ``session``, ``group`` and ``token``.
- ``receive`` ``ok``: ``leader_time`` (the leader's clock the receive was decided by, ms; when
  it delivered something), ``records`` delivered and ``counts``, their delivery counts (1 on the
  first delivery). ``settle``: ``settlements``, a list of ``[offset, delivery_count, action]``
  with action ``complete``, ``abandon`` or ``dead_letter``. ``dead_letters`` ``ok``:
  ``records``, the group's dead-lettered messages of the session (``[offset, value]``).
  ``drain`` ``ok``: the final drain of ``group`` consumed everything left in every session.

Faults::

    {"type": "fault", "fault": "partition", "target": "n1", "phase": "start", "time": 20.0}
    {"type": "fault", "fault": "partition", "target": "n1", "phase": "end", "time": 30.0}

``target`` is optional; ``(fault, target)`` pairs a start with its end. A fault still active
at the end of the file ends there.

Final per-node snapshots, written after every fault healed and the cluster settled, one per
(node, session)::

    {"type": "final", "node": "n1", "session": "s1", "leader": true, "first_offset": 0,
     "records": [[0, "p3-1"], [1, "p4-1"]], "time": 99.0}
    {"type": "final", "node": "n2", "session": "s1", "hash": "<records_hash>", "time": 99.0}

Either ``records`` or ``hash`` (or both, which must then agree); ``leader`` marks the node whose
data is the reference final state; ``first_offset`` is the first retained offset after
trimming (default 0: a snapshot that omits it claims nothing was trimmed). A node that has
final events but none for a session holds nothing of it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, TypeAlias

ProcessId: TypeAlias = int | str
NodeId: TypeAlias = int | str
Record: TypeAlias = tuple[int, str]
Settled: TypeAlias = tuple[int, int, str]  # offset, delivery count, action
Outcome: TypeAlias = Literal["ok", "fail", "info"]
OpEventType: TypeAlias = Literal["invoke", "ok", "fail", "info"]

OP_EVENT_TYPES: tuple[str, ...] = ("invoke", "ok", "fail", "info")
CONSISTENCIES: tuple[str, ...] = ("linearizable", "follower")
SETTLE_ACTIONS: tuple[str, ...] = ("complete", "abandon", "dead_letter")
OBSERVING_OPS: tuple[str, ...] = ("read", "consume", "receive", "dead_letters")
DRAIN_PROCESS = "drain"  # the process of the final consumer drain's operations


class HistoryError(Exception):
    """Malformed history input; the message names the file and line."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}" if line else f"{source}: {message}")
        self.source = source
        self.line = line
        self.detail = message


def records_hash(records: Iterable[Record]) -> str:
    """The canonical hash of a session's records: sha256 of compact JSON, sorted by offset."""
    ordered = sorted((int(offset), str(value)) for offset, value in records)
    text = json.dumps([[offset, value] for offset, value in ordered],
                      separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class OpEvent:
    """An invocation or a completion of one operation, as written on one line."""

    type: OpEventType
    process: ProcessId
    op: str
    time: float
    session: str | None = None
    values: tuple[str, ...] | None = None
    producer: str | None = None
    sequence: int | None = None
    offsets: tuple[int, ...] | None = None
    records: tuple[Record, ...] | None = None
    from_offset: int | None = None
    end_offset: int | None = None
    consistency: str | None = None
    error: str | None = None
    group: str | None = None
    token: int | None = None
    consumer: str | None = None
    counts: tuple[int, ...] | None = None
    settlements: tuple[Settled, ...] | None = None
    max_messages: int | None = None
    max_deliveries: int | None = None
    shard: int | None = None
    leader_time: int | None = None
    line: int = field(default=0, compare=False)

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"type": self.type, "process": self.process, "op": self.op}
        optional: dict[str, object | None] = {
            "session": self.session,
            "values": list(self.values) if self.values is not None else None,
            "producer": self.producer,
            "sequence": self.sequence,
            "offsets": list(self.offsets) if self.offsets is not None else None,
            "records": ([[offset, value] for offset, value in self.records]
                        if self.records is not None else None),
            "from_offset": self.from_offset,
            "end_offset": self.end_offset,
            "consistency": self.consistency,
            "error": self.error,
            "group": self.group,
            "token": self.token,
            "consumer": self.consumer,
            "counts": list(self.counts) if self.counts is not None else None,
            "settlements": ([list(item) for item in self.settlements]
                            if self.settlements is not None else None),
            "max_messages": self.max_messages,
            "max_deliveries": self.max_deliveries,
            "shard": self.shard,
            "leader_time": self.leader_time,
        }
        data.update({key: value for key, value in optional.items() if value is not None})
        data["time"] = self.time
        return data


@dataclass(frozen=True)
class FaultEvent:
    fault: str
    phase: Literal["start", "end"]
    time: float
    target: str | None = None
    line: int = field(default=0, compare=False)

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"type": "fault", "fault": self.fault}
        if self.target is not None:
            data["target"] = self.target
        data.update({"phase": self.phase, "time": self.time})
        return data


@dataclass(frozen=True)
class FinalEvent:
    """One node's final state of one session: its records, or just their hash."""

    node: NodeId
    session: str
    time: float
    records: tuple[Record, ...] | None = None
    hash: str | None = None
    leader: bool = False
    first_offset: int | None = None
    line: int = field(default=0, compare=False)

    @property
    def digest(self) -> str:
        if self.records is not None:
            return records_hash(self.records)
        assert self.hash is not None
        return self.hash

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"type": "final", "node": self.node, "session": self.session}
        if self.leader:
            data["leader"] = True
        if self.first_offset is not None:
            data["first_offset"] = self.first_offset
        if self.records is not None:
            data["records"] = [[offset, value] for offset, value in self.records]
        if self.hash is not None:
            data["hash"] = self.hash
        data["time"] = self.time
        return data


Event: TypeAlias = OpEvent | FaultEvent | FinalEvent


@dataclass(frozen=True)
class Operation:
    """An invocation joined with its completion (``info`` when it never completed)."""

    process: ProcessId
    op: str
    outcome: Outcome
    invoke_time: float
    complete_time: float | None  # None: never completed before the history ended
    session: str | None = None
    values: tuple[str, ...] = ()
    producer: str | None = None
    sequence: int | None = None
    offsets: tuple[int, ...] = ()
    records: tuple[Record, ...] = ()
    from_offset: int = 0
    end_offset: int | None = None
    consistency: str = "linearizable"
    error: str | None = None
    group: str | None = None
    token: int | None = None
    consumer: str | None = None
    counts: tuple[int, ...] = ()  # delivery counts of ``records`` (ok receives)
    settlements: tuple[Settled, ...] = ()
    max_messages: int | None = None
    max_deliveries: int | None = None
    shard: int | None = None  # the session's data shard (sharded runs only)
    leader_time: int | None = None  # an ok receive's leader clock (ms), when it delivered
    line: int = 0  # the invocation's line


@dataclass(frozen=True)
class FaultWindow:
    fault: str
    target: str | None
    start: float
    end: float | None  # None: still active when the history ended
    line: int = 0


@dataclass(frozen=True)
class History:
    events: tuple[Event, ...]
    operations: tuple[Operation, ...]
    faults: tuple[FaultWindow, ...]
    finals: tuple[FinalEvent, ...]
    start_time: float
    end_time: float


# ---------------------------------------------------------------------------------------------
# Writing


class HistoryWriter:
    """Appends events to a history file, one line each, flushed after every event.

    Not thread-safe by itself: a multi-threaded workload serialises calls (one lock) so lines
    never interleave.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] = self.path.open("a", encoding="utf-8")

    def write(self, event: Event) -> None:
        self._file.write(json.dumps(event.to_json(), ensure_ascii=False,
                                    separators=(",", ":")) + "\n")
        self._file.flush()

    def invoke(self, process: ProcessId, op: str, time: float, **fields: object) -> OpEvent:
        return self._op("invoke", process, op, time, fields)

    def complete(self, outcome: Outcome, process: ProcessId, op: str, time: float,
                 **fields: object) -> OpEvent:
        return self._op(outcome, process, op, time, fields)

    def fault(self, fault: str, phase: Literal["start", "end"], time: float,
              target: str | None = None) -> FaultEvent:
        event = FaultEvent(fault=fault, phase=phase, time=time, target=target)
        self.write(event)
        return event

    def final(self, node: NodeId, session: str, time: float, *,
              records: Sequence[Record] | None = None, hash: str | None = None,
              leader: bool = False, first_offset: int | None = None) -> FinalEvent:
        event = FinalEvent(node=node, session=session, time=time,
                           records=tuple(records) if records is not None else None,
                           hash=hash, leader=leader, first_offset=first_offset)
        if event.records is None and event.hash is None:
            raise ValueError("a final event needs records or a hash")
        self.write(event)
        return event

    def _op(self, kind: OpEventType, process: ProcessId, op: str, time: float,
            fields: Mapping[str, object]) -> OpEvent:
        data: dict[str, object] = {"type": kind, "process": process, "op": op, "time": time}
        data.update({key: value for key, value in fields.items() if value is not None})
        event = _parse_event(json.loads(json.dumps(data)), str(self.path), 0)
        assert isinstance(event, OpEvent)
        self.write(event)
        return event

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Reading


def read_history(path: str | Path) -> History:
    """Read and pair a history file. Raises ``HistoryError`` (or ``OSError``)."""
    source = str(path)
    with Path(path).open(encoding="utf-8") as file:
        try:
            lines = file.readlines()
        except UnicodeDecodeError as error:
            raise HistoryError(source, 0, f"not UTF-8 text ({error.reason})") from None
    return parse_history(lines, source)


def parse_history(lines: Iterable[str], source: str = "<history>") -> History:
    return build_history(list(parse_events(lines, source)), source)


def parse_events(lines: Iterable[str], source: str = "<history>") -> Iterator[Event]:
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise HistoryError(source, number, f"not valid JSON ({error.msg} at column "
                                               f"{error.colno})") from None
        yield _parse_event(data, source, number)


def build_history(events: Sequence[Event], source: str = "<history>") -> History:
    """Pair invocations with completions and fault starts with ends."""
    operations: list[tuple[int, Operation]] = []
    in_flight: dict[ProcessId, OpEvent] = {}
    active_faults: dict[tuple[str, str | None], FaultEvent] = {}
    windows: list[FaultWindow] = []
    finals: list[FinalEvent] = []
    seen_finals: set[tuple[NodeId, str]] = set()
    times = [event.time for event in events]
    start_time = min(times, default=0.0)
    end_time = max(times, default=0.0)
    order = 0
    for event in events:
        if isinstance(event, OpEvent):
            if event.type == "invoke":
                if event.process in in_flight:
                    raise HistoryError(source, event.line, (
                        f"process {event.process!r} invokes {event.op!r} while its "
                        f"{in_flight[event.process].op!r} from line "
                        f"{in_flight[event.process].line} is still in flight"))
                _check_invocation(event, source)
                in_flight[event.process] = event
                continue
            invocation = in_flight.pop(event.process, None)
            if invocation is None:
                raise HistoryError(source, event.line, (
                    f"{event.type!r} for process {event.process!r} without an invocation "
                    "in flight"))
            operations.append((order, _join(invocation, event, source)))
            order += 1
        elif isinstance(event, FaultEvent):
            key = (event.fault, event.target)
            label = event.fault + (f" on {event.target}" if event.target is not None else "")
            if event.phase == "start":
                if key in active_faults:
                    raise HistoryError(source, event.line, (
                        f"fault {label!r} starts again while active since line "
                        f"{active_faults[key].line}"))
                active_faults[key] = event
            else:
                begun = active_faults.pop(key, None)
                if begun is None:
                    raise HistoryError(source, event.line, f"fault {label!r} ends without a start")
                if event.time < begun.time:
                    raise HistoryError(source, event.line, (
                        f"fault {label!r} ends at {event.time} before its start at "
                        f"{begun.time} (line {begun.line})"))
                windows.append(FaultWindow(event.fault, event.target, begun.time, event.time,
                                           begun.line))
        else:
            key_final = (event.node, event.session)
            if key_final in seen_finals:
                raise HistoryError(source, event.line, (
                    f"second final snapshot of session {event.session!r} on node "
                    f"{event.node!r}"))
            seen_finals.add(key_final)
            finals.append(event)
    for invocation in in_flight.values():
        operations.append((order, _never_completed(invocation)))
        order += 1
    for begun in active_faults.values():
        windows.append(FaultWindow(begun.fault, begun.target, begun.time, None, begun.line))
    leaders: dict[str, FinalEvent] = {}
    for final in finals:
        if final.leader:
            if final.session in leaders:
                raise HistoryError(source, final.line, (
                    f"two leader snapshots of session {final.session!r} (lines "
                    f"{leaders[final.session].line} and {final.line})"))
            if final.records is None:
                raise HistoryError(source, final.line, "a leader snapshot needs its records")
            leaders[final.session] = final
    ops_sorted = sorted(operations, key=lambda item: (item[1].invoke_time, item[0]))
    return History(
        events=tuple(events),
        operations=tuple(op for _, op in ops_sorted),
        faults=tuple(sorted(windows, key=lambda window: (window.start, window.line))),
        finals=tuple(finals),
        start_time=start_time,
        end_time=end_time,
    )


def _check_invocation(event: OpEvent, source: str) -> None:
    if event.op in ("append", "read", "consume") and event.session is None:
        raise HistoryError(source, event.line, f"{event.op} invocation without a session")
    if event.op == "append" and not event.values:
        raise HistoryError(source, event.line, "append invocation without values")


def _join(invocation: OpEvent, completion: OpEvent, source: str) -> Operation:
    line = completion.line
    if completion.op != invocation.op:
        raise HistoryError(source, line, (
            f"{completion.type!r} of {completion.op!r} completes process "
            f"{completion.process!r}'s {invocation.op!r} from line {invocation.line}"))
    if completion.time < invocation.time:
        raise HistoryError(source, line, (
            f"completes at {completion.time}, before its invocation at {invocation.time} "
            f"(line {invocation.line})"))
    for name in ("session", "values", "producer", "sequence", "from_offset", "consistency",
                 "group", "token", "consumer", "settlements", "shard"):
        invoked = getattr(invocation, name)
        completed = getattr(completion, name)
        if completed is not None and invoked is not None and completed != invoked:
            raise HistoryError(source, line, (
                f"{name} {completed!r} differs from the invocation's {invoked!r} "
                f"(line {invocation.line})"))

    def pick(name: str) -> object:
        value = getattr(invocation, name)
        return value if value is not None else getattr(completion, name)

    values = pick("values") or ()
    assert isinstance(values, tuple)
    offsets: tuple[int, ...] = ()
    records: tuple[Record, ...] = ()
    if completion.type == "ok" and invocation.op == "append":
        offsets = completion.offsets or ()
        if len(offsets) != len(values):
            raise HistoryError(source, line, (
                f"ok append carries {len(offsets)} offsets for {len(values)} values"))
    counts: tuple[int, ...] = ()
    if completion.type == "ok" and invocation.op in OBSERVING_OPS:
        records = completion.records or ()
        counts = completion.counts or ()
        if counts and len(counts) != len(records):
            raise HistoryError(source, line, (
                f"ok {invocation.op} carries {len(counts)} counts for {len(records)} records"))
    session = pick("session")
    producer = pick("producer")
    sequence = pick("sequence")
    from_offset = pick("from_offset")
    consistency = pick("consistency")
    assert session is None or isinstance(session, str)
    assert producer is None or isinstance(producer, str)
    assert sequence is None or isinstance(sequence, int)
    assert from_offset is None or isinstance(from_offset, int)
    assert consistency is None or isinstance(consistency, str)
    group = pick("group")
    token = pick("token")
    consumer = pick("consumer")
    settlements = pick("settlements") or ()
    max_messages = pick("max_messages")
    max_deliveries = pick("max_deliveries")
    shard = pick("shard")
    assert shard is None or isinstance(shard, int)
    assert group is None or isinstance(group, str)
    assert token is None or isinstance(token, int)
    assert consumer is None or isinstance(consumer, str)
    assert isinstance(settlements, tuple)
    assert max_messages is None or isinstance(max_messages, int)
    assert max_deliveries is None or isinstance(max_deliveries, int)
    outcome: Outcome = (
        "ok" if completion.type == "ok" else "fail" if completion.type == "fail" else "info")
    return Operation(
        process=invocation.process, op=invocation.op, outcome=outcome,
        invoke_time=invocation.time, complete_time=completion.time, session=session,
        values=values, producer=producer, sequence=sequence, offsets=offsets,
        records=records, from_offset=from_offset or 0, end_offset=completion.end_offset,
        consistency=consistency or "linearizable", error=completion.error,
        group=group, token=token, consumer=consumer, counts=counts, settlements=settlements,
        max_messages=max_messages, max_deliveries=max_deliveries, shard=shard,
        leader_time=completion.leader_time, line=invocation.line,
    )


def _never_completed(invocation: OpEvent) -> Operation:
    return Operation(
        process=invocation.process, op=invocation.op, outcome="info",
        invoke_time=invocation.time, complete_time=None, session=invocation.session,
        values=invocation.values or (), producer=invocation.producer,
        sequence=invocation.sequence, from_offset=invocation.from_offset or 0,
        consistency=invocation.consistency or "linearizable", error="never completed",
        group=invocation.group, token=invocation.token, consumer=invocation.consumer,
        settlements=invocation.settlements or (), max_messages=invocation.max_messages,
        max_deliveries=invocation.max_deliveries, shard=invocation.shard,
        line=invocation.line,
    )


# ---------------------------------------------------------------------------------------------
# Parsing one line


class _Fields:
    """Typed accessors over one line's object, raising ``HistoryError`` naming the line."""

    def __init__(self, data: Mapping[str, object], source: str, line: int) -> None:
        self.data = data
        self.source = source
        self.line = line

    def fail(self, message: str) -> HistoryError:
        return HistoryError(self.source, self.line, message)

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def time(self) -> float:
        value = self.data.get("time")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f'"time" must be a number of seconds, got {value!r}')
        if not math.isfinite(value):
            raise self.fail(f'"time" must be finite, got {value!r}')
        return float(value)

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise self.fail(f'missing "{name}"')
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(f'"{name}" must be a non-empty string, got {value!r}')
        return value

    def ident(self, name: str) -> int | str:
        value = self.data.get(name)
        if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
            raise self.fail(f'"{name}" must be an integer or a non-empty string, got {value!r}')
        return value

    def count(self, name: str) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        return self._count(name, value)

    def _count(self, name: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(f'"{name}" must be a non-negative integer, got {value!r}')
        return value

    def strings(self, plural: str, singular: str) -> tuple[str, ...] | None:
        if self.has(plural) and self.has(singular):
            raise self.fail(f'give "{plural}" or "{singular}", not both')
        if self.has(singular):
            value = self.data[singular]
            if not isinstance(value, str):
                raise self.fail(f'"{singular}" must be a string, got {value!r}')
            return (value,)
        if not self.has(plural):
            return None
        items = self.data[plural]
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise self.fail(f'"{plural}" must be a list of strings, got {items!r}')
        return tuple(items)

    def counts(self, plural: str, singular: str) -> tuple[int, ...] | None:
        if self.has(plural) and self.has(singular):
            raise self.fail(f'give "{plural}" or "{singular}", not both')
        if self.has(singular):
            return (self._count(singular, self.data[singular]),)
        if not self.has(plural):
            return None
        items = self.data[plural]
        if not isinstance(items, list):
            raise self.fail(f'"{plural}" must be a list of offsets, got {items!r}')
        return tuple(self._count(plural, item) for item in items)

    def settlements(self) -> tuple[Settled, ...] | None:
        if not self.has("settlements"):
            return None
        items = self.data["settlements"]
        if not isinstance(items, list):
            raise self.fail(f'"settlements" must be a list, got {items!r}')
        found: list[Settled] = []
        for index, item in enumerate(items):
            if (not isinstance(item, list) or len(item) != 3
                    or any(isinstance(part, bool) or not isinstance(part, int) or part < 0
                           for part in item[:2]) or item[2] not in SETTLE_ACTIONS):
                raise self.fail(f'"settlements"[{index}] must be [offset, delivery_count, '
                                f"action] with action one of {', '.join(SETTLE_ACTIONS)}, "
                                f"got {item!r}")
            found.append((item[0], item[1], item[2]))
        return tuple(found)

    def records(self) -> tuple[Record, ...] | None:
        if not self.has("records"):
            return None
        items = self.data["records"]
        if not isinstance(items, list):
            raise self.fail(f'"records" must be a list of [offset, value], got {items!r}')
        records: list[Record] = []
        for index, item in enumerate(items):
            if (not isinstance(item, list) or len(item) != 2 or isinstance(item[0], bool)
                    or not isinstance(item[0], int) or item[0] < 0
                    or not isinstance(item[1], str)):
                raise self.fail(f'"records"[{index}] must be [offset, value] with a '
                                f"non-negative integer offset and a string value, got {item!r}")
            records.append((item[0], item[1]))
        return tuple(records)


def _parse_event(data: object, source: str, line: int) -> Event:
    if not isinstance(data, dict):
        raise HistoryError(source, line, f"an event must be a JSON object, got {data!r}"[:200])
    fields = _Fields(data, source, line)
    kind = data.get("type")
    if kind in OP_EVENT_TYPES:
        return _parse_op_event(fields, kind)
    if kind == "fault":
        phase = data.get("phase")
        if phase not in ("start", "end"):
            raise fields.fail(f'fault "phase" must be "start" or "end", got {phase!r}')
        fault = fields.text("fault", required=True)
        assert fault is not None
        return FaultEvent(fault=fault, phase="start" if phase == "start" else "end",
                          time=fields.time(), target=fields.text("target"), line=line)
    if kind == "final":
        node = fields.ident("node")
        session = fields.text("session", required=True)
        assert session is not None
        records = fields.records()
        digest = fields.text("hash")
        if records is None and digest is None:
            raise fields.fail('a final snapshot needs "records" or "hash"')
        if records is not None and digest is not None and records_hash(records) != digest:
            raise fields.fail('"hash" does not match "records"')
        leader = data.get("leader", False)
        if not isinstance(leader, bool):
            raise fields.fail(f'"leader" must be true or false, got {leader!r}')
        return FinalEvent(node=node, session=session, time=fields.time(), records=records,
                          hash=digest, leader=leader, first_offset=fields.count("first_offset"),
                          line=line)
    raise fields.fail(f'unknown event "type" {kind!r} (expected one of invoke, ok, fail, info, '
                      "fault, final)")


def _parse_op_event(fields: _Fields, kind: str) -> OpEvent:
    consistency = fields.text("consistency")
    if consistency is not None and consistency not in CONSISTENCIES:
        raise fields.fail(f'"consistency" must be one of {", ".join(CONSISTENCIES)}, '
                          f"got {consistency!r}")
    op = fields.text("op", required=True)
    assert op is not None
    error = fields.data.get("error")
    event_type: OpEventType = (
        "invoke" if kind == "invoke" else "ok" if kind == "ok" else
        "fail" if kind == "fail" else "info")
    return OpEvent(
        type=event_type,
        process=fields.ident("process"),
        op=op,
        time=fields.time(),
        session=fields.text("session"),
        values=fields.strings("values", "value"),
        producer=fields.text("producer"),
        sequence=fields.count("sequence"),
        offsets=fields.counts("offsets", "offset"),
        records=fields.records(),
        from_offset=fields.count("from_offset"),
        end_offset=fields.count("end_offset"),
        consistency=consistency,
        error=str(error) if error is not None else None,
        group=fields.text("group"),
        token=fields.count("token"),
        consumer=fields.text("consumer"),
        counts=fields.counts("counts", "count"),
        settlements=fields.settlements(),
        max_messages=fields.count("max_messages"),
        max_deliveries=fields.count("max_deliveries"),
        shard=fields.count("shard"),
        leader_time=fields.count("leader_time"),
        line=fields.line,
    )
