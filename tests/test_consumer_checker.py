"""The consumer-group checks of the chaos checker, on hand-made histories.

A clean history (peek-lock, abandon and redelivery, a zombie settle refused, a settle of
unknown outcome, dead letters, the final drain) must pass; each anomaly kind is then injected
on its own and must be reported with its session, group and offset, and legal behaviour
around unknown outcomes (a lost receive's messages coming back with a higher delivery count)
must not be reported.
"""

from __future__ import annotations

import json
from pathlib import Path

from quorumlog.chaos.run.checker import CheckConfig, CheckResult, check
from quorumlog.chaos.run.consumer_checker import CONSUMER_KINDS
from quorumlog.chaos.run.history import HistoryWriter, parse_history, read_history
from quorumlog.chaos.run.report import render_report, timeline

LENIENT = CheckConfig(min_throughput=0.0, min_acked=0)
Event = dict[str, object]
Delivery = tuple[int, int]  # offset, delivery count


class Story:
    """A hand-made history of appends and consumer operations, one step at a time."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.logs: dict[str, list[str]] = {}
        self.time = 0.0

    def op(self, process: object, op: str, outcome: str | None, invoke: Event,
           done: Event | None = None) -> None:
        self.time = round(self.time + 0.1, 6)
        self.events.append({"type": "invoke", "process": process, "op": op, **invoke,
                            "time": self.time})
        self.time = round(self.time + 0.05, 6)
        if outcome is not None:
            self.events.append({"type": outcome, "process": process, "op": op,
                                **(done or {}), "time": self.time})

    def append(self, session: str, *values: str) -> None:
        log = self.logs.setdefault(session, [])
        offsets = list(range(len(log), len(log) + len(values)))
        log.extend(values)
        self.op("p", "append", "ok", {"session": session, "values": list(values)},
                {"offsets": offsets})

    def group(self, max_deliveries: int = 3) -> None:
        self.op("c0", "create_group", "ok", {"group": "g", "max_deliveries": max_deliveries})

    def accept(self, process: str, session: str, token: int, *, consumer: str | None = None,
               outcome: str = "ok") -> None:
        done: Event = {"session": session, "token": token} if outcome == "ok" else {}
        self.op(process, "accept", outcome, {"group": "g", "consumer": consumer or process},
                done)

    def receive(self, process: str, session: str, token: int, deliveries: list[Delivery],
                *, outcome: str = "ok", max_messages: int = 10,
                leader_time: int | None = None) -> None:
        log = self.logs[session]
        done: Event = {"records": [[offset, log[offset]] for offset, _ in deliveries],
                       "counts": [count for _, count in deliveries]}
        if leader_time is not None:
            done["leader_time"] = leader_time
        self.op(process, "receive", outcome,
                {"session": session, "group": "g", "token": token,
                 "max_messages": max_messages}, done if outcome == "ok" else {})

    def settle(self, process: str, session: str, token: int,
               settlements: list[tuple[int, int, str]], *, outcome: str = "ok") -> None:
        self.op(process, "settle", outcome,
                {"session": session, "group": "g", "token": token,
                 "settlements": [list(item) for item in settlements]})

    def simple(self, process: str, op: str, session: str, token: int,
               outcome: str = "ok") -> None:
        self.op(process, op, outcome, {"session": session, "group": "g", "token": token})

    def drain(self, dead: dict[str, list[int]] | None = None) -> None:
        dead = dead or {}
        for session, log in sorted(self.logs.items()):
            records = [[offset, log[offset]] for offset in dead.get(session, [])]
            self.op("drain", "dead_letters", "ok", {"session": session, "group": "g"},
                    {"records": records})
        self.op("drain", "drain", "ok", {"group": "g"})

    def finals(self) -> None:
        self.time = round(self.time + 0.1, 6)
        for index, node in enumerate(("n1", "n2", "n3")):
            for session, log in sorted(self.logs.items()):
                self.events.append({"type": "final", "node": node, "session": session,
                                    "leader": index == 0, "time": self.time,
                                    "records": [[o, v] for o, v in enumerate(log)]})

    def check(self, config: CheckConfig = LENIENT) -> CheckResult:
        return check(parse_history([json.dumps(event) for event in self.events]), config)


def base() -> Story:
    """Appends to two sessions and a consumer that works s1 through a zombie episode."""
    story = Story()
    story.group(max_deliveries=3)
    story.append("s1", "a0", "a1", "a2", "a3")
    story.append("s2", "b0", "b1")
    story.accept("c0", "s1", 1)
    story.receive("c0", "s1", 1, [(0, 1), (1, 1)])
    story.settle("c0", "s1", 1, [(0, 1, "complete"), (1, 1, "abandon")])
    story.receive("c0", "s1", 1, [(1, 2), (2, 1)])
    story.settle("c0", "s1", 1, [(1, 2, "complete"), (2, 1, "complete")])
    story.receive("c0", "s1", 1, [(3, 1)])
    # the zombie: releases, takes the session under another name, settles with token 1
    story.simple("c0", "release", "s1", 1)
    story.accept("c0", "s1", 2, consumer="c0-z")
    story.settle("c0", "s1", 1, [(3, 1, "complete")], outcome="fail")
    story.receive("c0", "s1", 2, [(3, 2)])
    story.settle("c0", "s1", 2, [(3, 2, "complete")])
    return story


def opened(*values: str, max_deliveries: int = 3) -> Story:
    """Session s1 holding ``values``, taken by consumer c0 with token 1."""
    story = Story()
    story.group(max_deliveries)
    story.append("s1", *values)
    story.accept("c0", "s1", 1)
    return story


def finish(story: Story, dead: dict[str, list[int]] | None = None) -> CheckResult:
    story.drain(dead)
    story.finals()
    return story.check()


def clean_s2(story: Story) -> None:
    """c1 takes s2; a receive of unknown outcome, then its messages again (count 2)."""
    story.accept("c1", "s2", 1)
    story.receive("c1", "s2", 1, [], outcome="info")
    story.receive("c1", "s2", 1, [(0, 2), (1, 2)])
    story.settle("c1", "s2", 1, [(0, 2, "complete"), (1, 2, "complete")], outcome="info")


def only(result: CheckResult, kind: str) -> list[dict[str, object]]:
    others = {name: result.total(name) for name in
              ("lost", "duplicates", "inconsistent_offsets", "gaps", "unexpected",
               *CONSUMER_KINDS) if name != kind and result.total(name)}
    assert others == {}, result.summary()
    assert result.verdict == "fail", result.summary()
    return [entry for report in result.sessions.values() for entry in report.anomalies[kind]]


def test_clean_consumer_history_passes() -> None:
    story = base()
    clean_s2(story)
    result = finish(story)
    assert result.verdict == "pass", result.summary()
    data = result.to_json()
    for kind in CONSUMER_KINDS:
        assert data[kind] == 0, kind
    assert data["deliveries"] == 8
    consumer = data["consumer"]
    assert isinstance(consumer, dict)
    assert consumer["zombie_settles_refused"] == 1
    assert consumer["redeliveries"] == 4
    assert consumer["completed"] == 4 and consumer["abandoned"] == 1
    assert consumer["drained_groups"] == ["g"]
    assert "1 zombie settles refused" in result.summary()


def test_lost_delivery_never_delivered() -> None:
    story = base()
    story.accept("c1", "s2", 1)
    story.receive("c1", "s2", 1, [(0, 1)])
    story.settle("c1", "s2", 1, [(0, 1, "complete")])
    result = finish(story)  # b1 never delivered, yet the drain found nothing left
    assert only(result, "lost_deliveries") == [
        {"session": "s2", "group": "g", "value": "b1", "offset": 1, "delivered": False}]


def test_lost_delivery_dropped_after_delivery() -> None:
    story = base()
    story.accept("c1", "s2", 1)
    story.receive("c1", "s2", 1, [(0, 1), (1, 1)])
    story.settle("c1", "s2", 1, [(0, 1, "complete")])
    result = finish(story)  # b1 was delivered, never settled, never came back
    assert only(result, "lost_deliveries") == [
        {"session": "s2", "group": "g", "value": "b1", "offset": 1, "delivered": True}]


def test_dead_letters_are_accounted_for_and_no_drain_is_inconclusive() -> None:
    story = base()
    story.accept("c1", "s2", 1)
    story.receive("c1", "s2", 1, [(0, 1)])
    story.settle("c1", "s2", 1, [(0, 1, "complete")])
    dead = finish(story, {"s2": [1]})  # b1 was dead-lettered (max deliveries)
    assert dead.verdict == "pass", dead.summary()
    assert dead.to_json()["consumer"]["dead_lettered"] == 1  # type: ignore[index]
    undrained = base()
    clean_s2(undrained)
    undrained.finals()
    result = undrained.check()
    assert result.verdict == "inconclusive"
    assert result.reasons == ["no final drain of group(s) g: lost deliveries unchecked"]


def test_redelivered_after_complete() -> None:
    story = base()
    clean_s2(story)
    story.receive("c0", "s1", 2, [(0, 2)])  # a0 was completed at delivery 1
    story.settle("c0", "s1", 2, [(0, 2, "complete")])
    entries = only(finish(story), "redelivered_after_complete")
    assert [(e["session"], e["offset"], e["settled_count"], e["delivery_count"])
            for e in entries] == [("s1", 0, 1, 2)]


def test_delivery_order_abandoned_message_overtaken() -> None:
    story = opened("a0", "a1", "a2")
    story.receive("c0", "s1", 1, [(0, 1), (1, 1)])
    story.settle("c0", "s1", 1, [(0, 1, "complete"), (1, 1, "abandon")])
    story.receive("c0", "s1", 1, [(2, 1)])  # a1 waits for redelivery, a2 overtakes it
    story.settle("c0", "s1", 1, [(2, 1, "complete")])
    story.receive("c0", "s1", 1, [(1, 2)])
    story.settle("c0", "s1", 1, [(1, 2, "complete")])
    entries = only(finish(story), "delivery_order")
    assert [(e["offset"], e["delivery_count"], e["why_waiting"]) for e in entries] == [
        (1, 1, "abandoned")]


def test_delivery_order_excused_by_a_receive_of_unknown_outcome() -> None:
    story = opened("a0", "a1", "a2")
    story.receive("c0", "s1", 1, [(0, 1), (1, 1)])
    story.settle("c0", "s1", 1, [(0, 1, "complete"), (1, 1, "abandon")])
    story.receive("c0", "s1", 1, [], outcome="info")  # may have taken a1 (delivery 2)
    story.receive("c0", "s1", 1, [(2, 1)])
    story.settle("c0", "s1", 1, [(2, 1, "complete")])
    story.receive("c0", "s1", 1, [(1, 3)])  # a1 again, delivery 3: the lost one was 2
    story.settle("c0", "s1", 1, [(1, 3, "complete")])
    result = finish(story)
    assert result.verdict == "pass", result.summary()


def takeover(max_deliveries: int) -> Story:
    story = opened("a0", "a1", "a2", max_deliveries=max_deliveries)
    story.receive("c0", "s1", 1, [(0, 1), (1, 1)])
    story.receive("c0", "s1", 1, [], outcome="info")  # under token 1: before the takeover
    story.accept("c1", "s1", 2)  # c0's lease lapsed: its locks are released
    story.receive("c1", "s1", 2, [(2, 1)])  # a0 and a1 must come first
    story.settle("c1", "s1", 2, [(2, 1, "complete")])
    return story


def test_delivery_order_lock_released_by_a_new_lease() -> None:
    story = takeover(max_deliveries=3)
    story.receive("c1", "s1", 2, [(0, 2), (1, 2)])
    story.settle("c1", "s1", 2, [(0, 2, "complete"), (1, 2, "complete")])
    entries = only(finish(story), "delivery_order")
    assert [(e["offset"], e["why_waiting"]) for e in entries] == [
        (0, "lock released by a new lease")]
    # With max deliveries 2, the lost receive may have taken both to delivery 2: the next
    # receive then dead-letters them instead, and a2 going first is legal.
    legal = takeover(max_deliveries=2)
    assert finish(legal, {"s1": [0, 1]}).verdict == "pass"


def test_delivery_order_fresh_message_skips_ahead() -> None:
    story = opened("a0", "a1", "a2")
    story.receive("c0", "s1", 1, [(2, 1)])  # a0 and a1 never delivered before
    story.settle("c0", "s1", 1, [(2, 1, "complete")])
    story.receive("c0", "s1", 1, [(0, 1), (1, 1)])
    story.settle("c0", "s1", 1, [(0, 1, "complete"), (1, 1, "complete")])
    entries = only(finish(story), "delivery_order")
    assert [(e["offset"], e["undelivered_below"]) for e in entries] == [(2, [0, 1])]
    # the same after a receive of unknown outcome that may have taken both is legal
    excused = opened("a0", "a1", "a2")
    excused.receive("c0", "s1", 1, [], outcome="info", max_messages=2)
    excused.receive("c0", "s1", 1, [(2, 1)])
    excused.settle("c0", "s1", 1, [(2, 1, "complete")])
    excused.receive("c0", "s1", 1, [(0, 2), (1, 2)])
    excused.settle("c0", "s1", 1, [(0, 2, "complete"), (1, 2, "complete")])
    assert finish(excused).verdict == "pass"


def test_delivery_order_offsets_not_increasing_in_one_receive() -> None:
    story = opened("a0", "a1")
    story.receive("c0", "s1", 1, [(1, 1), (0, 1)])
    story.settle("c0", "s1", 1, [(0, 1, "complete"), (1, 1, "complete")])
    entries = only(finish(story), "delivery_order")
    assert [e["problem"] for e in entries] == ["offsets not increasing"]


def test_zombie_settle_accepted() -> None:
    story = base()
    clean_s2(story)
    story.append("s1", "a4")
    story.receive("c0", "s1", 2, [(4, 1)])
    story.settle("c0", "s1", 1, [(4, 1, "complete")])  # token 1 after token 2 was granted
    story.simple("c0", "set_state", "s1", 1)
    entries = only(finish(story), "zombie_settles_accepted")
    assert [(e["session"], e["op"], e["token"], e["newer_token"]) for e in entries] == [
        ("s1", "settle", 1, 2), ("s1", "set_state", 1, 2)]


def test_concurrent_owners() -> None:
    story = base()
    clean_s2(story)
    story.simple("c0", "renew", "s1", 1)  # the old lease renewed after token 2 existed
    entries = only(finish(story), "concurrent_owners")
    assert [(e["op"], e["token"], e["newer_token"]) for e in entries] == [("renew", 1, 2)]
    twice = base()
    clean_s2(twice)
    twice.accept("c9", "s2", 1)  # token 1 of s2 already belongs to c1
    entries = only(finish(twice), "concurrent_owners")
    assert [(e["op"], e["consumer"], e["other_consumer"], e["token"]) for e in entries] == [
        ("accept", "c9", "c1", 1)]


def test_consumer_fields_round_trip_through_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        writer.invoke("c0", "settle", 1.0, session="s1", group="g", token=3,
                      settlements=[[4, 2, "abandon"]])
        writer.complete("ok", "c0", "settle", 1.1)
        writer.invoke("c0", "receive", 1.2, session="s1", group="g", token=3, max_messages=5)
        writer.complete("ok", "c0", "receive", 1.3, records=[[4, "v"]], counts=[3])
    settle, receive = read_history(path).operations
    assert (settle.group, settle.token, settle.settlements) == ("g", 3, ((4, 2, "abandon"),))
    assert (receive.records, receive.counts, receive.max_messages) == (((4, "v"),), (3,), 5)


def test_delivery_order_lock_released_by_a_release() -> None:
    story = opened("a0", "a1")
    story.receive("c0", "s1", 1, [(0, 1)])
    story.simple("c0", "release", "s1", 1)  # a0's lock goes with the lease
    story.accept("c1", "s1", 2)
    story.receive("c1", "s1", 2, [(1, 1)])  # a0 must come before a1
    story.settle("c1", "s1", 2, [(1, 1, "complete")])
    story.receive("c1", "s1", 2, [(0, 2)])
    story.settle("c1", "s1", 2, [(0, 2, "complete")])
    entries = only(finish(story), "delivery_order")
    assert [(e["offset"], e["receive_line"], e["why_waiting"]) for e in entries] == [
        (0, 13, "lock released")]


def test_report_plots_consumer_deliveries() -> None:
    story = base()
    clean_s2(story)
    story.drain()
    story.finals()
    history = parse_history([json.dumps(event) for event in story.events])
    result = check(history, LENIENT)
    buckets = timeline(history, bucket_seconds=100.0)
    assert sum(bucket.deliveries for bucket in buckets) == 8
    page = render_report(history, result.to_json(), "t")
    assert "consumer deliveries/s" in page and "<td>deliveries</td><td>8</td>" in page


def test_a_scheduled_message_may_be_overtaken_but_never_delivered_early() -> None:
    story = opened("a0", "a1@5000", "a2")
    story.receive("c0", "s1", 1, [(0, 1), (2, 1)], leader_time=1_000)  # a1 not yet due
    story.settle("c0", "s1", 1, [(0, 1, "complete"), (2, 1, "complete")])
    story.receive("c0", "s1", 1, [(1, 1)], leader_time=5_000)  # due: delivered now
    story.settle("c0", "s1", 1, [(1, 1, "complete")])
    assert finish(story).verdict == "pass"
    early = opened("a0", "a1@5000", "a2")
    early.receive("c0", "s1", 1, [(0, 1), (1, 1), (2, 1)], leader_time=4_999)
    early.settle("c0", "s1", 1, [(0, 1, "complete"), (1, 1, "complete"), (2, 1, "complete")])
    [entry] = only(finish(early), "delivered_early")
    assert (entry["offset"], entry["deliver_at"], entry["leader_time"]) == (1, 5000, 4999)
    # never delivered at all: lost, once the drain emptied the group
    lost = opened("a0", "a1@5000")
    lost.receive("c0", "s1", 1, [(0, 1)], leader_time=1_000)
    lost.settle("c0", "s1", 1, [(0, 1, "complete")])
    [entry] = only(finish(lost), "lost_deliveries")
    assert entry["value"] == "a1@5000"
