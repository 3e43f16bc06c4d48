"""The chaos history checker on hand-made and generated histories, and ``quorumlog chaos check``.

One test per anomaly on a small hand-made history (asserting the exact session, value and
offset found), the inconclusive verdicts, the availability arithmetic, malformed input, the
CLI's exit codes and JSON, and a property: a generated linearizable history always passes and
one injected anomaly always makes it fail with that anomaly reported.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from quorumlog.chaos.run.checker import CheckConfig, CheckResult, check
from quorumlog.chaos.run.history import (
    HistoryError,
    HistoryWriter,
    parse_history,
    read_history,
    records_hash,
)

LENIENT = CheckConfig(min_throughput=0.0, min_acked=0)
Event = dict[str, object]


class Builder:
    """Hand-made histories: a sequential cluster with one log per session."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.logs: dict[str, list[str]] = {}
        self.time = 0.0

    def tick(self, step: float = 0.1) -> float:
        self.time = round(self.time + step, 6)
        return self.time

    def op(self, process: object, op: str, outcome: str | None, invoke: Event,
           done: Event | None = None, *, duration: float = 0.05) -> tuple[float, float]:
        start = self.tick()
        self.events.append({"type": "invoke", "process": process, "op": op, **invoke,
                            "time": start})
        end = round(start + duration, 6)
        if outcome is not None:
            self.events.append({"type": outcome, "process": process, "op": op,
                                **(done or {}), "time": end})
        self.time = end
        return start, end

    def append(self, process: object, session: str, value: str, *, outcome: str = "ok",
               producer: str | None = None, sequence: int | None = None,
               apply: bool | None = None, offset: int | None = None) -> int | None:
        log = self.logs.setdefault(session, [])
        applied = (outcome == "ok") if apply is None else apply
        position: int | None = None
        if value in log:
            position = log.index(value)
        elif applied:
            log.append(value)
            position = len(log) - 1
        invoke: Event = {"session": session, "values": [value]}
        if producer is not None:
            invoke["producer"] = producer
        if sequence is not None:
            invoke["sequence"] = sequence
        done: Event = {}
        if outcome == "ok":
            done["offsets"] = [position if offset is None else offset]
        self.op(process, "append", outcome, invoke, done)
        return position

    def read(self, process: object, session: str, *, records: list[list[object]] | None = None,
             end_offset: int | None = None, consistency: str = "linearizable",
             op: str = "read") -> None:
        log = self.logs.get(session, [])
        if records is None:
            records = [[offset, value] for offset, value in enumerate(log)]
        done: Event = {"records": records,
                       "end_offset": len(log) if end_offset is None else end_offset}
        self.op(process, op, "ok", {"session": session, "from_offset": 0,
                                    "consistency": consistency}, done)

    def fault(self, name: str, phase: str, time: float | None = None) -> None:
        self.events.append({"type": "fault", "fault": name, "phase": phase,
                            "time": self.tick() if time is None else time})

    def finals(self, nodes: tuple[str, ...] = ("n1", "n2", "n3"),
               override: dict[tuple[str, str], list[list[object]]] | None = None) -> None:
        override = override or {}
        time = self.tick()
        for index, node in enumerate(nodes):
            for session, log in sorted(self.logs.items()):
                records = override.get((node, session),
                                       [[offset, value] for offset, value in enumerate(log)])
                self.events.append({"type": "final", "node": node, "session": session,
                                    "leader": index == 0, "records": records, "time": time})

    def text(self) -> str:
        return "".join(json.dumps(event) + "\n" for event in self.events)

    def check(self, config: CheckConfig = LENIENT) -> CheckResult:
        return check(parse_history(self.text().splitlines()), config)


def clean_builder() -> Builder:
    """12 acknowledged appends by two producers over two sessions, reads, one fault."""
    builder = Builder()
    for sequence in range(3):
        builder.append(1, "s1", f"p1-{sequence}", producer="p1", sequence=sequence)
        builder.append(2, "s1", f"p2-{sequence}", producer="p2", sequence=sequence)
        builder.append(1, "s2", f"p1-s2-{sequence}", producer="p1", sequence=sequence)
        builder.read(3, "s1")
    builder.fault("partition", "start")
    builder.append(2, "s2", "p2-s2-0", producer="p2", sequence=0)
    builder.append(2, "s2", "p2-s2-1", producer="p2", sequence=1)
    builder.fault("partition", "end")
    builder.append(1, "s1", "p1-3", producer="p1", sequence=3)
    builder.read(3, "s1")
    builder.read(3, "s2")
    return builder


def only(result: CheckResult, kind: str) -> list[dict[str, object]]:
    """The anomalies of one kind, after asserting that no other safety kind was found."""
    others = {name: result.total(name) for name in
              ("lost", "lost_on_node", "duplicates", "inconsistent_offsets", "gaps",
               "producer_reordering", "stale_reads", "aborted_reads", "unexpected")
              if name != kind and result.total(name)}
    assert others == {}, result.summary()
    assert result.verdict == "fail"
    return [entry for report in result.sessions.values() for entry in report.anomalies[kind]]


