"""The consumer-group half of the chaos checker: deliveries, settles and leases in a history.

Owns: judging the consumer operations of a :class:`~quorumlog.chaos.run.history.History`
(``create_group``, ``accept``, ``receive``, ``settle``, ``renew``, ``release``, ``set_state``,
``dead_letters`` and the final ``drain``; format in ``quorumlog.chaos.run.history``) into anomaly
lists per session, plus delivery figures. Called by ``quorumlog.chaos.run.checker``, which owns
the verdict. Must never: read files, talk to a cluster, read a clock or draw randomness.

Every definition holds per (session, group) and is conservative about unknown outcomes: an
operation that ended ``info`` may have taken effect at any moment after its invocation (even
after its completion: a proposal can commit late), so it excuses what it could explain. The
fencing token only grows, and an operation carrying token ``T`` takes effect only while ``T``
is the latest token, so an ``info`` receive under a token older than one known to be granted
before some moment cannot take effect after it.

- ``lost_deliveries`` (only for a group whose final ``drain`` ended ``ok``): an acknowledged
  value neither in the group's final dead-letter listing nor both delivered by an ok receive
  and settled away (complete, dead-letter, or abandon at the group's max deliveries) by an ok
  or info settle: it was never delivered, or was dropped after delivery.
- ``redelivered_after_complete``: an ok receive delivers an offset that an ok settle had
  settled away (complete or dead letter) with delivery count ``c``, with a delivery count above
  ``c`` or invoked after that settle completed.
- ``delivery_order``: an ok receive whose offsets are not increasing; an ok receive that
  delivers a fresh message (delivery count 1) above offsets of the session not yet delivered,
  more of them than the receives of unknown outcome invoked before it could have taken; or an
  ok receive that delivers an offset above ``Y`` but not ``Y`` itself while ``Y`` was known to
  be waiting for redelivery: its delivery ``c`` (below max deliveries) was abandoned by an ok
  settle, or its receive completed before an ok accept granted a newer token or an ok release
  gave the lease up (both free every lock), before the receive was invoked, and no other
  receive (an ok one with a later delivery of ``Y``, an unknown one under a token not older
  than the release's) nor a settle of that delivery other than the abandon could explain it.
- ``delivered_early``: an ok receive whose leader clock (``leader_time``) was before the
  delivery time of a scheduled value it delivered (``p1-7@<ms>``, ``quorumlog.chaos.run.
  envelopes``). Scheduled values are left out of the fresh-order rule of ``delivery_order``
  (later messages may overtake one not yet due); that they are never lost is
  ``lost_deliveries``' rule (the final drain waits until every backlog is empty).
- ``zombie_settles_accepted``: an ok settle or state write carrying token ``T > 0`` invoked
  after an ok operation completed showing a token above ``T`` (granted by accept, or carried
  by an ok receive, settle, renew, release or state write).
- ``concurrent_owners``: the same for an ok receive, renew or release (an older owner acting
  after a newer lease existed); two ok accepts of different consumers granted one token; an ok
  accept granting a consumer a token not above one already granted to another consumer before
  the accept was invoked.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from quorumlog.chaos.run.envelopes import scheduled_at
from quorumlog.chaos.run.history import Operation

Anomaly = dict[str, object]
Pair = tuple[str, str]  # session, group

CONSUMER_KINDS: tuple[str, ...] = (
    "lost_deliveries", "redelivered_after_complete", "delivery_order", "delivered_early",
    "zombie_settles_accepted", "concurrent_owners",
)
CONSUMER_OPS: tuple[str, ...] = ("create_group", "accept", "receive", "settle", "renew",
                                 "release", "set_state", "dead_letters", "drain")
DEFAULT_MAX_DELIVERIES = 10  # the node's default for a group created without one
DEFAULT_MAX_MESSAGES = 100  # the node's default receive size


@dataclass
class ConsumerFigures:
    receives: int = 0  # ok receives
    deliveries: int = 0  # messages delivered by ok receives
    redeliveries: int = 0  # of which with a delivery count above 1
    settles: int = 0  # ok settles
    completed: int = 0
    abandoned: int = 0
    dead_lettered: int = 0  # in the final dead-letter listings
    accepts: int = 0  # ok accepts that granted a session
    zombie_settles_refused: int = 0  # settles and state writes refused for a stale token
    drained_groups: list[str] = field(default_factory=list)
    undrained_groups: list[str] = field(default_factory=list)  # deliveries, no ok drain

    def to_json(self) -> dict[str, object]:
        return {"receives": self.receives, "deliveries": self.deliveries,
                "redeliveries": self.redeliveries, "settles": self.settles,
                "completed": self.completed, "abandoned": self.abandoned,
                "dead_lettered": self.dead_lettered, "accepts": self.accepts,
                "zombie_settles_refused": self.zombie_settles_refused,
                "drained_groups": list(self.drained_groups),
                "undrained_groups": list(self.undrained_groups)}


@dataclass
class _Pair:
    receives: list[Operation] = field(default_factory=list)  # ok
    unknown_receives: list[Operation] = field(default_factory=list)  # info
    settles: list[Operation] = field(default_factory=list)  # ok or info
    accepts: list[Operation] = field(default_factory=list)  # ok
    releases: list[Operation] = field(default_factory=list)  # ok
    tokened: list[Operation] = field(default_factory=list)  # ok, with a token
    refused_settles: list[Operation] = field(default_factory=list)  # fail, with a token
    dead: set[tuple[int, str]] = field(default_factory=set)


def _done(op: Operation) -> float:
    return op.complete_time if op.complete_time is not None else float("inf")


def check_consumers(operations: Iterable[Operation], acked: dict[str, dict[str, int]],
                    offsets: dict[str, set[int]],
                    ) -> tuple[dict[str, dict[str, list[Anomaly]]], ConsumerFigures]:
    """Anomalies by session and kind, and the figures. ``acked``: session -> acknowledged
    value -> offset; ``offsets``: session -> every offset known to exist."""
    ops = [op for op in operations if op.op in CONSUMER_OPS]
    figures = ConsumerFigures()
    scheduled_offsets: dict[str, set[int]] = {
        session: {offset for value, offset in values.items() if scheduled_at(value)}
        for session, values in acked.items()
    }
    for op in ops:  # offsets of scheduled values that were never acknowledged
        if op.op == "receive" and op.session is not None:
            scheduled_offsets.setdefault(op.session, set()).update(
                offset for offset, value in op.records if scheduled_at(value))
    max_deliveries: dict[str, int] = {}
    drained: set[str] = set()
    pairs: dict[Pair, _Pair] = defaultdict(_Pair)
    for op in ops:
        if op.op == "create_group" and op.group and op.max_deliveries:
            max_deliveries.setdefault(op.group, op.max_deliveries)
        if op.op == "drain" and op.outcome == "ok" and op.group:
            drained.add(op.group)
        if op.session is None or op.group is None:
            continue
        pair = pairs[(op.session, op.group)]
        if op.op == "receive":
            if op.outcome == "ok":
                pair.receives.append(op)
            elif op.outcome == "info":
                pair.unknown_receives.append(op)
        elif op.op == "settle" and op.outcome != "fail":
            pair.settles.append(op)
        elif op.op in ("settle", "set_state") and op.outcome == "fail" and op.token:
            pair.refused_settles.append(op)
        elif op.op == "accept" and op.outcome == "ok" and op.token:
            pair.accepts.append(op)
        elif op.op == "release" and op.outcome == "ok" and op.token:
            pair.releases.append(op)
        elif op.op == "dead_letters" and op.outcome == "ok":
            pair.dead.update(op.records)
        if op.outcome == "ok" and op.token:
            pair.tokened.append(op)
    found: dict[str, dict[str, list[Anomaly]]] = defaultdict(
        lambda: {kind: [] for kind in CONSUMER_KINDS})
    for (session, group), pair in sorted(pairs.items()):
        limit = max_deliveries.get(group, DEFAULT_MAX_DELIVERIES)
        out = found[session]
        _figures(figures, pair)
        out["redelivered_after_complete"] += _redelivered(session, group, pair, limit)
        scheduled = scheduled_offsets.get(session, set())
        out["delivery_order"] += _order(
            session, group, pair, limit, offsets.get(session, set()) - scheduled,
            scheduled=scheduled,
        )
        out["delivered_early"] += _early(session, group, pair)
        zombies, owners = _fencing(session, group, pair)
        out["zombie_settles_accepted"] += zombies
        out["concurrent_owners"] += owners
    delivering = {group for (_, group), pair in pairs.items() if pair.receives}
    figures.drained_groups = sorted(drained)
    figures.undrained_groups = sorted(delivering - drained)
    for group in sorted(drained):
        limit = max_deliveries.get(group, DEFAULT_MAX_DELIVERIES)
        for session, values in sorted(acked.items()):
            found[session]["lost_deliveries"] += _lost(
                session, group, pairs.get((session, group), _Pair()), values, limit)
    return dict(found), figures


def _figures(figures: ConsumerFigures, pair: _Pair) -> None:
    figures.receives += len(pair.receives)
    for receive in pair.receives:
        figures.deliveries += len(receive.records)
        figures.redeliveries += sum(1 for count in receive.counts if count > 1)
    for settle in pair.settles:
        if settle.outcome == "ok":
            figures.settles += 1
            figures.completed += sum(1 for item in settle.settlements if item[2] == "complete")
            figures.abandoned += sum(1 for item in settle.settlements if item[2] == "abandon")
    figures.dead_lettered += len(pair.dead)
    figures.accepts += len(pair.accepts)
    evidence = _evidence(pair.tokened)
    figures.zombie_settles_refused += sum(
        1 for op in pair.refused_settles
        if _newer(evidence, op.invoke_time, op.token or 0) is not None)


def _removes(action: str, count: int, limit: int) -> bool:
    """Whether a settle action takes the message away from the group for good."""
    return action != "abandon" or count >= limit


def _lost(session: str, group: str, pair: _Pair, values: dict[str, int],
          limit: int) -> list[Anomaly]:
    delivered = {record for receive in pair.receives for record in receive.records}
    removed = {offset for settle in pair.settles
               for offset, count, action in settle.settlements
               if _removes(action, count, limit)}
    lost: list[Anomaly] = []
    for value, offset in sorted(values.items(), key=lambda item: (item[1], item[0])):
        if (offset, value) in pair.dead:
            continue
        was_delivered = (offset, value) in delivered
        if was_delivered and offset in removed:
            continue
        lost.append({"session": session, "group": group, "value": value, "offset": offset,
                     "delivered": was_delivered})
    return lost


def _redelivered(session: str, group: str, pair: _Pair, limit: int) -> list[Anomaly]:
    settled: dict[int, list[tuple[int, Operation]]] = defaultdict(list)
    for settle in pair.settles:
        if settle.outcome != "ok":
            continue
        for offset, count, action in settle.settlements:
            if _removes(action, count, limit):
                settled[offset].append((count, settle))
    found: list[Anomaly] = []
    reported: set[int] = set()
    for receive in sorted(pair.receives, key=lambda op: (op.invoke_time, op.line)):
        for (offset, value), count in zip(receive.records, _counts(receive), strict=True):
            if offset in reported:
                continue
            for settled_count, settle in settled.get(offset, ()):
                if count > settled_count or receive.invoke_time > _done(settle):
                    reported.add(offset)
                    found.append({"session": session, "group": group, "offset": offset,
                                  "value": value, "settled_count": settled_count,
                                  "settle_line": settle.line, "delivery_count": count,
                                  "receive_line": receive.line})
                    break
    return found


def _counts(receive: Operation) -> tuple[int, ...]:
    return receive.counts if receive.counts else tuple(1 for _ in receive.records)


@dataclass(frozen=True)
class _Release:
    offset: int
    count: int
    at: float  # completion of the operation that made it available again
    floor: int  # tokens below this cannot take effect after the release (0: any can)
    line: int
    how: str
    # Released locks only: receives of unknown outcome under tokens from this one on may have
    # delivered it again meanwhile; this many of them can take it to max deliveries (then a
    # receive dead-letters it instead of delivering it). None: its count is known exactly.
    since_token: int | None = None
    headroom: int = 0


@dataclass
class _Index:
    """One pair's lookups for the order checks (times are invocation times)."""

    deliveries: dict[int, list[tuple[float, int]]]  # offset -> ok receives' (time, count)
    settles: dict[tuple[int, int], list[tuple[float, int]]]  # (offset, count) -> (time, line)
    unknown: list[tuple[float, int]]  # receives of unknown outcome: (time, token), by time


