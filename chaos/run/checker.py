"""The chaos history checker: safety anomalies, convergence and availability of one run.

Owns: judging a :class:`~quorumlog.chaos.run.history.History` (see that module for the format)
into a :class:`CheckResult`: per-session anomaly lists, totals, availability figures and the
verdict (``pass`` / ``fail`` / ``inconclusive``), and the result's JSON and text renderings.
Must never: read or write files, talk to a cluster, read a clock or draw randomness; the same
history always gives the same result. Input comes from ``quorumlog.chaos.run.history`` only.

Definitions, all per session (an "observation" is a value at an offset as reported by an
``ok`` append's acknowledgement, an ``ok`` read or consume, or a final snapshot; the
*reference* final state is the snapshot flagged ``leader``, else the node snapshot with the
most records (ties: smallest node id as text); a node with final events but none for a session
holds no records of it):

- ``lost``: a value of an ``ok`` append absent from the reference final state (unless its
  acknowledged offset is below the reference's first retained offset: trimmed).
- ``lost_on_node``: an offset at which a node's final records differ from the reference
  (missing, extra, or another value), ignoring offsets below the reference's first retained
  offset and below the node's own ``first_offset``; a hash-only node whose hash
  differs gives one entry with ``offset`` null.
- ``duplicates``: a value at two or more distinct offsets within one observation source (one
  node's final records, one read or consume, or the set of acknowledgements of its appends).
- ``inconsistent_offsets``: an offset at which two different values were observed across the
  acknowledgements, ok reads and consumes, and the reference final state.
- ``gaps``: a hole in one node's final offsets (contiguous from ``first_offset``, default 0)
  or inside one ok read or consume's records.
- ``producer_reordering``: two acknowledged values of one producer (``producer``, else the
  process) adjacent in sequence order (``sequence + i``, else invocation order) whose
  acknowledged offsets are not increasing.
- ``stale_reads``: an ok linearizable read whose view of the session (``end_offset``, else
  last record offset + 1, else ``from_offset``) does not reach an offset acknowledged by an
  append that completed before the read was invoked, or is shorter than the view of a
  linearizable read that completed before it was invoked (real-time order; equal times are
  concurrent).
- ``aborted_reads``: a value every append attempt of which ended ``fail`` seen by an ok read,
  a consume or a final snapshot.
- ``unexpected``: a value observed in the session that no append of the session ever carried.
- ``envelope_mismatch``: a value observed with an envelope other than the one its producer
  gave it (``quorumlog.chaos.run.envelopes``: message id, correlation id, a text and a binary
  header, byte for byte), or with none. Duplicate detection by ``message_id`` is held by the
  kinds above: producers re-send acknowledged values under new sequences, so a duplicate the
  node kept is a ``duplicates`` entry and a distinct value it dropped is ``lost``.
- ``recovered_unknowns`` (not an error): a value never acknowledged, with at least one ``info``
  attempt, present in the reference final state.
- ``convergence``: every node's ``records_hash`` of the session is equal.
- Consumer groups (``lost_deliveries``, ``redelivered_after_complete``, ``delivery_order``,
  ``zombie_settles_accepted``, ``concurrent_owners``): defined in
  ``quorumlog.chaos.run.consumer_checker``; delivery figures go in the JSON's ``consumer``.

Shards: every definition above is per session, so it holds per session across shards
unchanged. When operations carry a ``shard`` (a sharded run), each session's shard is the one
its operations name, and the result adds ``per_shard``: for each shard its sessions, ok
operations, acknowledged appends and values, and the count of every anomaly kind.

Availability: success rate (ok / all operations); per fault window, the longest stretch with
no ok completion from the fault's start until the first ok completion at or after its end
(or the end of the history) and the time from its end to that completion; the baseline
throughput (ok completions per second from the first invocation to the first fault start, or
to the end of the history without faults; 0 when that stretch is empty).

Verdict: ``fail`` on any safety anomaly (every kind above except recovered unknowns);
otherwise ``inconclusive`` when the baseline throughput is below ``min_throughput``, fewer than
``min_acked`` appends were acknowledged, or acknowledged appends exist but no node wrote a final
snapshot, or some group received messages but has no ok final ``drain`` (lost deliveries
unchecked); otherwise ``pass``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from quorumlog.chaos.run.consumer_checker import CONSUMER_KINDS, ConsumerFigures, check_consumers
from quorumlog.chaos.run.envelopes import MISMATCH
from quorumlog.chaos.run.history import FinalEvent, History, NodeId, Operation, Record

Anomaly = dict[str, object]

SAFETY_KINDS: tuple[str, ...] = (
    "lost", "lost_on_node", "duplicates", "inconsistent_offsets", "gaps",
    "producer_reordering", "stale_reads", "aborted_reads", "unexpected", "envelope_mismatch",
    *CONSUMER_KINDS,
)
REPORT_KINDS: tuple[str, ...] = (*SAFETY_KINDS, "recovered_unknowns")


@dataclass(frozen=True)
class CheckConfig:
    min_throughput: float = 1.0  # ok ops/s before the first fault; below: inconclusive
    min_acked: int = 10  # acknowledged appends; below: inconclusive
    max_examples: int = 20  # per session and anomaly kind in the JSON


@dataclass
class SessionReport:
    session: str
    acked: int = 0  # ok append operations
    acked_values: int = 0  # distinct acknowledged values
    anomalies: dict[str, list[Anomaly]] = field(
        default_factory=lambda: {kind: [] for kind in REPORT_KINDS})
    converged: bool | None = None  # None: no final snapshots at all
    hashes: dict[str, str] = field(default_factory=dict)  # node -> records_hash

    def count(self, kind: str) -> int:
        return len(self.anomalies[kind])


@dataclass(frozen=True)
class FaultAvailability:
    fault: str
    target: str | None
    start: float
    end: float | None
    unavailable_s: float  # longest stretch without an ok completion
    time_to_recover_s: float | None  # end -> first ok completion; None: never (or no end)


@dataclass(frozen=True)
class Availability:
    success_rate: float
    baseline_throughput: float
    baseline_seconds: float
    faults: tuple[FaultAvailability, ...]


@dataclass
class CheckResult:
    ops: int
    ok_ops: int
    acked: int
    acked_values: int
    faults_injected: int
    sessions: dict[str, SessionReport]
    availability: Availability
    verdict: str
    reasons: list[str]
    config: CheckConfig
    consumer: ConsumerFigures = field(default_factory=ConsumerFigures)
    session_shards: dict[str, int] = field(default_factory=dict)  # sharded runs only
    shard_ok_ops: dict[int, int] = field(default_factory=dict)

    def per_shard(self) -> dict[int, dict[str, object]]:
        """Shard -> its sessions, ok operations, acknowledged appends and values, and the
        count of every anomaly kind over its sessions (empty when no operation named a
        shard)."""
        shards: dict[int, dict[str, object]] = {}
        for shard in sorted(set(self.session_shards.values()) | set(self.shard_ok_ops)):
            reports = [report for name, report in sorted(self.sessions.items())
                       if self.session_shards.get(name) == shard]
            shards[shard] = {
                "sessions": [report.session for report in reports],
                "ok_ops": self.shard_ok_ops.get(shard, 0),
                "acked": sum(report.acked for report in reports),
                "acked_values": sum(report.acked_values for report in reports),
                "anomalies": {kind: sum(report.count(kind) for report in reports)
                              for kind in REPORT_KINDS},
                "divergent_sessions": sum(report.converged is False for report in reports),
            }
        return shards

    def total(self, kind: str) -> int:
        if kind == "convergence":
            return sum(1 for report in self.sessions.values() if report.converged is False)
        return sum(report.count(kind) for report in self.sessions.values())

    @property
    def converged(self) -> bool | None:
        states = [report.converged for report in self.sessions.values()]
        if not states or all(state is None for state in states):
            return None
        return all(state is not False for state in states)

    def to_json(self) -> dict[str, object]:
        cap = self.config.max_examples
        data: dict[str, object] = {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "ops": self.ops,
            "ok_ops": self.ok_ops,
            "acked": self.acked,
            "acked_values": self.acked_values,
        }
        for kind in REPORT_KINDS:
            data[kind] = self.total(kind)
        data["divergent_sessions"] = self.total("convergence")
        data["converged"] = self.converged
        data["faults_injected"] = self.faults_injected
        data["deliveries"] = self.consumer.deliveries
        data["consumer"] = self.consumer.to_json()
        data["availability"] = {
            "success_rate": self.availability.success_rate,
            "baseline_throughput": self.availability.baseline_throughput,
            "baseline_seconds": self.availability.baseline_seconds,
            "min_throughput": self.config.min_throughput,
            "faults": [
                {"fault": fault.fault, "target": fault.target, "start": fault.start,
                 "end": fault.end, "unavailable_s": fault.unavailable_s,
                 "time_to_recover_s": fault.time_to_recover_s}
                for fault in self.availability.faults
            ],
        }
        sessions: dict[str, object] = {}
        for name, report in sorted(self.sessions.items()):
            counts = {kind: report.count(kind) for kind in REPORT_KINDS}
            sessions[name] = {
                "acked": report.acked,
                "acked_values": report.acked_values,
                "converged": report.converged,
                "hashes": dict(report.hashes),
                "counts": counts,
                "anomalies": {kind: entries[:cap]
                              for kind, entries in report.anomalies.items() if entries},
                "omitted": {kind: len(entries) - cap
                            for kind, entries in report.anomalies.items() if len(entries) > cap},
            }
        data["sessions"] = sessions
        per_shard = self.per_shard()
        if per_shard:
            data["per_shard"] = {str(shard): figures for shard, figures in per_shard.items()}
        return data

    def summary(self) -> str:
        lines = [
            f"verdict: {self.verdict}" + (f" ({'; '.join(self.reasons)})" if self.reasons else ""),
            f"ops {self.ops} (ok {self.ok_ops}), acked appends {self.acked} "
            f"({self.acked_values} values), sessions {len(self.sessions)}, "
            f"faults injected {self.faults_injected}",
            "anomalies: " + ", ".join(
                f"{kind} {self.total(kind)}" for kind in (*REPORT_KINDS, "convergence")),
            f"consumers: {self.consumer.deliveries} deliveries in {self.consumer.receives} "
            f"receives ({self.consumer.redeliveries} redeliveries), {self.consumer.completed} "
            f"completed, {self.consumer.abandoned} abandoned, {self.consumer.dead_lettered} "
            f"dead-lettered, {self.consumer.accepts} leases, "
            f"{self.consumer.zombie_settles_refused} zombie settles refused",
            f"availability: success rate {self.availability.success_rate:.1%}, baseline "
            f"{self.availability.baseline_throughput:.1f} ops/s over "
            f"{self.availability.baseline_seconds:.1f} s",
        ]
        for shard, figures in self.per_shard().items():
            anomalies = figures["anomalies"]
            assert isinstance(anomalies, dict)
            sessions = figures["sessions"]
            assert isinstance(sessions, list)
            safety = sum(anomalies[kind] for kind in SAFETY_KINDS)
            lines.append(f"  shard {shard}: {len(sessions)} sessions, {figures['ok_ops']} ok "
                         f"ops, {figures['acked']} acked appends, {safety} anomalies, "
                         f"{figures['divergent_sessions']} divergent sessions")
        for fault in self.availability.faults:
            label = fault.fault + (f" {fault.target}" if fault.target else "")
            recover = ("never" if fault.time_to_recover_s is None
                       else f"{fault.time_to_recover_s:.2f} s")
            lines.append(f"  fault {label} at {fault.start:.2f}: unavailable "
                         f"{fault.unavailable_s:.2f} s, recovered after end in {recover}")
        for name, report in sorted(self.sessions.items()):
            for kind in (*SAFETY_KINDS, "recovered_unknowns"):
                for entry in report.anomalies[kind][:3]:
                    lines.append(f"  {name}: {kind} {_brief(entry)}")
                if report.count(kind) > 3:
                    lines.append(f"  {name}: {kind} ... {report.count(kind) - 3} more")
            if report.converged is False:
                lines.append(f"  {name}: diverged {report.hashes}")
        return "\n".join(lines)


def _brief(entry: Anomaly) -> str:
    return " ".join(f"{key}={value}" for key, value in entry.items() if key != "session")


# ---------------------------------------------------------------------------------------------


def check(history: History, config: CheckConfig | None = None) -> CheckResult:
    config = config or CheckConfig()
    by_session: dict[str, list[Operation]] = defaultdict(list)
    for op in history.operations:
        if op.session is not None:
            by_session[op.session].append(op)
    finals_by_session: dict[str, list[FinalEvent]] = defaultdict(list)
    for final in history.finals:
        finals_by_session[final.session].append(final)
    nodes = sorted({final.node for final in history.finals}, key=str)
    sessions = {
        name: _check_session(name, by_session.get(name, []), finals_by_session.get(name, []),
                             nodes)
        for name in sorted(set(by_session) | set(finals_by_session))
    }
    acked_values: dict[str, dict[str, int]] = defaultdict(dict)
    known_offsets: dict[str, set[int]] = defaultdict(set)
    for op in history.operations:
        if op.op == "append" and op.outcome == "ok" and op.session is not None:
            for value, offset in zip(op.values, op.offsets, strict=True):
                acked_values[op.session].setdefault(value, offset)
                known_offsets[op.session].add(offset)
    for final in history.finals:
        known_offsets[final.session].update(offset for offset, _ in final.records or ())
    consumer_found, figures = check_consumers(history.operations, acked_values, known_offsets)
    for name, kinds in consumer_found.items():
        report = sessions.setdefault(name, SessionReport(name))
        for kind, entries in kinds.items():
            report.anomalies[kind].extend(entries)
    ok_ops = sum(1 for op in history.operations if op.outcome == "ok")
    session_shards: dict[str, int] = {}
    shard_ok_ops: dict[int, int] = defaultdict(int)
    for op in history.operations:
        if op.shard is not None:
            if op.session is not None:
                session_shards.setdefault(op.session, op.shard)
            shard_ok_ops[op.shard] += op.outcome == "ok"
    acked = sum(report.acked for report in sessions.values())
    availability = _availability(history)
    result = CheckResult(
        ops=len(history.operations), ok_ops=ok_ops, acked=acked,
        acked_values=sum(report.acked_values for report in sessions.values()),
        faults_injected=len(history.faults), sessions=sessions, availability=availability,
        verdict="pass", reasons=[], config=config, consumer=figures,
        session_shards=session_shards, shard_ok_ops=dict(shard_ok_ops),
    )
    failures = [f"{result.total(kind)} {kind}" for kind in SAFETY_KINDS if result.total(kind)]
    if result.total("convergence"):
        failures.append(f"{result.total('convergence')} divergent sessions")
    if failures:
        result.verdict = "fail"
        result.reasons = failures
        return result
    doubts: list[str] = []
    if availability.baseline_throughput < config.min_throughput:
        doubts.append(f"baseline throughput {availability.baseline_throughput:.2f} ops/s "
                      f"below {config.min_throughput:g}")
    if acked < config.min_acked:
        doubts.append(f"{acked} acknowledged appends, fewer than {config.min_acked}")
    if acked and not nodes:
        doubts.append("no final snapshots: lost values and convergence unchecked")
    if figures.undrained_groups:
        doubts.append("no final drain of group(s) " + ", ".join(figures.undrained_groups)
                      + ": lost deliveries unchecked")
    if doubts:
        result.verdict = "inconclusive"
        result.reasons = doubts
    return result


def view_end(op: Operation) -> int:
    """How far a read saw the session: its ``end_offset``, else its records' end."""
    if op.end_offset is not None:
        return op.end_offset
    if op.records:
        return max(offset for offset, _ in op.records) + 1
    return op.from_offset


