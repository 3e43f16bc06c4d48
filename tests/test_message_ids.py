"""Duplicate detection by ``message_id`` in the session state machine (issue 20, part 2): a
remembered id answers with the original offset and writes nothing, within the session's
window and not after it; ids repeated inside one append; a producer retry of an append with
duplicates answers as the first try; pruning; delete forgets; snapshots carry the ids; the
bytes never depend on how entries were grouped into apply calls."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from state_helpers import dump

from quorumlog.node.common.limits import Limits
from quorumlog.node.state.consumer_records import ID_PREFIX, ID_TIME_PREFIX
from quorumlog.node.state.message_ids import DEFAULT_DUPLICATE_WINDOW_MS
from quorumlog.node.state.state_machine import AppendResult, SessionStateMachine
from quorumlog.node.storage.raft_store import RocksStorage
from quorumlog.proto import commands_pb2, consumer_commands_pb2, envelope_pb2
from quorumlog.raft.types import Entry


def append(session: str, *ids: str | None, producer: str = "", sequence: int = 0
           ) -> commands_pb2.Command:
    """An append of one message per id (payload ``m-<id>``; None: no envelope)."""
    messages = [f"m-{message_id}".encode() for message_id in ids]
    envelopes = [
        b"" if message_id is None
        else envelope_pb2.Envelope(message_id=message_id).SerializeToString()
        for message_id in ids
    ]
    return commands_pb2.Command(append=commands_pb2.AppendCommand(
        session=session, messages=messages, envelopes=envelopes, producer_id=producer,
        sequence=sequence,
    ))


def window(session: str, milliseconds: int) -> commands_pb2.Command:
    return commands_pb2.Command(consumer=consumer_commands_pb2.ConsumerCommand(
        configure=consumer_commands_pb2.ConfigureSessionCommand(
            session=session, duplicate_window_ms=milliseconds)))


def delete(session: str) -> commands_pb2.Command:
    return commands_pb2.Command(delete_session=commands_pb2.DeleteSessionCommand(session=session))


def entry(index: int, commands: Sequence[commands_pb2.Command], now: int) -> Entry:
    batch = commands_pb2.CommandBatch(leader_time_ms=now, commands=list(commands))
    return Entry(1, index, batch.SerializeToString())


class Machine:
    def __init__(self, path: Path) -> None:
        self.storage = RocksStorage(path)
        self.sm = SessionStateMachine(self.storage, Limits())
        self.index = 0

    def run(self, *commands: commands_pb2.Command, now: int = 1_000_000) -> list[object]:
        self.index += 1
        (result,) = self.sm.apply([entry(self.index, commands, now)])
        return list(result.results)

    def one(self, command: commands_pb2.Command, now: int = 1_000_000) -> AppendResult:
        (result,) = self.run(command, now=now)
        assert isinstance(result, AppendResult), result
        return result

    def data(self, session: str) -> list[bytes]:
        return [record.data for record in self.sm.read(session, 0).records]

    def keys(self, prefix: bytes) -> list[bytes]:
        iterator = self.storage.db.iter()
        iterator.seek(prefix)
        found = []
        while iterator.valid() and iterator.key().startswith(prefix):
            found.append(iterator.key())
            iterator.next()
        return found

    def dump(self) -> list[tuple[bytes, bytes]]:
        return dump(self.storage)


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    created = Machine(tmp_path / "a")
    yield created
    created.storage.close()


def test_a_remembered_id_answers_with_the_original_offset_and_writes_nothing(
    machine: Machine,
) -> None:
    assert machine.one(append("s", "a", None)) == AppendResult("s", 0, 2, False)
    again = machine.one(append("s", "a"))
    assert (again.first_offset, again.count, again.duplicate) == (1 + 1, 0, True)
    assert (again.offsets, again.duplicate_positions) == ([0], [0])
    mixed = machine.one(append("s", "b", None, "a", "b"))
    # b is new (offset 2), the id-less message is new (3), a and the second b are duplicates
    assert (mixed.first_offset, mixed.count, mixed.duplicate) == (2, 2, False)
    assert (mixed.offsets, mixed.duplicate_positions) == ([2, 3, 0, 2], [2, 3])
    assert machine.data("s") == [b"m-a", b"m-None", b"m-b", b"m-None"]


def test_the_window_decides_and_expired_ids_are_pruned(machine: Machine) -> None:
    t = 5_000_000
    machine.one(append("w", None), now=t)
    machine.run(window("w", 2_000), now=t)
    machine.one(append("w", "x"), now=t)  # offset 1
    assert machine.one(append("w", "x"), now=t + 1_999).duplicate_positions == [0]
    fresh = machine.one(append("w", "x"), now=t + 2_000)  # the window has passed
    assert (fresh.first_offset, fresh.count, fresh.offsets) == (2, 1, None)
    assert machine.one(append("w", "x"), now=t + 3_000).offsets == [2]  # remembered anew
    # y is recorded, then both expire; an append a second later prunes them
    machine.one(append("w", "y"), now=t + 3_000)
    assert len(machine.keys(ID_PREFIX)) == len(machine.keys(ID_TIME_PREFIX)) == 2
    machine.one(append("w", None), now=t + 6_000)
    assert machine.keys(ID_PREFIX) == machine.keys(ID_TIME_PREFIX) == []


def test_the_default_window_is_ten_minutes(machine: Machine) -> None:
    t = 9_000_000
    machine.one(append("d", "z"), now=t)
    assert machine.one(append("d", "z"), now=t + DEFAULT_DUPLICATE_WINDOW_MS - 1).offsets == [0]
    assert machine.one(append("d", "z"), now=t + DEFAULT_DUPLICATE_WINDOW_MS).offsets is None


def test_a_producer_retry_of_an_append_with_duplicates_answers_as_the_first_try(
    machine: Machine,
) -> None:
    machine.one(append("p", "a"))
    first = machine.one(append("p", "b", "a", None, producer="prod", sequence=0))
    assert (first.first_offset, first.count, first.offsets) == (1, 2, [1, 0, 2])
    retry = machine.one(append("p", "b", "a", None, producer="prod", sequence=0))
    assert retry.duplicate
    assert (retry.first_offset, retry.count, retry.offsets, retry.duplicate_positions) == (
        1, 2, [1, 0, 2], [1])
    assert machine.data("p") == [b"m-a", b"m-b", b"m-None"]


def test_delete_forgets_the_ids_and_a_resubmit_is_not_judged(machine: Machine) -> None:
    machine.one(append("del", "a"))
    machine.run(delete("del"))
    assert machine.keys(ID_PREFIX) == []
    assert machine.one(append("del", "a")).offsets is None  # a new session, a new message
    assert machine.data("del") == [b"m-a"]


def test_snapshots_carry_the_ids(machine: Machine, tmp_path: Path) -> None:
    machine.one(append("snap", "a", "b"))
    other = Machine(tmp_path / "b")
    try:
        other.sm.import_state(iter(list(machine.sm.export_state(1024))))
        other.index = machine.index
        assert other.one(append("snap", "b")).offsets == [1]
    finally:
        other.storage.close()


def test_the_bytes_do_not_depend_on_how_entries_were_grouped(
    machine: Machine, tmp_path: Path
) -> None:
    t = 7_000_000
    entries = [
        entry(1, [window("g", 1_000)], t),  # no such session yet: refused, changes nothing
        entry(2, [append("g", "a", "b")], t),
        entry(3, [window("g", 1_000), append("g", "a")], t + 10),
        entry(4, [append("g", "c", "a"), append("g", "c")], t + 900),
        entry(5, [append("g", None)], t + 2_500),  # prunes a, b and c
        entry(6, [append("g", "a", "a"), delete("g"), append("g", "a")], t + 2_600),
        entry(7, [append("g", "a", None)], t + 2_700),
    ]
    machine.sm.apply(entries)  # all in one call (a follower catching up)
    other = Machine(tmp_path / "b")
    try:
        results = [other.sm.apply([one])[0] for one in entries]  # one call each (the leader)
        assert machine.dump() == other.dump()
        fourth = results[3].results
        assert [r.offsets for r in fourth] == [[2, 0], [2]]  # type: ignore[union-attr]
    finally:
        other.storage.close()


def test_pruning_reads_the_time_index_page_by_page(machine: Machine) -> None:
    t = 20_000_000
    machine.one(append("many", None), now=t)
    machine.run(window("many", 2_000), now=t)
    for batch in range(6):  # 600 ids: more than two pages of the time index
        machine.one(append("many", *[f"id-{batch}-{i}" for i in range(100)]), now=t + batch)
    machine.one(append("many", "fresh"), now=t + 1_500)  # a new second: prunes, none expired
    assert len(machine.keys(ID_PREFIX)) == len(machine.keys(ID_TIME_PREFIX)) == 601
    machine.one(append("many", None), now=t + 2_200)  # the 600 expired, "fresh" not yet
    assert machine.keys(ID_PREFIX) == [ID_PREFIX + b"\x00\x04many" + b"fresh"]
    assert len(machine.keys(ID_TIME_PREFIX)) == 1