def _index(pair: _Pair) -> _Index:
    deliveries: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for receive in pair.receives:
        for (offset, _), count in zip(receive.records, _counts(receive), strict=True):
            deliveries[offset].append((receive.invoke_time, count))
    settles: dict[tuple[int, int], list[tuple[float, int]]] = defaultdict(list)
    for settle in pair.settles:
        for offset, count, _ in settle.settlements:
            settles[(offset, count)].append((settle.invoke_time, settle.line))
    unknown = sorted((op.invoke_time, op.token or 0) for op in pair.unknown_receives)
    return _Index(deliveries, settles, unknown)


def _releases(pair: _Pair, limit: int, index: _Index) -> list[_Release]:
    """Moments a delivered message was known to wait for redelivery (the first per
    delivery: later ones add nothing the check would not already have seen)."""
    releases: list[_Release] = []
    for settle in pair.settles:
        if settle.outcome != "ok" or settle.complete_time is None:
            continue
        for offset, count, action in settle.settlements:
            if action == "abandon" and count < limit:
                releases.append(_Release(offset, count, settle.complete_time, settle.token or 0,
                                         settle.line, "abandoned"))
    # A new lease (accept) or a release frees every lock taken before it.
    freeing = sorted([(op, 1) for op in pair.accepts if op.complete_time is not None]
                     + [(op, 0) for op in pair.releases if op.complete_time is not None],
                     key=lambda item: (item[0].invoke_time, item[0].line))
    times = [op.invoke_time for op, _ in freeing]
    for receive in pair.receives:
        token_before = receive.token or 0
        position = bisect_right(times, _done(receive))
        while (position < len(freeing)
               and token_before > (freeing[position][0].token or 0) - freeing[position][1]):
            position += 1  # tokens only grow: this ends at the next newer lease or release
        if position == len(freeing):
            continue
        op, newer = freeing[position]
        for (offset, _), count in zip(receive.records, _counts(receive), strict=True):
            if count >= limit:
                continue  # the next receive dead-letters it instead of delivering it
            if any(time < _done(op) for time, _ in index.settles.get((offset, count), ())):
                continue  # possibly settled before the locks were freed
            releases.append(_Release(
                offset, count, _done(op), op.token or 0, op.line,
                "lock released by a new lease" if newer else "lock released",
                since_token=token_before, headroom=limit - count))
    return releases