# ---------------------------------------------------------------------------------------------
# Clean and anomalous hand-made histories


def test_clean_history_passes_with_default_thresholds() -> None:
    builder = clean_builder()
    builder.finals()
    result = builder.check(CheckConfig())
    assert result.verdict == "pass", result.summary()
    assert result.reasons == []
    assert result.acked == 12
    assert result.converged is True
    data = result.to_json()
    for key in ("ops", "acked", "lost", "duplicates", "inconsistent_offsets", "gaps",
                "stale_reads", "unexpected", "faults_injected", "verdict"):
        assert key in data
    assert data["faults_injected"] == 1
    assert data["lost"] == 0
    assert data["ops"] == 12 + 5


def test_lost_acknowledged_value() -> None:
    builder = clean_builder()
    log = builder.logs["s1"]
    survivors = [[offset, value] for offset, value in enumerate(log) if value != "p1-3"]
    builder.finals(override={(node, "s1"): survivors for node in ("n1", "n2", "n3")})
    [entry] = only(builder.check(), "lost")
    assert entry == {"session": "s1", "value": "p1-3", "offset": 6, "producer": "p1"}


def test_lost_on_one_node_and_divergence() -> None:
    builder = clean_builder()
    log = builder.logs["s2"]
    builder.finals(override={("n3", "s2"): [[offset, value] for offset, value
                                           in enumerate(log[:-1])]})
    result = builder.check()
    [entry] = only(result, "lost_on_node")
    assert entry == {"session": "s2", "node": "n3", "offset": 4, "expected": "p2-s2-1",
                     "found": None}
    assert result.sessions["s2"].converged is False
    assert result.sessions["s1"].converged is True
    assert result.total("convergence") == 1
    assert result.to_json()["divergent_sessions"] == 1


def test_divergent_hash_only_node() -> None:
    builder = clean_builder()
    builder.finals(nodes=("n1", "n2"))
    builder.events.append({"type": "final", "node": "n3", "session": "s1", "time": 99.0,
                           "hash": records_hash([(0, "p1-0")])})
    builder.events.append({"type": "final", "node": "n3", "session": "s2", "time": 99.0,
                           "hash": records_hash((offset, value) for offset, value
                                                in enumerate(builder.logs["s2"]))})
    result = builder.check()
    [entry] = only(result, "lost_on_node")
    assert entry["node"] == "n3"
    assert entry["session"] == "s1"
    assert entry["offset"] is None
    assert result.sessions["s1"].converged is False
    assert result.sessions["s2"].converged is True


def test_duplicate_from_a_retry_written_twice() -> None:
    builder = clean_builder()
    builder.append(4, "s1", "p4-0", producer="p4", sequence=0, outcome="info", apply=True)
    # The retry is (wrongly) not deduplicated: written again at a new offset.
    builder.logs["s1"].append("p4-0")
    builder.append(4, "s1", "p4-0", producer="p4", sequence=0, offset=8)
    builder.finals()
    [entry] = only(builder.check(), "duplicates")
    assert entry["session"] == "s1"
    assert entry["value"] == "p4-0"
    assert entry["offsets"] == [7, 8]
    assert entry["seen_in"] == ["final n1", "final n2", "final n3"]


def test_duplicate_from_two_acknowledgements_at_different_offsets() -> None:
    builder = clean_builder()
    builder.append(4, "s1", "p4-0", producer="p4", sequence=0)
    builder.logs["s1"].append("p4-0")
    builder.append(4, "s1", "p4-0", producer="p4", sequence=0, offset=8)
    builder.finals()
    [entry] = only(builder.check(), "duplicates")
    assert (entry["session"], entry["value"], entry["offsets"]) == ("s1", "p4-0", [7, 8])
    assert entry["seen_in"] == ["acks", "final n1", "final n2", "final n3"]


def test_inconsistent_offsets_between_ack_and_read() -> None:
    builder = clean_builder()
    records = [[offset, value] for offset, value in enumerate(builder.logs["s2"])]
    records[1][1], records[2][1] = records[2][1], records[1][1]
    builder.read(5, "s2", records=records)
    builder.finals()
    result = builder.check()
    entries = only(result, "inconsistent_offsets")
    assert [(entry["session"], entry["offset"], entry["values"]) for entry in entries] == [
        ("s2", 1, ["p1-s2-1", "p1-s2-2"]), ("s2", 2, ["p1-s2-1", "p1-s2-2"])]


def test_gap_in_final_offsets() -> None:
    builder = clean_builder()
    builder.logs["s3"] = []
    builder.append(6, "s3", "x0")
    builder.append(6, "s3", "x1")
    builder.finals(override={(node, "s3"): [[0, "x0"], [2, "x1"]] for node in ("n1", "n2", "n3")})
    entries = only(builder.check(), "gaps")
    assert {(entry["session"], entry["missing_from"], entry["missing_to"])
            for entry in entries} == {("s3", 1, 1)}
    assert {entry["seen_in"] for entry in entries} == {"final n1", "final n2", "final n3"}