def _check_session(session: str, ops: Sequence[Operation], finals: Sequence[FinalEvent],
                   nodes: Sequence[NodeId]) -> SessionReport:
    report = SessionReport(session)
    found = report.anomalies
    appends = [op for op in ops if op.op == "append"]
    observers = [op for op in ops if op.op in ("read", "consume") and op.outcome == "ok"]

    attempts: dict[str, set[str]] = defaultdict(set)  # value -> outcomes of its attempts
    acked_at: dict[str, int] = {}  # value -> first acknowledged offset
    acked_by: dict[str, Operation] = {}
    ack_offsets: dict[str, set[int]] = defaultdict(set)
    for op in appends:
        for value in op.values:
            attempts[value].add(op.outcome)
        if op.outcome == "ok":
            report.acked += 1
            for value, offset in zip(op.values, op.offsets, strict=True):
                acked_at.setdefault(value, offset)
                acked_by.setdefault(value, op)
                ack_offsets[value].add(offset)
    report.acked_values = len(acked_at)

    # Final snapshots: one per node (implicitly empty when the node listed other sessions).
    snapshots: dict[str, FinalEvent] = {}
    for node in nodes:
        snapshots[str(node)] = next(
            (final for final in finals if final.node == node),
            FinalEvent(node=node, session=session, time=0.0, records=()))
    reference = _reference(snapshots)
    ref_map = dict(reference.records or ()) if reference is not None else {}
    ref_first = _first_offset(reference) if reference is not None else 0
    ref_values = {value: offset for offset, value in sorted(ref_map.items())}

    # Sources of observations: label -> records.
    sources: list[tuple[str, Sequence[Record]]] = []
    for name, snapshot in snapshots.items():
        if snapshot.records is not None:
            sources.append((f"final {name}", snapshot.records))
    for op in observers:
        sources.append((f"{op.op} line {op.line}", op.records))

    # lost / recovered unknowns
    if reference is not None:
        for value, offset in sorted(acked_at.items(), key=lambda item: (item[1], item[0])):
            if value not in ref_values and offset >= ref_first:
                found["lost"].append({"session": session, "value": value, "offset": offset,
                                      "producer": acked_by[value].producer})
        for value, outcomes in sorted(attempts.items()):
            if "ok" not in outcomes and "info" in outcomes and value in ref_values:
                found["recovered_unknowns"].append(
                    {"session": session, "value": value, "offset": ref_values[value]})

    # lost on node / convergence
    for name, snapshot in snapshots.items():
        report.hashes[name] = snapshot.digest
    if snapshots:
        report.converged = len(set(report.hashes.values())) <= 1
    if reference is not None:
        for name, snapshot in snapshots.items():
            if snapshot is reference:
                continue
            if snapshot.records is None:
                if snapshot.digest != reference.digest:
                    found["lost_on_node"].append({
                        "session": session, "node": name, "offset": None,
                        "expected": reference.digest, "found": snapshot.digest})
                continue
            node_map = dict(snapshot.records)
            floor = max(ref_first, _first_offset(snapshot))
            for offset in sorted(set(ref_map) | set(node_map)):
                if offset >= floor and ref_map.get(offset) != node_map.get(offset):
                    found["lost_on_node"].append({
                        "session": session, "node": name, "offset": offset,
                        "expected": ref_map.get(offset), "found": node_map.get(offset)})

    # duplicates: a value at two offsets within one source (acks count as one source)
    duplicate_offsets: dict[str, set[int]] = {}
    duplicate_sources: dict[str, list[str]] = defaultdict(list)
    for value, offsets in ack_offsets.items():
        if len(offsets) > 1:
            duplicate_offsets[value] = set(offsets)
            duplicate_sources[value].append("acks")
    for label, records in sources:
        seen: dict[str, set[int]] = defaultdict(set)
        for offset, value in records:
            seen[value].add(offset)
        for value, offsets in seen.items():
            if len(offsets) > 1:
                duplicate_offsets.setdefault(value, set()).update(offsets)
                duplicate_sources[value].append(label)
    for value in sorted(duplicate_offsets):
        found["duplicates"].append({
            "session": session, "value": value, "offsets": sorted(duplicate_offsets[value]),
            "seen_in": duplicate_sources[value][:5]})

    # inconsistent offsets: acknowledgements, ok reads/consumes, the reference final state
    at_offset: dict[int, dict[str, str]] = defaultdict(dict)  # offset -> value -> first source
    for value, offsets in ack_offsets.items():
        for offset in offsets:
            at_offset[offset].setdefault(value, f"ack line {acked_by[value].line}")
    consistency_sources = [(label, records) for label, records in sources
                           if not label.startswith("final ")]
    if reference is not None:
        consistency_sources.append((f"final {reference.node}", reference.records or ()))
    for label, records in consistency_sources:
        for offset, value in records:
            at_offset[offset].setdefault(value, label)
    for offset in sorted(at_offset):
        if len(at_offset[offset]) > 1:
            values = sorted(at_offset[offset])
            found["inconsistent_offsets"].append({
                "session": session, "offset": offset, "values": values,
                "seen_in": [at_offset[offset][value] for value in values]})

    # gaps
    for name, snapshot in snapshots.items():
        if snapshot.records:
            _find_gaps(found["gaps"], session, f"final {name}",
                       [offset for offset, _ in snapshot.records], _first_offset(snapshot))
    for op in observers:
        if op.records:
            read_offsets = [offset for offset, _ in op.records]
            _find_gaps(found["gaps"], session, f"{op.op} line {op.line}", read_offsets,
                       min(read_offsets))

    # producer reordering
    by_producer: dict[str, list[tuple[tuple[int, int], str, int]]] = defaultdict(list)
    for index, op in enumerate(appends):
        if op.outcome != "ok":
            continue
        producer = op.producer if op.producer is not None else f"process {op.process}"
        for position, (value, offset) in enumerate(zip(op.values, op.offsets, strict=True)):
            order = ((op.sequence + position, 0) if op.sequence is not None
                     else (index, position))
            by_producer[producer].append((order, value, offset))
    for producer, writes in sorted(by_producer.items()):
        unique: dict[str, tuple[tuple[int, int], str, int]] = {}
        for order, value, offset in sorted(writes):
            unique.setdefault(value, (order, value, offset))
        ordered = sorted(unique.values())
        for earlier, later in pairwise(ordered):
            if later[2] <= earlier[2]:
                found["producer_reordering"].append({
                    "session": session, "producer": producer,
                    "earlier": {"value": earlier[1], "order": earlier[0][0],
                                "offset": earlier[2]},
                    "later": {"value": later[1], "order": later[0][0], "offset": later[2]}})

    # stale linearizable reads (real-time order)
    found["stale_reads"].extend(_stale_reads(session, appends, observers))

    # aborted reads and unexpected values
    aborted_seen: set[str] = set()
    unexpected_seen: set[str] = set()
    mismatched: set[str] = set()
    for label, records in sources:
        for offset, value in records:
            if MISMATCH in value:
                if value not in mismatched:
                    mismatched.add(value)
                    written, _, detail = value.partition(MISMATCH)
                    found["envelope_mismatch"].append({
                        "session": session, "value": written, "offset": offset,
                        "seen_in": label, "found": detail})
            elif value not in attempts:
                if value not in unexpected_seen:
                    unexpected_seen.add(value)
                    found["unexpected"].append({"session": session, "value": value,
                                                "offset": offset, "seen_in": label})
            elif attempts[value] == {"fail"} and value not in aborted_seen:
                aborted_seen.add(value)
                found["aborted_reads"].append({"session": session, "value": value,
                                               "offset": offset, "seen_in": label})
    return report