def _early(session: str, group: str, pair: _Pair) -> list[Anomaly]:
    """Scheduled values an ok receive delivered before their time by its leader clock."""
    found: list[Anomaly] = []
    for receive in pair.receives:
        if receive.leader_time is None:
            continue
        for offset, value in receive.records:
            due = scheduled_at(value)
            if due > receive.leader_time:
                found.append({"session": session, "group": group, "offset": offset,
                              "value": value, "deliver_at": due,
                              "leader_time": receive.leader_time,
                              "receive_line": receive.line})
    return found


def _order(session: str, group: str, pair: _Pair, limit: int,
           known: set[int], *, scheduled: set[int]) -> list[Anomaly]:
    found: list[Anomaly] = []
    receives = sorted(pair.receives, key=lambda op: (op.invoke_time, op.line))
    for receive in receives:
        offsets = [offset for offset, _ in receive.records]
        if any(later <= earlier for earlier, later in pairwise(offsets)):
            found.append({"session": session, "group": group, "receive_line": receive.line,
                          "offsets": offsets[:20], "problem": "offsets not increasing"})
    found += _fresh_order(session, group, pair, receives, known, scheduled=scheduled)
    index = _index(pair)
    invoked = [receive.invoke_time for receive in receives]
    reported: set[tuple[int, int]] = set()
    flagged: set[int] = set()  # receive lines: one entry per faulty receive
    for release in sorted(_releases(pair, limit, index), key=lambda item: (item.at, item.line)):
        key = (release.offset, release.count)
        if key in reported:
            continue
        reported.add(key)
        excused_from = _excused_from(release, index)
        for receive in receives[bisect_right(invoked, release.at):]:
            if receive.invoke_time >= excused_from:
                break  # this and every later receive may come after the explanation
            if (_done(receive) > excused_from or not receive.records
                    or receive.line in flagged):
                continue
            delivered = [offset for offset, _ in receive.records]
            if release.offset in delivered or max(delivered) < release.offset:
                continue
            flagged.add(receive.line)
            found.append({"session": session, "group": group, "offset": release.offset,
                          "delivery_count": release.count, "waiting_since_line": release.line,
                          "why_waiting": release.how, "receive_line": receive.line,
                          "delivered": delivered[:20],
                          "problem": "a later offset overtook a redelivery"})
            break
    return found