def test_gap_inside_a_read() -> None:
    builder = clean_builder()
    records = [[offset, value] for offset, value in enumerate(builder.logs["s1"])]
    del records[3]
    builder.read(5, "s1", records=records)
    builder.finals()
    [entry] = only(builder.check(), "gaps")
    assert (entry["session"], entry["missing_from"], entry["missing_to"]) == ("s1", 3, 3)
    assert str(entry["seen_in"]).startswith("read line ")


def test_producer_reordering() -> None:
    builder = Builder()
    builder.append(1, "s1", "a", producer="p1", sequence=0, offset=1)
    builder.append(1, "s1", "b", producer="p1", sequence=1, offset=0)
    builder.logs["s1"] = ["b", "a"]
    builder.finals()
    [entry] = only(builder.check(), "producer_reordering")
    assert entry == {"session": "s1", "producer": "p1",
                     "earlier": {"value": "a", "order": 0, "offset": 1},
                     "later": {"value": "b", "order": 1, "offset": 0}}


def test_stale_read_misses_an_acknowledged_append() -> None:
    builder = clean_builder()
    builder.append(1, "s1", "p1-4", producer="p1", sequence=4)
    records = [[offset, value] for offset, value in enumerate(builder.logs["s1"][:-1])]
    builder.read(3, "s1", records=records, end_offset=len(records))
    builder.finals()
    [entry] = only(builder.check(), "stale_reads")
    assert entry["session"] == "s1"
    assert entry["misses_value"] == "p1-4"
    assert entry["acked_offset"] == 7
    assert entry["view_end"] == 7


def test_stale_read_shorter_than_an_earlier_read() -> None:
    builder = clean_builder()
    # An unknown append that a read saw: every later linearizable read must see it too.
    builder.append(4, "s1", "p4-0", producer="p4", sequence=0, outcome="info", apply=True)
    builder.read(3, "s1")
    records = [[offset, value] for offset, value in enumerate(builder.logs["s1"][:-1])]
    builder.read(5, "s1", records=records, end_offset=len(records))
    builder.finals()
    [entry] = only(builder.check(), "stale_reads")
    assert (entry["session"], entry["view_end"], entry["earlier_view_end"]) == ("s1", 7, 8)


def test_concurrent_and_follower_reads_are_not_stale() -> None:
    builder = clean_builder()
    log = builder.logs["s1"]
    old = [[offset, value] for offset, value in enumerate(log)]
    # A read invoked before the append completed may miss it (concurrent in real time).
    start = builder.tick()
    builder.events.append({"type": "invoke", "process": 5, "op": "read", "session": "s1",
                           "time": start})
    builder.append(1, "s1", "p1-4", producer="p1", sequence=4)
    builder.events.append({"type": "ok", "process": 5, "op": "read", "records": old,
                           "end_offset": len(old), "time": builder.tick()})
    # A follower read may be stale by contract.
    builder.read(6, "s1", records=old, end_offset=len(old), consistency="follower")
    builder.finals()
    result = builder.check()
    assert result.verdict == "pass", result.summary()


def test_aborted_read() -> None:
    builder = clean_builder()
    builder.append(4, "s1", "p4-0", producer="p4", sequence=0, outcome="fail")
    records = [[offset, value] for offset, value in enumerate(builder.logs["s1"])]
    records.append([len(records), "p4-0"])
    builder.read(3, "s1", records=records, end_offset=len(records))
    builder.finals()
    [entry] = only(builder.check(), "aborted_reads")
    assert entry["session"] == "s1"
    assert entry["value"] == "p4-0"
    assert entry["offset"] == 7


def test_unknown_append_found_later_is_recovered_not_an_error() -> None:
    builder = clean_builder()
    builder.append(4, "s1", "p4-0", producer="p4", sequence=0, outcome="info", apply=True)
    builder.append(4, "s1", "p4-1", producer="p4", sequence=1, outcome="info", apply=False)
    builder.append(4, "s1", "p4-2", producer="p4", sequence=2, outcome="fail")
    builder.read(3, "s1")
    builder.finals()
    result = builder.check()
    assert result.verdict == "pass", result.summary()
    assert result.sessions["s1"].anomalies["recovered_unknowns"] == [
        {"session": "s1", "value": "p4-0", "offset": 7}]
    assert result.to_json()["recovered_unknowns"] == 1


def test_unexpected_value() -> None:
    builder = clean_builder()
    builder.logs["s2"].append("ghost")
    builder.read(3, "s2")
    builder.finals()
    entries = only(builder.check(), "unexpected")
    assert entries == [{"session": "s2", "value": "ghost", "offset": 5,
                        "seen_in": "final n1"}]