def _reference(snapshots: dict[str, FinalEvent]) -> FinalEvent | None:
    for snapshot in snapshots.values():
        if snapshot.leader:
            return snapshot
    with_records = [snapshot for snapshot in snapshots.values() if snapshot.records is not None]
    if not with_records:
        return None
    return max(with_records, key=lambda snapshot: (len(snapshot.records or ()),
                                                   _reverse_text(str(snapshot.node))))


def _reverse_text(text: str) -> tuple[int, ...]:
    # max() with this key prefers the smallest node id among equally long snapshots
    return (*(-ord(char) for char in text), 1)


def _first_offset(snapshot: FinalEvent) -> int:
    # Trimming must be declared: without first_offset, a log starts at 0.
    return snapshot.first_offset or 0


def _find_gaps(out: list[Anomaly], session: str, label: str, offsets: Iterable[int],
               first: int) -> None:
    expected = first
    for offset in sorted(set(offsets)):
        if offset > expected:
            out.append({"session": session, "seen_in": label,
                        "missing_from": expected, "missing_to": offset - 1})
        expected = max(expected, offset + 1)


def _stale_reads(session: str, appends: Sequence[Operation],
                 observers: Sequence[Operation]) -> list[Anomaly]:
    reads = [op for op in observers
             if op.op == "read" and op.consistency == "linearizable"
             and op.complete_time is not None]
    if not reads:
        return []
    # Acknowledged appends by completion time with a running "furthest offset" maximum.
    acks = sorted((op for op in appends if op.outcome == "ok" and op.complete_time is not None),
                  key=lambda op: op.complete_time or 0.0)
    ack_times = [op.complete_time or 0.0 for op in acks]
    ack_best: list[tuple[int, str]] = []  # running max of (offset, value)
    for op in acks:
        top = max(zip(op.offsets, op.values, strict=True))
        ack_best.append(max(ack_best[-1], top) if ack_best else top)
    # Linearizable reads by completion time with a running max of their view.
    done = sorted(reads, key=lambda op: op.complete_time or 0.0)
    done_times = [op.complete_time or 0.0 for op in done]
    done_best: list[tuple[int, int]] = []  # running max of (view end, line)
    for op in done:
        top_read = (view_end(op), op.line)
        done_best.append(max(done_best[-1], top_read) if done_best else top_read)
    found: list[Anomaly] = []
    for read in sorted(reads, key=lambda op: (op.invoke_time, op.line)):
        end = view_end(read)
        index = bisect_left(ack_times, read.invoke_time)  # completed strictly before
        if index:
            offset, value = ack_best[index - 1]
            if end <= offset:
                found.append({"session": session, "read_line": read.line,
                              "invoked": read.invoke_time, "view_end": end,
                              "misses_value": value, "acked_offset": offset})
                continue
        index = bisect_left(done_times, read.invoke_time)
        if index:
            earlier_end, earlier_line = done_best[index - 1]
            if end < earlier_end:
                found.append({"session": session, "read_line": read.line,
                              "invoked": read.invoke_time, "view_end": end,
                              "earlier_read_line": earlier_line,
                              "earlier_view_end": earlier_end})
    return found