def _excused_from(release: _Release, index: _Index) -> float:
    """The earliest invocation of an operation that could have taken ``release``'s message
    before a receive completing after it: a later delivery of it, another settle of that
    delivery, a receive of unknown outcome that may have redelivered (or, enough of them,
    dead-lettered) it."""
    earliest = float("inf")
    for time, count in index.deliveries.get(release.offset, ()):
        if count > release.count:
            earliest = min(earliest, time)
    for time, line in index.settles.get((release.offset, release.count), ()):
        if line != release.line:
            earliest = min(earliest, time)
    bumps = 0
    for time, token in index.unknown:
        if time >= earliest:
            break
        if token == 0 or release.floor == 0 or token >= release.floor:
            return time
        if release.since_token is not None and token >= release.since_token:
            bumps += 1
            if bumps >= release.headroom:
                return time
    return earliest


def _fresh_order(session: str, group: str, pair: _Pair, receives: Sequence[Operation],
                 known: set[int], *, scheduled: set[int]) -> list[Anomaly]:
    """Fresh messages come in offset order: a first delivery of ``X`` means every offset
    below ``X`` was delivered before, by an ok receive or possibly by an unknown one
    (``scheduled`` offsets aside: they come when due)."""
    first_seen: dict[int, float] = {}  # offset -> earliest invocation of an ok delivery
    for receive in receives:
        for offset, _ in receive.records:
            if offset in scheduled:
                continue
            first_seen[offset] = min(first_seen.get(offset, receive.invoke_time),
                                     receive.invoke_time)
    every = sorted(known | set(first_seen))
    position = {offset: index for index, offset in enumerate(every)}
    arrivals = sorted((time, position[offset]) for offset, time in first_seen.items())
    unknown = sorted((op.invoke_time, op.max_messages or DEFAULT_MAX_MESSAGES)
                     for op in pair.unknown_receives)
    unknown_times = [time for time, _ in unknown]
    room_before = [0]
    for _, size in unknown:
        room_before.append(room_before[-1] + size)
    seen = _Counter(len(every))  # offsets delivered by ok receives invoked before a moment
    added = 0
    for receive in sorted(receives, key=_done):
        end = _done(receive)
        while added < len(arrivals) and arrivals[added][0] < end:
            seen.add(arrivals[added][1])
            added += 1
        fresh = [offset for (offset, _), count in zip(receive.records, _counts(receive),
                                                        strict=True)
                 if count == 1 and offset not in scheduled]
        if not fresh:
            continue
        below = position[max(fresh)]
        missing = below - seen.below(below)
        if missing > room_before[bisect_left(unknown_times, end)]:
            undelivered = [offset for offset in every[:below]
                           if first_seen.get(offset, float("inf")) >= end]
            found = {"session": session, "group": group, "receive_line": receive.line,
                     "offset": max(fresh), "undelivered_below": undelivered[:10],
                     "problem": "a fresh message overtook undelivered ones"}
            return [found]  # one is enough: every later receive would repeat it
    return []


