"""Consumer groups, peek-lock, dead letters (resubmit, purge), leases, fencing, session state and
the group status (backlog, cursor, first unsettled offset), applied by the state machine on a
real RocksDB (``quorumlog.node.state.consumer_state``): every behaviour of issue 4 at apply level,
deterministic, with refused commands checked to change nothing."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from state_helpers import dump

from quorumlog.node.common.limits import ErrorCode
from quorumlog.node.replication.applier import CommandError
from quorumlog.node.state.consumer_records import CONSUMER_PREFIX, MAX_STATE_BYTES, ConsumerResult
from quorumlog.node.state.state_machine import AppendResult, SessionStateMachine
from quorumlog.node.storage.raft_store import RocksStorage
from quorumlog.proto import commands_pb2, consumer_commands_pb2, consumer_pb2
from quorumlog.proto import consumer_commands_pb2 as cc
from quorumlog.raft.types import Entry


def consumer(**kind: object) -> commands_pb2.Command:
    return commands_pb2.Command(consumer=consumer_commands_pb2.ConsumerCommand(**kind))  # type: ignore[arg-type]


def append(session: str, *messages: bytes) -> commands_pb2.Command:
    return commands_pb2.Command(
        append=commands_pb2.AppendCommand(session=session, messages=list(messages))
    )


class Node:
    def __init__(self, path: Path) -> None:
        self.storage = RocksStorage(path)
        self.sm = SessionStateMachine(self.storage)
        self.index = 0
        self.now = 1_000_000

    def run(self, *commands: commands_pb2.Command) -> list[object]:
        self.index += 1
        data = commands_pb2.CommandBatch(leader_time_ms=self.now, commands=list(commands))
        (result,) = self.sm.apply([Entry(1, self.index, data.SerializeToString())])
        return list(result.results)

    def ok(self, command: commands_pb2.Command) -> object:
        (result,) = self.run(command)
        assert isinstance(result, ConsumerResult), result
        return result.response

    def refused(self, command: commands_pb2.Command, code: ErrorCode, text: str) -> None:
        """The command is refused with ``code`` and a message containing ``text``, and the
        state (but the applied index and the clock) is unchanged."""
        before = [pair for pair in dump(self.storage) if pair[0].startswith(b"C/")]
        (result,) = self.run(command)
        assert isinstance(result, CommandError), result
        assert result.code == code, result
        assert text in result.message, result.message
        after = [pair for pair in dump(self.storage) if pair[0].startswith(b"C/")]
        strip = [pair for pair in before if pair[0] != b"C/clock"]
        assert strip == [pair for pair in after if pair[0] != b"C/clock"]

    # shorthands
    def group(self, name: str = "g", lock_ms: int = 10_000, max_deliveries: int = 3) -> None:
        self.ok(consumer(create_group=cc.CreateGroupCommand(
            group=name, lock_ms=lock_ms, max_deliveries=max_deliveries)))

    def receive(
        self, session: str = "s", group: str = "g", n: int = 10, token: int = 0,
        delete: bool = False,
    ) -> list[tuple[int, int]]:
        response = self.ok(consumer(receive=cc.ReceiveCommand(
            session=session, group=group, max_messages=n, token=token,
            receive_and_delete=delete)))
        assert isinstance(response, consumer_pb2.ReceiveResponse)
        return [(m.offset, m.delivery_count) for m in response.messages]

    def settle_cmd(  # noqa: PLR0917 -- a test shorthand
        self, pairs: list[tuple[int, int]], action: int = 0, session: str = "s",
        group: str = "g", token: int = 0, delay_ms: int = 0, reason: str = "",
        state: cc.StateWrite | None = None,
    ) -> commands_pb2.Command:
        return consumer(settle=cc.SettleCommand(
            session=session, group=group, token=token, state=state,
            settlements=[cc.Settlement(offset=o, delivery_count=d, action=action,
                                       delay_ms=delay_ms, reason=reason) for o, d in pairs]))

    def settle(self, pairs: list[tuple[int, int]], **options: object) -> object:
        return self.ok(self.settle_cmd(pairs, **options))  # type: ignore[arg-type]

    def accept(
        self, session: str = "s", who: str = "a", lease_ms: int = 5_000
    ) -> consumer_pb2.Lease:
        lease = self.ok(consumer(accept=cc.AcceptCommand(
            session=session, group="g", consumer=who, lease_ms=lease_ms)))
        assert isinstance(lease, consumer_pb2.Lease)
        return lease

    def close(self) -> None:
        self.storage.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    created = Node(tmp_path / "a")
    created.run(append("s", *[b"m%d" % i for i in range(10)]))
    created.group()
    yield created
    created.close()


def test_peek_lock_batches_complete_and_backlog(node: Node) -> None:
    assert node.receive(n=4) == [(0, 1), (1, 1), (2, 1), (3, 1)]
    assert node.receive(n=2) == [(4, 1), (5, 1)]  # locked ones are not handed out twice
    response = node.settle([(0, 1), (1, 1), (2, 1), (3, 1)])
    assert isinstance(response, consumer_pb2.SettleResponse) and response.completed == 4
    status = node.sm.consumers.status(b"s", 0, 10, node.now, node.sm.consumers.groups())
    assert status.groups[0].backlog == 6 and status.groups[0].in_flight == 2


def test_fan_out_groups_read_independently(node: Node) -> None:
    node.group("h")
    assert [o for o, _ in node.receive(n=3)] == [0, 1, 2]
    assert [o for o, _ in node.receive(group="h", n=3)] == [0, 1, 2]


def test_expired_lock_is_redelivered_before_later_messages(node: Node) -> None:
    node.receive(n=2)
    node.now += 10_001  # locks expired
    assert node.receive(n=3) == [(0, 2), (1, 2), (2, 1)]
    node.refused(node.settle_cmd([(0, 1)]), ErrorCode.FAILED_PRECONDITION, "redelivered")


def test_abandon_with_delay_blocks_later_messages_until_redelivered(node: Node) -> None:
    node.receive(n=2)
    node.settle([(0, 1)], action=consumer_pb2.ABANDON, delay_ms=500)
    node.settle([(1, 1)])
    assert node.receive(n=5) == []  # offset 0 waits; nothing may overtake it
    node.now += 500
    assert node.receive(n=2) == [(0, 2), (2, 1)]


def test_max_deliveries_dead_letters_never_drops_and_resubmits(node: Node) -> None:
    for delivery in (1, 2, 3):
        assert node.receive(n=1) == [(0, delivery)]
        node.settle([(0, delivery)], action=consumer_pb2.ABANDON)
    assert node.receive(n=1) == [(1, 1)]  # offset 0 was dead-lettered at its third abandon
    letters, truncated = node.sm.consumers.dead_letters(b"s", 0, 10)
    assert not truncated and [(d.offset, d.data, d.delivery_count) for d in letters] == [
        (0, b"m0", 3)
    ]
    assert "max delivery count 3" in letters[0].reason
    # Expiry counts too: offset 1 delivered 3 times by lapsing locks, then dead-lettered.
    for delivery in (2, 3):
        node.now += 10_001
        assert node.receive(n=1) == [(1, delivery)]
    node.now += 10_001
    assert node.receive(n=1) == [(2, 1)]
    node.settle([(2, 1)], action=consumer_pb2.DEAD_LETTER, reason="poison")
    letters, _ = node.sm.consumers.dead_letters(b"s", 0, 10)
    assert [(d.sequence, d.offset, d.reason) for d in letters][1:] == [(1, 1, letters[1].reason),
                                                                       (2, 2, "poison")]
    response = node.ok(consumer(resubmit=cc.ResubmitCommand(session="s", sequences=[0, 2])))
    assert isinstance(response, consumer_pb2.ResubmitDeadLettersResponse)
    assert list(response.offsets) == [10, 11] and response.remaining == 1
    page = node.sm.read("s", 10)
    assert [r.data for r in page.records] == [b"m0", b"m2"]
    node.refused(consumer(resubmit=cc.ResubmitCommand(session="s", sequences=[0])),
                 ErrorCode.NOT_FOUND, "dead letter 0")


def _dead_letter_all(node: Node, count: int) -> None:
    """Offsets 0..count-1 of "s" received and dead-lettered (sequences 0..count-1)."""
    got = node.receive(n=count)
    node.settle(got, action=consumer_pb2.DEAD_LETTER, reason="poison")


def _purge(node: Node, session: str = "s", *sequences: int) -> commands_pb2.Command:
    return consumer(purge=cc.PurgeCommand(session=session, sequences=list(sequences)))


def test_purge_removes_dead_letters_for_good_and_refuses_what_is_not_held(node: Node) -> None:
    _dead_letter_all(node, 4)
    node.refused(_purge(node, "s", 1, 7), ErrorCode.NOT_FOUND,
                 "dead letter 7 of session 's' not found")
    node.refused(_purge(node, "s", 8, 9), ErrorCode.NOT_FOUND, "dead letter 8 of session 's' "
                 "not found (and 1 more)")
    node.refused(_purge(node, "nope", 0), ErrorCode.NOT_FOUND, "session 'nope' not found")
    node.refused(_purge(node, "nope"), ErrorCode.NOT_FOUND, "session 'nope' not found")
    node.refused(_purge(node, "s", *range(1_001)), ErrorCode.RESOURCE_EXHAUSTED,
                 "1001 dead letters; the limit is 1000 per call")
    response = node.ok(_purge(node, "s", 2, 0, 2))  # a repeated sequence counts once
    assert isinstance(response, consumer_pb2.PurgeDeadLettersResponse)
    assert (response.purged, response.remaining) == (2, 2)
    letters, _ = node.sm.consumers.dead_letters(b"s", 0, 10)
    assert [d.sequence for d in letters] == [1, 3]
    assert node.sm.consumers.policy(b"s").dead_letters == 2
    node.refused(_purge(node, "s", 0), ErrorCode.NOT_FOUND, "dead letter 0")  # gone for good
    # Nothing purged is appended again: the session still ends at offset 10.
    assert node.sm.describe("s").next_offset == 10
    node.ok(consumer(close=cc.CloseSessionCommand(session="s")))  # closed: may still purge
    response = node.ok(_purge(node, "s"))  # empty: every held dead letter
    assert isinstance(response, consumer_pb2.PurgeDeadLettersResponse)
    assert (response.purged, response.remaining) == (2, 0)
    assert node.sm.consumers.dead_letters(b"s", 0, 10) == ([], False)
    assert not [key for key, _ in dump(node.storage) if key.startswith(CONSUMER_PREFIX + b"d/")]
    response = node.ok(_purge(node, "s"))
    assert isinstance(response, consumer_pb2.PurgeDeadLettersResponse)
    assert (response.purged, response.remaining) == (0, 0)
    # Sequences are never reused: the next dead letter is 4, so an old purge cannot hit it.
    node.settle(node.receive(n=1), action=consumer_pb2.DEAD_LETTER, reason="poison")
    letters, _ = node.sm.consumers.dead_letters(b"s", 0, 10)
    assert [(d.sequence, d.offset) for d in letters] == [(4, 4)]
    node.run(append("t", b"x"))
    response = node.ok(_purge(node, "t"))  # a session that never had a dead letter
    assert isinstance(response, consumer_pb2.PurgeDeadLettersResponse)
    assert (response.purged, response.remaining) == (0, 0)


def test_purge_of_all_takes_at_most_the_limit_per_call(node: Node) -> None:
    node.run(append("big", *[b"x"] * 1_005))
    node.group("h", max_deliveries=1)
    got = node.ok(consumer(receive=cc.ReceiveCommand(session="big", group="h",
                                                      max_messages=1_005)))
    assert isinstance(got, consumer_pb2.ReceiveResponse) and len(got.messages) == 1_005
    node.settle([(m.offset, m.delivery_count) for m in got.messages], session="big",
                group="h", action=consumer_pb2.DEAD_LETTER, reason="r")
    first = node.ok(_purge(node, "big"))
    assert isinstance(first, consumer_pb2.PurgeDeadLettersResponse)
    assert (first.purged, first.remaining) == (1_000, 5)
    second = node.ok(_purge(node, "big"))
    assert isinstance(second, consumer_pb2.PurgeDeadLettersResponse)
    assert (second.purged, second.remaining) == (5, 0)


def test_a_purge_is_carried_by_a_snapshot_and_applies_the_same_everywhere(
    node: Node, tmp_path: Path
) -> None:
    _dead_letter_all(node, 3)
    node.ok(_purge(node, "s", 1))
    other = Node(tmp_path / "b")
    try:
        with node.sm.export_state() as export:
            other.sm.import_state(list(export))
        other.index = other.sm.applied_index()
        letters, _ = other.sm.consumers.dead_letters(b"s", 0, 10)
        assert [d.sequence for d in letters] == [0, 2]
        assert other.sm.consumers.policy(b"s").dead_letters == 2
        for each in (node, other):
            response = each.ok(_purge(each, "s", 0))
            assert isinstance(response, consumer_pb2.PurgeDeadLettersResponse)
            assert (response.purged, response.remaining) == (1, 1)
        assert dump(other.storage) == dump(node.storage)
    finally:
        other.close()


def _group_status(node: Node, group: str = "g") -> consumer_pb2.GroupStatus:
    info = node.sm.describe("s")
    status = node.sm.consumers.status(b"s", info.first_offset, info.next_offset, node.now,
                                      node.sm.consumers.groups())
    return next(g for g in status.groups if g.group == group)


def _cursor(node: Node, group: str = "g") -> tuple[int, int, int]:
    """(next_offset, first_unsettled, backlog) of ``group`` on session "s"."""
    status = _group_status(node, group)
    return status.next_offset, status.first_unsettled, status.backlog


def test_group_status_reports_the_cursor_and_the_first_unsettled_offset(node: Node) -> None:
    assert _cursor(node) == (0, 0, 10)  # nothing received yet
    node.receive(n=4)
    assert _cursor(node) == (4, 0, 10)
    node.settle([(0, 1), (1, 1)])
    assert _cursor(node) == (4, 2, 8)
    node.settle([(3, 1)])  # settled out of order: 2 is still the first unsettled
    assert _cursor(node) == (4, 2, 7)
    node.settle([(2, 1)], action=consumer_pb2.ABANDON)  # pending until redelivered
    assert _cursor(node) == (4, 2, 7)
    assert node.receive(n=2) == [(2, 2), (4, 1)]
    node.settle([(2, 2), (4, 1)])
    assert _cursor(node) == (5, 5, 5)  # nothing pending: the cursor itself
    node.receive(n=1)
    node.settle([(5, 1)], action=consumer_pb2.DEAD_LETTER, reason="r")
    assert _cursor(node) == (6, 6, 4)  # a dead letter is settled for the group
    node.receive(n=1)
    node.settle([(6, 1)], action=consumer_pb2.DEFER)
    assert _cursor(node) == (7, 6, 4)  # a deferred message is not settled
    node.group("h")
    assert _cursor(node, "h") == (0, 0, 10)  # another group reads on its own
    node.run(commands_pb2.Command(trim=commands_pb2.TrimCommand(session="s", before_offset=8)))
    assert _cursor(node) == (8, 8, 2)  # the trimmed deferred message is gone
    assert _cursor(node, "h") == (8, 8, 2)  # a lagging cursor starts at the first retained


def test_receive_and_delete_is_at_most_once(node: Node) -> None:
    assert node.receive(n=3, delete=True) == [(0, 1), (1, 1), (2, 1)]
    node.now += 100_000
    assert node.receive(n=1) == [(3, 1)]


def test_leases_fencing_tokens_and_zombie_settle(node: Node) -> None:
    first = node.accept(who="a")
    assert first.token == 1
    got = node.receive(n=2, token=1)
    node.refused(consumer(accept=cc.AcceptCommand(session="s", group="g", consumer="b")),
                 ErrorCode.FAILED_PRECONDITION, "owned by consumer 'a'")
    node.refused(consumer(receive=cc.ReceiveCommand(session="s", group="g")),
                 ErrorCode.FAILED_PRECONDITION, "accept the session first")
    node.now += 5_001  # a's lease lapses
    second = node.accept(who="b")
    assert second.token == 2
    # The zombie's late settle, state write and renew are refused and change nothing.
    node.refused(node.settle_cmd(got, token=1), ErrorCode.FAILED_PRECONDITION, "stale")
    node.refused(consumer(set_state=cc.SetStateCommand(
        session="s", group="g", token=1, state=cc.StateWrite(data=b"x"))),
        ErrorCode.FAILED_PRECONDITION, "stale")
    node.refused(consumer(renew=cc.RenewCommand(session="s", group="g", token=1)),
                 ErrorCode.FAILED_PRECONDITION, "stale")
    # b gets a's unsettled messages first, in order, with their delivery counts.
    assert node.receive(n=3, token=2) == [(0, 2), (1, 2), (2, 1)]
    renewed = node.ok(consumer(renew=cc.RenewCommand(session="s", group="g", token=2,
                                                     lease_ms=9_000)))
    assert isinstance(renewed, consumer_pb2.Lease) and renewed.expires_ms == node.now + 9_000
    node.ok(consumer(release=cc.ReleaseCommand(session="s", group="g", token=2)))
    assert node.accept(who="c").token == 3  # a released session is handed over at once


def test_lapsed_lease_is_refused_with_its_own_message(node: Node) -> None:
    node.accept(who="a")
    node.now += 5_001
    node.refused(consumer(renew=cc.RenewCommand(session="s", group="g", token=1)),
                 ErrorCode.FAILED_PRECONDITION, "expired")
    node.refused(node.settle_cmd([], token=1), ErrorCode.FAILED_PRECONDITION, "expired")


def test_receive_reports_the_token_it_was_checked_against(node: Node) -> None:
    """After a lease was released, a receive outside any lease answers token 0, and settling
    with the token it answered is accepted (the latest token, 1, would be refused)."""
    node.ok(consumer(release=cc.ReleaseCommand(session="s", group="g",
                                                token=node.accept(who="a").token)))
    response = node.ok(consumer(receive=cc.ReceiveCommand(session="s", group="g",
                                                           max_messages=1)))
    assert isinstance(response, consumer_pb2.ReceiveResponse)
    assert response.token == 0 and [m.offset for m in response.messages] == [0]
    node.settle([(0, 1)], token=response.token)
    assert node.receive(n=1) == [(1, 1)]  # offset 0 was completed, not redelivered


def test_accept_next_available_skips_owned_and_drained_sessions(node: Node) -> None:
    node.run(append("t", b"x"), append("u", b"y"))
    lease = node.ok(consumer(accept=cc.AcceptCommand(group="g", consumer="a")))
    assert isinstance(lease, consumer_pb2.Lease) and lease.session == "s"
    lease = node.ok(consumer(accept=cc.AcceptCommand(group="g", consumer="b")))
    assert isinstance(lease, consumer_pb2.Lease) and lease.session == "t"
    token = lease.token
    node.settle(node.receive("t", n=5, token=token), session="t", token=token)  # drained
    lease = node.ok(consumer(accept=cc.AcceptCommand(group="g", consumer="c")))
    assert isinstance(lease, consumer_pb2.Lease) and lease.session == "u"
    lease = node.ok(consumer(accept=cc.AcceptCommand(group="g", consumer="d")))
    assert isinstance(lease, consumer_pb2.Lease) and lease.session == ""  # none available


def test_state_compare_and_set_atomic_with_settle(node: Node) -> None:
    got = node.receive(n=2)
    response = node.settle(got, state=cc.StateWrite(expected_version=0, data=b"v1"))
    assert isinstance(response, consumer_pb2.SettleResponse) and response.state_version == 1
    assert node.sm.consumers.state(b"s") == (1, b"v1")
    got = node.receive(n=1)
    node.refused(node.settle_cmd(got, state=cc.StateWrite(expected_version=0, data=b"v2")),
                 ErrorCode.FAILED_PRECONDITION, "version 1, not 0")
    node.refused(node.settle_cmd(got, state=cc.StateWrite(
        expected_version=1, data=b"x" * (MAX_STATE_BYTES + 1))),
        ErrorCode.RESOURCE_EXHAUSTED, "session state is")
    assert node.receive(n=1) == [(3, 1)]  # offset 2 is still locked: the settle changed nothing


def test_bad_inputs_get_precise_errors_and_change_nothing(node: Node) -> None:
    node.refused(consumer(receive=cc.ReceiveCommand(session="nope", group="g")),
                 ErrorCode.NOT_FOUND, "session 'nope' not found")
    node.refused(consumer(receive=cc.ReceiveCommand(session="s", group="zz")),
                 ErrorCode.NOT_FOUND, "group 'zz' not found")
    node.refused(consumer(receive=cc.ReceiveCommand(session="s", group="")),
                 ErrorCode.INVALID_ARGUMENT, "group is empty")
    got = node.receive(n=1)
    node.refused(node.settle_cmd([(5, 1)]), ErrorCode.FAILED_PRECONDITION, "holds no lock")
    node.refused(node.settle_cmd([got[0], got[0]]), ErrorCode.INVALID_ARGUMENT, "twice")
    node.now += 10_001
    node.refused(node.settle_cmd(got), ErrorCode.FAILED_PRECONDITION, "expired")
    node.refused(node.settle_cmd(got, token=7), ErrorCode.FAILED_PRECONDITION, "stale")


def test_delete_session_removes_consumer_keys_and_snapshot_carries_them(
    node: Node, tmp_path: Path
) -> None:
    node.receive(n=2)
    node.settle([(0, 1)], action=consumer_pb2.DEAD_LETTER, reason="r")
    other = Node(tmp_path / "b")
    try:
        with node.sm.export_state() as export:
            other.sm.import_state(list(export))
        assert dump(other.storage) == dump(node.storage)
        assert any(key.startswith(CONSUMER_PREFIX + b"d/") for key, _ in dump(other.storage))
        node.ok(consumer(close=cc.CloseSessionCommand(session="s")))
        fresh = Node(tmp_path / "c")  # no policy record yet: the append hook skips its read
        try:
            with node.sm.export_state() as export:
                fresh.sm.import_state(list(export))
            fresh.index = fresh.sm.applied_index()
            (refused,) = fresh.run(append("s", b"late"))
            assert isinstance(refused, CommandError) and "closed" in refused.message
        finally:
            fresh.close()
    finally:
        other.close()
    node.run(commands_pb2.Command(delete_session=commands_pb2.DeleteSessionCommand(session="s")))
    left = [key for key, _ in dump(node.storage) if key.startswith(b"C/")]
    assert all(not key.startswith((b"C/c/", b"C/d/", b"C/m/", b"C/x/")) for key in left), left


def test_same_entries_give_the_same_bytes(tmp_path: Path) -> None:
    nodes = [Node(tmp_path / name) for name in ("x", "y")]
    try:
        for each in nodes:
            each.run(append("s", b"a", b"b", b"c"))
            each.group()
            each.accept()
            each.receive(n=2, token=1)
            each.now += 20_000
            each.accept(who="b")
        assert dump(nodes[0].storage) == dump(nodes[1].storage)
    finally:
        for each in nodes:
            each.close()


def test_ttl_retention_and_close(node: Node) -> None:
    node.ok(consumer(configure=cc.ConfigureSessionCommand(session="s", retention_bytes=6)))
    assert node.sm.consumers.has_policies()
    node.ok(consumer(sweep=cc.SweepCommand()))
    assert node.sm.describe("s").first_offset == 7  # 3 messages of 2 bytes kept
    node.run(append("t", b"old"))
    node.ok(consumer(configure=cc.ConfigureSessionCommand(session="t", message_ttl_ms=1_000,
                                                          retention_ms=5_000)))
    node.now += 2_000
    node.run(append("t", b"new"))
    assert node.receive("t", n=5) == [(1, 1)]  # offset 0 outlived its TTL: never delivered
    node.now += 4_000
    node.ok(consumer(sweep=cc.SweepCommand()))
    assert node.sm.describe("t").first_offset == 1  # offset 0 retained only 5 s
    node.ok(consumer(configure=cc.ConfigureSessionCommand(session="t", session_ttl_ms=1_000)))
    node.now += 1_000
    node.ok(consumer(sweep=cc.SweepCommand()))
    assert [info.session for info in node.sm.list_sessions().sessions] == ["s"]
    node.ok(consumer(close=cc.CloseSessionCommand(session="s")))
    (result,) = node.run(append("s", b"late"))
    assert isinstance(result, CommandError) and result.code == ErrorCode.FAILED_PRECONDITION
    (result,) = node.run(append("fresh", b"ok"))
    assert isinstance(result, AppendResult)


def test_receive_is_bounded_by_bytes_but_delivers_at_least_one(node: Node) -> None:
    node.run(append("big", *[bytes(10) for _ in range(6)]))

    def receive(max_bytes: int) -> list[int]:
        response = node.ok(consumer(receive=cc.ReceiveCommand(
            session="big", group="g", max_messages=10, max_bytes=max_bytes)))
        assert isinstance(response, consumer_pb2.ReceiveResponse)
        return [m.offset for m in response.messages]

    assert receive(25) == [0, 1]
    assert receive(5) == [2]  # one message alone may exceed max_bytes
    node.now += 10_001  # 0, 1, 2 expire: redeliveries are bounded by bytes too
    assert receive(25) == [0, 1]
    assert receive(35) == [2, 3, 4]


def _random_command(rng: random.Random) -> commands_pb2.Command:
    session = rng.choice(["a", "b", "c"])
    group = rng.choice(["g", "h"])
    choice = rng.randrange(12)
    if choice <= 2:
        return append(session, *[b"%d" % rng.randrange(100) for _ in range(rng.randint(1, 3))])
    if choice == 3:
        return consumer(receive=cc.ReceiveCommand(
            session=session, group=group, max_messages=rng.randint(1, 4),
            token=rng.choice([0, 0, 1, 2]), max_bytes=rng.choice([0, 2])))
    if choice == 4:
        return consumer(settle=cc.SettleCommand(
            session=session, group=group, token=rng.choice([0, 1]),
            settlements=[cc.Settlement(offset=rng.randrange(6), delivery_count=rng.randint(1, 2),
                                       action=rng.randrange(3), delay_ms=rng.choice([0, 50]))],
            state=rng.choice([None, cc.StateWrite(expected_version=rng.randrange(2), data=b"s")])))
    if choice == 5:
        return consumer(accept=cc.AcceptCommand(
            session=rng.choice(["", session]), group=group, consumer=rng.choice(["x", "y"]),
            lease_ms=rng.choice([50, 500])))
    if choice == 6:
        return consumer(configure=cc.ConfigureSessionCommand(
            session=session, session_ttl_ms=rng.choice([0, 400]),
            message_ttl_ms=rng.choice([0, 100]), retention_ms=rng.choice([0, 200]),
            retention_bytes=rng.choice([0, 3])))
    if choice == 7:
        return consumer(sweep=cc.SweepCommand())
    if choice == 8:
        return commands_pb2.Command(
            delete_session=commands_pb2.DeleteSessionCommand(session=session))
    if choice == 9:
        return consumer(resubmit=cc.ResubmitCommand(session=session))
    if choice == 10:
        return consumer(close=cc.CloseSessionCommand(session=session))
    return consumer(release=cc.ReleaseCommand(session=session, group=group, token=1))


def _grouping_command(rng: random.Random) -> commands_pb2.Command:
    """``_random_command`` or, now and then, a purge (kept out of ``_random_command``: the
    pinned bytes below are taken with its exact random sequence)."""
    if rng.randrange(14) == 0:
        session = rng.choice(["a", "b", "c"])
        return consumer(purge=cc.PurgeCommand(
            session=session, sequences=rng.choice([[], [0], [1, 2]])))
    return _random_command(rng)


@pytest.mark.parametrize("seed", range(12))
def test_results_and_bytes_do_not_depend_on_how_entries_are_grouped(
    tmp_path: Path, seed: int
) -> None:
    """The leader applies entries one call at a time, a catching-up follower many per call:
    every command must see the same state either way (reads inside a call see its writes)."""
    rng = random.Random(seed)
    entries = []
    now = 1_000_000
    for index in range(1, 121):
        now += rng.choice([0, 10, 60, 300])
        commands = [_grouping_command(rng) for _ in range(rng.randint(1, 3))]
        if index <= 2:
            commands = [consumer(create_group=cc.CreateGroupCommand(
                group="g" if index == 1 else "h", lock_ms=100, max_deliveries=2))]
        data = commands_pb2.CommandBatch(leader_time_ms=now, commands=commands)
        entries.append(Entry(1, index, data.SerializeToString()))
    one, many = Node(tmp_path / "one"), Node(tmp_path / "many")
    try:
        singly = [one.sm.apply([entry])[0] for entry in entries]
        grouped = []
        position = 0
        while position < len(entries):
            size = rng.randint(1, 25)
            grouped += many.sm.apply(entries[position : position + size])
            position += size
        assert [r.results for r in singly] == [r.results for r in grouped]
        assert dump(one.storage) == dump(many.storage)
    finally:
        one.close()
        many.close()


# Taken with the consumer state as it was before it was split into one module per concern
# (issue 18): the ``C/`` bytes are the replicated format. Changed deliberately by issue 20
# (envelopes): a dead letter keeps its message's append time (and envelope, when it has one).
PINNED_CONSUMER_STATE = "10cc6b0f4496d20a294225c6608071328291a1250a1f56648f3ba761de63c243"


def test_the_consumer_bytes_are_pinned(node: Node) -> None:
    """Every ``C/`` sub-prefix written by a fixed script, then random commands."""
    node.run(append("t", b"t0", b"t1"))
    node.ok(consumer(configure=cc.ConfigureSessionCommand(
        session="t", retention_ms=1_000_000, message_ttl_ms=500_000)))
    node.run(append("t", b"t2"))
    lease = node.accept()
    got = node.receive(n=4, token=lease.token)
    node.settle([got[0]], token=lease.token, state=cc.StateWrite(expected_version=0, data=b"v"))
    node.settle([got[1]], action=consumer_pb2.DEAD_LETTER, token=lease.token, reason="poison")
    node.settle([got[2]], action=consumer_pb2.ABANDON, token=lease.token, delay_ms=100)
    node.ok(consumer(accept=cc.AcceptCommand(group="g", consumer="b", lease_ms=1_000)))
    rng = random.Random(7)
    node.group("h", lock_ms=100, max_deliveries=2)
    for _ in range(100):
        node.now += rng.choice([0, 10, 60, 300])
        node.run(*[_random_command(rng) for _ in range(rng.randint(1, 3))])
    pairs = [(key, value) for key, value in dump(node.storage) if key.startswith(CONSUMER_PREFIX)]
    assert {key[:4] for key, _ in pairs} >= {
        b"C/cl", b"C/po", b"C/sw", b"C/g/", b"C/r/", b"C/c/", b"C/m/", b"C/d/", b"C/x/", b"C/t/"
    }
    assert hashlib.sha256(repr(pairs).encode()).hexdigest() == PINNED_CONSUMER_STATE


def test_lease_holder_gets_its_lost_deliveries_again_in_order(node: Node) -> None:
    node.accept(who="a")
    assert node.receive(n=2, token=1) == [(0, 1), (1, 1)]  # suppose this answer was lost
    response = node.ok(consumer(receive=cc.ReceiveCommand(
        session="s", group="g", max_messages=3, token=1, redeliver_own=True)))
    assert isinstance(response, consumer_pb2.ReceiveResponse)
    assert [(m.offset, m.delivery_count) for m in response.messages] == [(0, 2), (1, 2), (2, 1)]
    # Without the flag the holder's locked messages stay with it: only new ones come.
    response = node.ok(consumer(receive=cc.ReceiveCommand(
        session="s", group="g", max_messages=1, token=1)))
    assert isinstance(response, consumer_pb2.ReceiveResponse)
    assert [m.offset for m in response.messages] == [3]