def test_value_written_to_another_session_is_unexpected() -> None:
    builder = clean_builder()
    builder.logs["s2"].append("p1-0")  # s1's value leaking into s2
    builder.finals()
    [entry] = only(builder.check(), "unexpected")
    assert (entry["session"], entry["value"], entry["offset"]) == ("s2", "p1-0", 5)


def test_detail_lists_are_capped_with_counts() -> None:
    builder = clean_builder()
    builder.logs["s2"].extend(f"ghost-{index}" for index in range(30))
    builder.finals()
    result = check(parse_history(builder.text().splitlines()),
                   CheckConfig(min_throughput=0, min_acked=0, max_examples=5))
    data = result.to_json()
    assert data["unexpected"] == 30
    session = json.loads(json.dumps(data))["sessions"]["s2"]
    assert len(session["anomalies"]["unexpected"]) == 5
    assert session["omitted"]["unexpected"] == 25
    assert session["counts"]["unexpected"] == 30


# ---------------------------------------------------------------------------------------------
# Inconclusive verdicts and availability


def test_inconclusive_when_baseline_throughput_is_low() -> None:
    builder = clean_builder()
    builder.finals()
    result = builder.check(CheckConfig(min_throughput=1000.0, min_acked=0))
    assert result.verdict == "inconclusive"
    assert "baseline throughput" in result.reasons[0]


def test_inconclusive_when_too_few_acked() -> None:
    builder = clean_builder()
    builder.finals()
    result = builder.check(CheckConfig(min_throughput=0.0, min_acked=13))
    assert result.verdict == "inconclusive"
    assert result.reasons == ["12 acknowledged appends, fewer than 13"]


def test_inconclusive_without_final_snapshots() -> None:
    result = clean_builder().check()
    assert result.verdict == "inconclusive"
    assert "no final snapshots" in result.reasons[0]


def test_safety_failure_wins_over_inconclusive() -> None:
    builder = clean_builder()
    builder.logs["s2"].append("ghost")
    builder.finals()
    assert builder.check(CheckConfig(min_throughput=1e9, min_acked=10**6)).verdict == "fail"


def test_availability_math() -> None:
    lines = [
        # ok at 1, 2, 3 (baseline: 3 ok in 3 s from the first invoke at 0), fault 3.5-6
        {"type": "invoke", "process": 1, "op": "append", "session": "s", "value": "a",
         "time": 0.0},
        {"type": "ok", "process": 1, "op": "append", "offset": 0, "time": 1.0},
        {"type": "invoke", "process": 1, "op": "append", "session": "s", "value": "b",
         "time": 1.5},
        {"type": "ok", "process": 1, "op": "append", "offset": 1, "time": 2.0},
        {"type": "invoke", "process": 1, "op": "append", "session": "s", "value": "c",
         "time": 2.5},
        {"type": "ok", "process": 1, "op": "append", "offset": 2, "time": 3.0},
        {"type": "fault", "fault": "kill", "target": "n1", "phase": "start", "time": 3.0},
        {"type": "invoke", "process": 1, "op": "append", "session": "s", "value": "d",
         "time": 3.5},
        {"type": "info", "process": 1, "op": "append", "time": 4.5},
        {"type": "invoke", "process": 1, "op": "append", "session": "s", "value": "e",
         "time": 4.5},
        {"type": "ok", "process": 1, "op": "append", "offset": 3, "time": 5.0},
        {"type": "fault", "fault": "kill", "target": "n1", "phase": "end", "time": 6.0},
        {"type": "invoke", "process": 1, "op": "append", "session": "s", "value": "f",
         "time": 6.0},
        {"type": "fail", "process": 1, "op": "append", "time": 7.0},
        {"type": "invoke", "process": 1, "op": "append", "session": "s", "value": "g",
         "time": 7.0},
        {"type": "ok", "process": 1, "op": "append", "offset": 4, "time": 8.5},
        # a second fault that never ends and is never recovered from
        {"type": "fault", "fault": "partition", "phase": "start", "time": 9.0},
        {"type": "invoke", "process": 1, "op": "append", "session": "s", "value": "h",
         "time": 9.0},
        {"type": "final", "node": 1, "session": "s", "leader": True, "time": 12.0,
         "records": [[0, "a"], [1, "b"], [2, "c"], [3, "e"], [4, "g"]]},
    ]
    history = parse_history([json.dumps(line) for line in lines])
    result = check(history, LENIENT)
    availability = result.availability
    assert availability.success_rate == pytest.approx(5 / 8)
    assert availability.baseline_seconds == pytest.approx(3.0)
    assert availability.baseline_throughput == pytest.approx(1.0)
    kill, partition = availability.faults
    assert (kill.fault, kill.target, kill.start, kill.end) == ("kill", "n1", 3.0, 6.0)
    assert kill.unavailable_s == pytest.approx(3.5)  # ok at 5.0, next ok at 8.5
    assert kill.time_to_recover_s == pytest.approx(2.5)  # end 6.0 -> ok at 8.5
    assert partition.end is None
    assert partition.time_to_recover_s is None
    assert partition.unavailable_s == pytest.approx(3.0)  # 9.0 until the history ends at 12
    assert result.faults_injected == 2
    assert result.verdict == "pass", result.summary()  # "h" unknown, absent: fine
    assert check(history, CheckConfig(min_throughput=1.5, min_acked=0)).verdict == (
        "inconclusive")