class _Counter:
    """How many of positions ``0 .. n-1`` were added, below a position (a Fenwick tree)."""

    def __init__(self, size: int) -> None:
        self._tree = [0] * (size + 1)

    def add(self, position: int) -> None:
        position += 1
        while position < len(self._tree):
            self._tree[position] += 1
            position += position & -position

    def below(self, position: int) -> int:
        total = 0
        while position > 0:
            total += self._tree[position]
            position -= position & -position
        return total


def _evidence(tokened: Sequence[Operation]) -> tuple[list[float], list[tuple[int, int]]]:
    """Ok operations showing a token, by completion: times and the running (token, line)."""
    ordered = sorted((op for op in tokened if op.complete_time is not None),
                     key=_done)
    times = [_done(op) for op in ordered]
    best: list[tuple[int, int]] = []
    for op in ordered:
        item = (op.token or 0, op.line)
        best.append(max(best[-1], item) if best else item)
    return times, best


def _newer(evidence: tuple[list[float], list[tuple[int, int]]], before: float,
           token: int) -> tuple[int, int] | None:
    times, best = evidence
    index = bisect_left(times, before)  # completed strictly before
    if index and best[index - 1][0] > token:
        return best[index - 1]
    return None


def _fencing(session: str, group: str, pair: _Pair) -> tuple[list[Anomaly], list[Anomaly]]:
    evidence = _evidence(pair.tokened)
    zombies: list[Anomaly] = []
    owners: list[Anomaly] = []
    for op in sorted(pair.tokened, key=lambda item: (item.invoke_time, item.line)):
        if op.op == "accept":
            continue
        newer = _newer(evidence, op.invoke_time, op.token or 0)
        if newer is None:
            continue
        entry: Anomaly = {"session": session, "group": group, "op": op.op, "line": op.line,
                          "token": op.token, "newer_token": newer[0], "newer_line": newer[1]}
        (zombies if op.op in ("settle", "set_state") else owners).append(entry)
    owners += _token_reuse(session, group, pair.accepts)
    return zombies, owners


