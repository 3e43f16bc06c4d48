"""Membership and backup pieces without processes: the checks that decide a refusal (every
case names the precise status), member records kept by the state machine as membership
change entries apply (and carried by its snapshot stream), re-applying membership changes
after a restart, and the backup file format's round trip and integrity check."""

from __future__ import annotations

from pathlib import Path

import pytest

from quorumlog.node.replication import membership
from quorumlog.node.replication.membership import MembershipError
from quorumlog.node.state.state_machine import SessionStateMachine
from quorumlog.node.storage.backup_file import BackupError, BackupHeader, backup_chunks, read_backup
from quorumlog.node.storage.raft_store import RocksStorage
from quorumlog.proto import commands_pb2
from quorumlog.raft import Config, RawNode
from quorumlog.raft.types import ConfChange, ConfChangeType, ConfState, Entry, EntryType

CONF = ConfState(voters=(1, 2, 3), learners=(4,))


def record(name: str, peer: str, client: str = "", learner: bool = False) -> (
    commands_pb2.MemberAddress
):
    return commands_pb2.MemberAddress(
        name=name, peer_address=peer, client_address=client, learner=learner
    )


RECORDS = {
    1: record("n1", "h1:7101", "h1:7001"),
    2: record("n2", "h2:7101", "h2:7001"),
    3: record("n3", "h3:7101"),
    4: record("n4", "h4:7101", "h4:7001", learner=True),
}


def refusal(call: object, *args: object) -> MembershipError:
    with pytest.raises(MembershipError) as raised:
        call(*args)  # type: ignore[operator]
    return raised.value


def test_add_checks() -> None:
    assert membership.check_add(CONF, RECORDS, "n5", "h5:7101", "h5:7001") is True
    # The same learner at the same addresses: promote it (a retried add-node).
    assert membership.check_add(CONF, RECORDS, "n4", "h4:7101", "h4:7001") is False
    # A voter at exactly these addresses: nothing to change (the client gave up on an
    # add-node that had succeeded, and asked again).
    assert membership.check_add(CONF, RECORDS, "n2", "h2:7101", "h2:7001") is None
    cases = [
        (("n2", "h9:7101", "h9:7001"), "ALREADY_EXISTS", "n2 is already a voter"),
        (("n4", "h9:7101", "h9:7001"), "ALREADY_EXISTS", "n4 is already a learner at h4:7101"),
        (("n5", "h1:7101", "h5:7001"), "ALREADY_EXISTS", "h1:7101 is already used by n1"),
        (("n5", "h5:7101", "h2:7001"), "ALREADY_EXISTS", "h2:7001 is already used by n2"),
        (("bad name", "h5:7101", "h5:7001"), "INVALID_ARGUMENT", "invalid node name"),
        (("n5", "nowhere", "h5:7001"), "INVALID_ARGUMENT", "--peer-addr"),
        (("n5", "h5:7101", "h5:7101"), "INVALID_ARGUMENT", "must differ"),
    ]
    for args, code, fragment in cases:
        error = refusal(membership.check_add, CONF, RECORDS, *args)
        assert error.code.value == code and fragment in error.message, (args, error.message)


def test_remove_and_transfer_checks() -> None:
    assert membership.check_remove(CONF, RECORDS, "n4") == 4
    assert membership.check_transfer(CONF, RECORDS, "n2") == 2
    error = refusal(membership.check_remove, CONF, RECORDS, "n9")
    assert (error.code.value, error.message) == (
        "NOT_FOUND", "n9 is not a member (members: n1, n2, n3, n4)"
    )
    error = refusal(membership.check_remove, ConfState(voters=(1,)), RECORDS, "n1")
    assert error.code.value == "FAILED_PRECONDITION" and "last voter" in error.message
    error = refusal(membership.check_transfer, CONF, RECORDS, "n4")
    assert error.code.value == "FAILED_PRECONDITION" and "n4 is a learner" in error.message
    assert refusal(membership.check_transfer, CONF, RECORDS, "n7").code.value == "NOT_FOUND"


def conf_entry(index: int, change_type: ConfChangeType, node_id: int, context: bytes = b"") -> (
    Entry
):
    change = ConfChange(change_type, node_id, context)
    return Entry(1, index, change.encode(), EntryType.CONF_CHANGE)


def test_state_machine_keeps_member_records_and_exports_them(tmp_path: Path) -> None:
    with RocksStorage(tmp_path / "a") as storage:
        machine = SessionStateMachine(storage)
        machine.seed_members(membership.records_from_peers({"n1": "h1:7101"}, (1,)))
        context = membership.encode_context("n2", "h2:7101", "h2:7001")
        machine.apply([conf_entry(2, ConfChangeType.ADD_LEARNER, 2, context)])
        assert machine.members()[2].learner is True
        machine.apply([conf_entry(3, ConfChangeType.ADD_NODE, 2)])  # keeps the addresses
        members = machine.members()
        assert (members[2].peer_address, members[2].client_address, members[2].learner) == (
            "h2:7101", "h2:7001", False
        )
        assert membership.address_book(members, {})[2] == membership.Address(
            "n2", "h2:7101", "h2:7001"
        )
        with machine.export_state() as export:
            chunks = list(export)
    with RocksStorage(tmp_path / "b") as storage:
        copy = SessionStateMachine(storage)
        copy.import_state(chunks)
        assert copy.members() == members
        copy.apply([conf_entry(4, ConfChangeType.REMOVE_NODE, 2)])
        assert set(copy.members()) == {1}


def test_restart_replays_membership_changes_the_snapshot_does_not_hold(tmp_path: Path) -> None:
    with RocksStorage(tmp_path / "db") as storage:
        storage.bootstrap((1,))
        storage.append([
            Entry(1, 2, b""),
            conf_entry(3, ConfChangeType.ADD_LEARNER, 2),
            conf_entry(4, ConfChangeType.ADD_NODE, 2),
        ])
        raw = RawNode(Config(id=1, rng=_Rng(), applied=1), storage)
        assert raw.raft.conf_state() == ConfState(voters=(1,))
        assert membership.replay_conf_changes(raw, storage, 1, 4) == 2
        assert raw.raft.conf_state() == ConfState(voters=(1, 2))


class _Rng:
    def randrange(self, stop: int, /) -> int:
        return 0


def test_backup_file_round_trip_and_damage(tmp_path: Path) -> None:
    header = BackupHeader(42, 1, 1_700_000_000_000, "n1", {"n1": "h1:7101"})
    path = tmp_path / "b"
    path.write_bytes(b"".join(backup_chunks(header, [b"H-chunk", b"D-chunk" * 100, b"E"])))
    read_header, chunks = read_backup(path)
    assert read_header == header
    assert list(chunks) == [b"H-chunk", b"D-chunk" * 100, b"E"]
    data = bytearray(path.read_bytes())
    data[20] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="damaged"):
        read_backup(path)
    path.write_bytes(b"nope" * 20)
    with pytest.raises(BackupError, match="not a quorumlog backup"):
        read_backup(path)