def test_no_faults_baseline_spans_the_whole_history() -> None:
    builder = Builder()
    for index in range(4):
        builder.append(1, "s", f"v{index}")
    builder.finals(nodes=("n1",))
    availability = builder.check().availability
    assert availability.faults == ()
    assert availability.baseline_seconds == pytest.approx(0.6 - 0.1)
    assert availability.baseline_throughput == pytest.approx(4 / 0.5)


# ---------------------------------------------------------------------------------------------
# Format: writer, reader, malformed input


def test_writer_round_trip_and_unfinished_invocation(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        writer.invoke(1, "append", 0.5, session="s", values=["a"], producer="p", sequence=0)
        writer.complete("ok", 1, "append", 0.6, offsets=[0])
        writer.fault("pause", "start", 0.7, target="n2")
        writer.invoke(2, "read", 0.8, session="s", consistency="linearizable")
        writer.complete("ok", 2, "read", 0.9, records=[[0, "a"]], end_offset=1)
        writer.invoke(1, "append", 1.0, session="s", values=["b"], producer="p", sequence=1)
        writer.fault("pause", "end", 1.1, target="n2")
        writer.final("n1", "s", 2.0, records=[(0, "a")], leader=True)
        writer.final("n2", "s", 2.0, hash=records_hash([(0, "a")]))
    history = read_history(path)
    assert len(history.events) == 9
    first, read, unfinished = history.operations
    assert (first.outcome, first.values, first.offsets, first.producer) == (
        "ok", ("a",), (0,), "p")
    assert (read.records, read.end_offset) == (((0, "a"),), 1)
    assert (unfinished.outcome, unfinished.complete_time, unfinished.values) == (
        "info", None, ("b",))
    [window] = history.faults
    assert (window.fault, window.target, window.start, window.end) == ("pause", "n2", 0.7, 1.1)
    result = check(history, LENIENT)
    assert result.verdict == "pass", result.summary()
    assert result.converged is True


BAD_LINES = [
    ("not json {", "not valid JSON"),
    ('["a list"]', "must be a JSON object"),
    ('{"type": "invoke", "process": 1, "op": "append", "session": "s", "values": ["a"]}',
     '"time" must be a number'),
    ('{"type": "oops", "time": 1}', 'unknown event "type"'),
    ('{"type": "ok", "process": 9, "op": "append", "offsets": [0], "time": 1}',
     "without an invocation in flight"),
    ('{"type": "invoke", "process": 1, "op": "read", "session": "s", "time": 2}',
     "still in flight"),
    ('{"type": "ok", "process": 1, "op": "read", "time": 2}', "completes process 1's 'append'"),
    ('{"type": "ok", "process": 1, "op": "append", "offsets": [0, 1], "time": 2}',
     "2 offsets for 1 values"),
    ('{"type": "ok", "process": 1, "op": "append", "offsets": [-1], "time": 2}',
     "non-negative integer"),
    ('{"type": "ok", "process": 1, "op": "append", "offsets": [0], "time": 0.5}',
     "before its invocation"),
    ('{"type": "fault", "fault": "kill", "phase": "end", "time": 2}', "ends without a start"),
    ('{"type": "fault", "fault": "kill", "phase": "middle", "time": 2}', '"phase" must be'),
    ('{"type": "final", "node": "n1", "session": "s", "time": 2}', 'needs "records" or "hash"'),
    ('{"type": "final", "node": "n1", "session": "s", "records": [[0]], "time": 2}',
     '"records"[0] must be [offset, value]'),
    ('{"type": "final", "node": "n1", "session": "s", "records": [], "hash": "x", "time": 2}',
     "does not match"),
    ('{"type": "invoke", "process": 2, "op": "read", "session": "s", "consistency": "maybe", '
     '"time": 2}', '"consistency" must be one of'),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_malformed_line_names_its_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "history.jsonl"
    good = ('{"type": "invoke", "process": 1, "op": "append", "session": "s", '
            '"values": ["a"], "time": 1}')
    path.write_text(good + "\n\n" + line + "\n", encoding="utf-8")
    with pytest.raises(HistoryError) as caught:
        read_history(path)
    assert f"{path}:3: " in str(caught.value)
    assert message in str(caught.value)
    assert caught.value.line == 3


# ---------------------------------------------------------------------------------------------
# The command line


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quorumlog.client.cli", "chaos", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_cli_check_pass_fail_inconclusive_and_json(tmp_path: Path) -> None:
    clean = clean_builder()
    clean.finals()
    passing = tmp_path / "pass.jsonl"
    passing.write_text(clean.text(), encoding="utf-8")
    done = run_cli("check", str(passing), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    for key in ("ops", "acked", "lost", "duplicates", "inconsistent_offsets", "gaps",
                "stale_reads", "unexpected", "faults_injected", "verdict"):
        assert key in data
    assert data["verdict"] == "pass"
    assert data["acked"] == 12

    done = run_cli("check", str(passing), "--min-throughput", "1e9")
    assert done.returncode == 1
    assert "verdict: inconclusive" in done.stdout

    broken = clean_builder()
    broken.logs["s1"].pop()
    broken.finals()
    failing = tmp_path / "fail.jsonl"
    failing.write_text(broken.text(), encoding="utf-8")
    done = run_cli("check", str(failing))
    assert done.returncode == 1
    assert "verdict: fail" in done.stdout
    assert "s1: lost value=p1-3" in done.stdout


def test_cli_unreadable_input_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "fault", "fault": "kill", "phase": "start", "time": 1}\nnope\n',
                   encoding="utf-8")
    done = run_cli("check", str(bad))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert f"{bad}:2: not valid JSON" in done.stderr

    done = run_cli("check", str(tmp_path / "missing.jsonl"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "cannot read" in done.stderr

    done = run_cli("check", str(bad), "--min-throughput", "fast")
    assert done.returncode == 2
    assert "--min-throughput must be a number" in done.stderr


def test_cli_requires_an_action() -> None:
    done = run_cli()
    assert done.returncode == 2
    assert "ACTION" in done.stderr


# ---------------------------------------------------------------------------------------------
# Property: generated linearizable histories pass; one injected anomaly fails


class Generated:
    """A random concurrent history of a correct cluster, as mutable JSON events."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.rng = rng
        sessions = ["s0", "s1"][: rng.randint(1, 2)]
        skeleton: list[tuple[float, float, float, int, bool]] = []
        for process in range(rng.randint(2, 4)):
            clock = rng.uniform(0.0, 0.2)
            count = rng.randint(4, 9)
            for index in range(count):
                duration = rng.uniform(0.02, 0.3)
                point = clock + duration * rng.uniform(0.05, 0.95)
                skeleton.append((point, clock, clock + duration, process, index == count - 1))
                clock += duration + rng.uniform(0.001, 0.1)
        skeleton.sort()
        self.logs: dict[str, list[str]] = {session: [] for session in sessions}
        self.ops: list[tuple[Event, Event | None]] = []
        pending: dict[int, tuple[str, list[str], int]] = {}
        next_sequence: dict[tuple[int, str], int] = {}
        for _, invoke_time, complete_time, process, last in skeleton:
            retry = pending.pop(process, None)
            if retry is None and rng.random() < 0.35:
                session = rng.choice(sessions)
                log = self.logs[session]
                outcome = rng.choices(["ok", "info", "fail"], [0.8, 0.1, 0.1])[0]
                invoke: Event = {"type": "invoke", "process": process, "op": "read",
                                 "session": session, "from_offset": 0, "time": invoke_time}
                done: Event = {"type": outcome, "process": process, "op": "read",
                               "time": complete_time}
                if outcome == "ok":
                    done["records"] = [[offset, value] for offset, value in enumerate(log)]
                    done["end_offset"] = len(log)
                self.ops.append((invoke, done))
                continue
            if retry is None:
                session = rng.choice(sessions)
                sequence = next_sequence.get((process, session), 0)
                values = [f"p{process}-{session}-{sequence + i}"
                          for i in range(rng.randint(1, 2))]
                next_sequence[(process, session)] = sequence + len(values)
            else:
                session, values, sequence = retry
            log = self.logs[session]
            written = values[0] in log
            outcome = rng.choices(["ok", "info", "fail"], [0.75, 0.15, 0.1])[0]
            if outcome == "fail" and written:
                outcome = "ok"  # a deduplicated retry of a write that happened
            if not written and (outcome == "ok" or (outcome == "info" and rng.random() < 0.5)):
                log.extend(values)
                written = True
            invoke = {"type": "invoke", "process": process, "op": "append",
                      "session": session, "values": values, "producer": f"p{process}",
                      "sequence": sequence, "time": invoke_time}
            done_event: Event | None = {"type": outcome, "process": process, "op": "append",
                                        "time": complete_time}
            if outcome == "ok":
                assert done_event is not None
                first = log.index(values[0])
                done_event["offsets"] = list(range(first, first + len(values)))
            elif outcome == "info" and rng.random() < 0.7:
                pending[process] = (session, values, sequence)
            if outcome == "info" and last and rng.random() < 0.5:
                done_event = None  # still in flight when the history ends
            self.ops.append((invoke, done_event))
        horizon = max(complete for _, _, complete, _, _ in skeleton)
        self.faults: list[Event] = []
        for index in range(rng.randint(0, 2)):
            start = rng.uniform(0.3, horizon)
            self.faults.append({"type": "fault", "fault": f"fault{index}", "phase": "start",
                                "time": start})
            if rng.random() < 0.8:
                self.faults.append({"type": "fault", "fault": f"fault{index}", "phase": "end",
                                    "time": rng.uniform(start, horizon)})
        self.end = horizon + 1.0
        self.finals: dict[tuple[str, str], Event] = {}
        for node in ("n1", "n2", "n3"):
            for session, log in self.logs.items():
                self.finals[(node, session)] = {
                    "type": "final", "node": node, "session": session, "leader": node == "n1",
                    "records": [[offset, value] for offset, value in enumerate(log)],
                    "time": self.end}
        self.extra: list[Event] = []

    def events(self) -> list[Event]:
        ops = [event for pair in self.ops for event in pair if event is not None]
        timed = sorted([*ops, *self.faults, *self.extra], key=lambda event: number(event["time"]))
        return [*timed, *self.finals.values()]

    def check(self) -> CheckResult:
        return check(parse_history([json.dumps(event) for event in self.events()]), LENIENT)

    def acked(self) -> list[tuple[Event, Event]]:
        return [(invoke, done) for invoke, done in self.ops
                if done is not None and done["type"] == "ok" and invoke["op"] == "append"]

    def records(self, node: str, session: str) -> list[list[object]]:
        records = self.finals[(node, session)]["records"]
        assert isinstance(records, list)
        return records

    def busy_session(self, minimum: int) -> str | None:
        candidates = [session for session, log in self.logs.items() if len(log) >= minimum]
        return self.rng.choice(sorted(candidates)) if candidates else None

    def add_read(self, session: str, records: list[list[object]]) -> None:
        self.extra.append({"type": "invoke", "process": "late", "op": "read",
                           "session": session, "time": self.end - 0.5})
        self.extra.append({"type": "ok", "process": "late", "op": "read", "records": records,
                           "end_offset": len(records), "time": self.end - 0.4})


def number(value: object) -> float:
    assert isinstance(value, int | float)
    return value


def listed(value: object) -> list[object]:
    assert isinstance(value, list)
    return value


def inject_lost(history: Generated) -> bool:
    acked = history.acked()
    if not acked:
        return False
    invoke, _ = history.rng.choice(acked)
    values = invoke["values"]
    assert isinstance(values, list)
    for node in ("n1", "n2", "n3"):
        records = history.records(node, str(invoke["session"]))
        records[:] = [record for record in records if record[1] != values[-1]]
    return True


def inject_lost_on_node(history: Generated) -> bool:
    session = history.busy_session(1)
    if session is None:
        return False
    records = history.records("n2", session)
    del records[history.rng.randrange(len(records))]
    return True


def inject_duplicates(history: Generated) -> bool:
    session = history.busy_session(1)
    if session is None:
        return False
    value = history.rng.choice(history.logs[session])
    for node in ("n1", "n2", "n3"):
        records = history.records(node, session)
        records.append([len(records), value])
    return True


def inject_inconsistent_offsets(history: Generated) -> bool:
    session = history.busy_session(2)
    if session is None:
        return False
    records = [[offset, value] for offset, value in enumerate(history.logs[session])]
    first, second = history.rng.sample(range(len(records)), 2)
    records[first][1], records[second][1] = records[second][1], records[first][1]
    history.add_read(session, records)
    return True


def inject_gaps(history: Generated) -> bool:
    session = history.busy_session(1)
    if session is None:
        return False
    for node in ("n1", "n2", "n3"):
        final = history.finals[(node, session)]
        final["first_offset"] = 0
        records = history.records(node, session)
        records[-1] = [int(number(records[-1][0])) + 1, records[-1][1]]
    return True


def inject_producer_reordering(history: Generated) -> bool:
    writes: dict[tuple[str, str], list[tuple[int, Event, int]]] = {}
    for invoke, done in history.acked():
        sequence = invoke["sequence"]
        assert isinstance(sequence, int)
        for index in range(len(listed(done["offsets"]))):
            key = (str(invoke["producer"]), str(invoke["session"]))
            writes.setdefault(key, []).append((sequence + index, done, index))
    candidates = [sorted(items, key=lambda item: item[0]) for _, items in sorted(writes.items())
                  if len(items) >= 2]
    if not candidates:
        return False
    items = history.rng.choice(candidates)
    position = history.rng.randrange(len(items) - 1)
    (_, done_a, index_a), (_, done_b, index_b) = items[position], items[position + 1]
    offsets_a, offsets_b = done_a["offsets"], done_b["offsets"]
    assert isinstance(offsets_a, list) and isinstance(offsets_b, list)
    offsets_a[index_a], offsets_b[index_b] = offsets_b[index_b], offsets_a[index_a]
    return True


def inject_stale_reads(history: Generated) -> bool:
    choices: list[tuple[Event, int]] = []
    for invoke, done in history.ops:
        if invoke["op"] != "read" or done is None or done["type"] != "ok":
            continue
        needed = [max(number(offset) for offset in listed(acked["offsets"]))
                  for append, acked in history.acked()
                  if append["session"] == invoke["session"]
                  and number(acked["time"]) < number(invoke["time"])]
        if needed:
            choices.append((done, int(max(needed))))
    if not choices:
        return False
    done, offset = history.rng.choice(choices)
    records = done["records"]
    assert isinstance(records, list)
    cut = history.rng.randint(0, offset)
    done["records"] = records[:cut]
    done["end_offset"] = cut
    return True


def inject_aborted_reads(history: Generated) -> bool:
    session = sorted(history.logs)[0]
    history.extra.append({"type": "invoke", "process": "aborted", "op": "append",
                          "session": session, "values": ["doomed"], "time": history.end - 0.9})
    history.extra.append({"type": "fail", "process": "aborted", "op": "append",
                          "time": history.end - 0.8})
    log = history.logs[session]
    history.add_read(session, [*([offset, value] for offset, value in enumerate(log)),
                               [len(log), "doomed"]])
    return True


def inject_unexpected(history: Generated) -> bool:
    session = sorted(history.logs)[0]
    log = history.logs[session]
    history.add_read(session, [*([offset, value] for offset, value in enumerate(log)),
                               [len(log), "nobody-wrote-this"]])
    return True


def inject_convergence(history: Generated) -> bool:
    session = history.busy_session(1)
    if session is None:
        return False
    records = history.records("n3", session)
    final = history.finals[("n3", session)]
    del final["records"]
    final["hash"] = records_hash((int(number(offset)), str(value))
                                 for offset, value in records[:-1])
    return True


INJECTIONS: dict[str, Callable[[Generated], bool]] = {
    "lost": inject_lost,
    "lost_on_node": inject_lost_on_node,
    "duplicates": inject_duplicates,
    "inconsistent_offsets": inject_inconsistent_offsets,
    "gaps": inject_gaps,
    "producer_reordering": inject_producer_reordering,
    "stale_reads": inject_stale_reads,
    "aborted_reads": inject_aborted_reads,
    "unexpected": inject_unexpected,
    "convergence": inject_convergence,
}

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(seed=SEEDS)
def test_generated_valid_history_passes(seed: int) -> None:
    result = Generated(seed).check()
    assert result.verdict == "pass", (seed, result.summary())


@pytest.mark.parametrize("kind", sorted(INJECTIONS))
@settings(max_examples=50, deadline=None, derandomize=True, database=None)
@given(seed=SEEDS)
def test_injected_anomaly_is_reported(kind: str, seed: int) -> None:
    history = Generated(seed)
    assume(INJECTIONS[kind](history))
    result = history.check()
    assert result.verdict == "fail", (seed, result.summary())
    assert result.total(kind) > 0, (seed, result.summary())


# ---------------------------------------------------------------------------------------------
# Envelopes and duplicate detection by message_id


def test_an_envelope_that_did_not_survive_is_reported() -> None:
    from quorumlog.chaos.run.envelopes import MISMATCH, envelope_for, observed

    assert observed(b"p1-0", envelope_for("p1-0")) == "p1-0"
    changed = envelope_for("p1-0")
    changed.headers[1].binary = b"\x00" * 8
    marked = observed(b"p1-0", changed)
    assert marked.startswith("p1-0" + MISMATCH)
    assert observed(b"p1-0", None) == "p1-0" + MISMATCH + "missing"
    builder = clean_builder()
    builder.read(3, "s1", records=[[0, "p1-0" + MISMATCH + "missing"]])
    builder.finals()
    result = builder.check()
    assert result.verdict == "fail"
    entries = [entry for report in result.sessions.values()
               for entry in report.anomalies["envelope_mismatch"]]
    assert [(e["session"], e["value"], e["offset"], e["found"]) for e in entries] == [
        ("s1", "p1-0", 0, "missing")]
    assert result.to_json()["envelope_mismatch"] == 1


def test_a_value_resent_by_message_id_must_keep_its_offset() -> None:
    builder = clean_builder()
    # the producer re-sends an acknowledged value under a new sequence: deduplicated by its
    # message_id, it is acknowledged at its original offset
    builder.append(1, "s1", "p1-1", producer="p1", sequence=4)
    builder.finals()
    assert builder.check().verdict == "pass"
    kept = clean_builder()
    kept.logs["s1"].append("p1-1")  # a node that kept the duplicate
    kept.append(1, "s1", "p1-1", producer="p1", sequence=4, offset=len(kept.logs["s1"]) - 1)
    kept.finals()
    [entry] = [e for e in only(kept.check(), "duplicates") if e["value"] == "p1-1"]
    assert entry["offsets"] == [2, 7]