def _availability(history: History) -> Availability:
    ops = history.operations
    ok_times = sorted(op.complete_time for op in ops
                      if op.outcome == "ok" and op.complete_time is not None)
    success_rate = (sum(1 for op in ops if op.outcome == "ok") / len(ops)) if ops else 0.0
    end_of_history = history.end_time
    windows: list[FaultAvailability] = []
    for fault in history.faults:
        end = fault.end if fault.end is not None else end_of_history
        recovery_index = bisect_left(ok_times, end)
        recovered_at = (ok_times[recovery_index] if recovery_index < len(ok_times)
                        and fault.end is not None else None)
        horizon = recovered_at if recovered_at is not None else end_of_history
        inside = ok_times[bisect_right(ok_times, fault.start):bisect_right(ok_times, horizon)]
        points = [fault.start, *inside]
        if recovered_at is None:
            points.append(max(horizon, fault.start))
        longest = max((later - earlier for earlier, later in pairwise(points)), default=0.0)
        windows.append(FaultAvailability(
            fault=fault.fault, target=fault.target, start=fault.start, end=fault.end,
            unavailable_s=longest,
            time_to_recover_s=(recovered_at - end) if recovered_at is not None else None))
    first_invoke = min((op.invoke_time for op in ops), default=history.start_time)
    if history.faults:
        cutoff = history.faults[0].start
    else:
        cutoff = max((op.complete_time for op in ops if op.complete_time is not None),
                     default=first_invoke)
    baseline_seconds = max(0.0, cutoff - first_invoke)
    baseline_ok = bisect_right(ok_times, cutoff)
    throughput = baseline_ok / baseline_seconds if baseline_seconds > 0 else 0.0
    return Availability(success_rate=success_rate, baseline_throughput=throughput,
                        baseline_seconds=baseline_seconds, faults=tuple(windows))