def _token_reuse(session: str, group: str, accepts: Sequence[Operation]) -> list[Anomaly]:
    """Accepts granting a consumer a token another consumer already had: the same token
    (at any time), or one not above a token granted to another consumer before."""
    first_holder: dict[int, Operation] = {}
    by_done = sorted(accepts, key=_done)
    times = [_done(op) for op in by_done]
    # Running best two (token, line, op) by completion, of two different consumers.
    best: list[tuple[Operation | None, Operation | None]] = []
    top: Operation | None = None
    runner: Operation | None = None
    for op in by_done:
        if top is None or (op.token or 0) >= (top.token or 0):
            if top is not None and top.consumer != op.consumer:
                runner = top
            top = op
        elif op.consumer != top.consumer and (runner is None
                                              or (op.token or 0) > (runner.token or 0)):
            runner = op
        best.append((top, runner))
    found: list[Anomaly] = []
    for accept in sorted(accepts, key=lambda item: (item.invoke_time, item.line)):
        other: Operation | None = None
        holder = first_holder.setdefault(accept.token or 0, accept)
        if holder.consumer != accept.consumer:
            other = holder
        index = bisect_left(times, accept.invoke_time)  # completed strictly before
        if other is None and index:
            leader, second = best[index - 1]
            rival = leader if leader is not None and leader.consumer != accept.consumer \
                else second
            if rival is not None and (rival.token or 0) >= (accept.token or 0):
                other = rival
        if other is not None:
            found.append({"session": session, "group": group, "op": "accept",
                          "line": accept.line, "consumer": accept.consumer,
                          "token": accept.token, "other_consumer": other.consumer,
                          "other_token": other.token, "other_line": other.line})
    return found
