"""Cluster membership seen from one node: who the members are and how to reach them.

Owns: the ``ConfChange`` context format (a ``commands.MemberAddress``), deciding whether an
add / remove / transfer request may go ahead given the current configuration and member
records (the precise refusal — ALREADY_EXISTS, NOT_FOUND, FAILED_PRECONDITION,
INVALID_ARGUMENT — and nothing proposed), the address book a node dials (member records,
else the founding ``--peers``), and re-applying, after a restart, the membership changes of
log entries the state machine had already applied. Must never: change membership itself
(only committed Raft entries do), do network I/O, or touch the Raft core outside the owning
task (``replay_conf_changes`` runs before the loop starts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from quorumlog.node.common.config import ConfigError, parse_address, raft_id, valid_name
from quorumlog.node.common.limits import ErrorCode, InvalidInput
from quorumlog.node.storage.log_store import LogStore
from quorumlog.proto import commands_pb2
from quorumlog.raft import RawNode
from quorumlog.raft.types import ConfChange, ConfChangeType, ConfState, EntryType, NodeId

_REPLAY_CHUNK = 1024  # entries read at a time while replaying (bounded memory)


class MembershipError(InvalidInput):
    """A refused membership request (``code``, ``message``); nothing was changed."""


@dataclass(frozen=True, slots=True)
class Address:
    """Where a member listens: its name, peer (Raft) address and client address."""

    name: str
    peer_address: str
    client_address: str = ""


def encode_context(name: str, peer_address: str, client_address: str) -> bytes:
    return commands_pb2.MemberAddress(
        name=name, peer_address=peer_address, client_address=client_address
    ).SerializeToString()


def records_from_peers(
    peers: Mapping[str, str], members: tuple[NodeId, ...]
) -> dict[NodeId, commands_pb2.MemberAddress]:
    """Founding member records: every configured member's name and peer address."""
    return {
        raft_id(name): commands_pb2.MemberAddress(name=name, peer_address=address)
        for name, address in peers.items()
        if raft_id(name) in members
    }


def address_book(
    records: Mapping[NodeId, commands_pb2.MemberAddress], seeds: Mapping[str, str]
) -> dict[NodeId, Address]:
    """Who to dial: the replicated records when there are any (they are the whole
    membership), else the ``--peers`` seeds (a joining node before it has any state)."""
    if records:
        return {
            node_id: Address(record.name, record.peer_address, record.client_address)
            for node_id, record in records.items()
        }
    return {raft_id(name): Address(name, address) for name, address in seeds.items()}


def _member_named(
    records: Mapping[NodeId, commands_pb2.MemberAddress], name: str, conf: ConfState
) -> NodeId:
    node_id = raft_id(name)
    if node_id not in conf.all_ids():
        members = ", ".join(
            sorted(records[i].name if i in records else f"id {i}" for i in conf.all_ids())
        )
        raise MembershipError(ErrorCode.NOT_FOUND, f"{name} is not a member (members: {members})")
    return node_id


def check_add(
    conf: ConfState,
    records: Mapping[NodeId, commands_pb2.MemberAddress],
    name: str,
    peer_address: str,
    client_address: str,
) -> bool | None:
    """May ``name`` be added at these addresses? True: it is new (add it as a learner);
    False: it is already a learner at exactly these addresses (promote it); None: it is
    already a voter at exactly these addresses (nothing to change: a retried add-node whose
    first attempt the client gave up on after it had succeeded)."""
    if not valid_name(name):
        raise MembershipError(ErrorCode.INVALID_ARGUMENT, f"invalid node name {name!r}")
    for flag, address in (("--peer-addr", peer_address), ("--client-addr", client_address)):
        try:
            parse_address(address, flag)
        except ConfigError as error:
            raise MembershipError(ErrorCode.INVALID_ARGUMENT, str(error)) from None
    if peer_address == client_address:
        raise MembershipError(
            ErrorCode.INVALID_ARGUMENT,
            f"peer and client address must differ, both are {peer_address}",
        )
    node_id = raft_id(name)
    record = records.get(node_id)
    if node_id in conf.learners and record is not None and (
        record.peer_address == peer_address
        and record.client_address in ("", client_address)
    ):
        return False
    if node_id in conf.voters and record is not None and (
        record.peer_address == peer_address and record.client_address == client_address
    ):
        return None
    if node_id in conf.voters:
        raise MembershipError(ErrorCode.ALREADY_EXISTS, f"{name} is already a voter")
    if node_id in conf.learners:
        where = record.peer_address if record is not None else "another address"
        raise MembershipError(
            ErrorCode.ALREADY_EXISTS, f"{name} is already a learner at {where}; remove it first"
        )
    for other_id, other in records.items():
        if other_id == node_id:
            continue
        taken = {other.peer_address, other.client_address} - {""}
        for address in (peer_address, client_address):
            if address in taken:
                raise MembershipError(
                    ErrorCode.ALREADY_EXISTS, f"address {address} is already used by {other.name}"
                )
    return True


def check_remove(
    conf: ConfState, records: Mapping[NodeId, commands_pb2.MemberAddress], name: str
) -> NodeId:
    node_id = _member_named(records, name, conf)
    if set(conf.voters) == {node_id}:
        raise MembershipError(
            ErrorCode.FAILED_PRECONDITION, f"{name} is the last voter; a cluster needs one"
        )
    return node_id


def check_transfer(
    conf: ConfState, records: Mapping[NodeId, commands_pb2.MemberAddress], name: str
) -> NodeId:
    node_id = _member_named(records, name, conf)
    if node_id in conf.learners:
        raise MembershipError(
            ErrorCode.FAILED_PRECONDITION, f"{name} is a learner; only a voter can lead"
        )
    return node_id


def replay_conf_changes(raw: RawNode, storage: LogStore, after: int, upto: int) -> int:
    """Re-apply the membership changes of entries ``after+1 .. upto`` to the Raft core.

    The core starts from the snapshot's configuration; entries the state machine had
    already applied are not delivered again, so their changes would otherwise be lost on a
    restart. Returns how many changes were re-applied. Call before the loop starts."""
    replayed = 0
    index = after + 1
    while index <= upto:
        chunk = storage.entries(index, min(upto + 1, index + _REPLAY_CHUNK))
        if not chunk:
            break
        for entry in chunk:
            if entry.type == EntryType.CONF_CHANGE:
                raw.raft.apply_conf_change(ConfChange.decode(entry.data))
                replayed += 1
        index = chunk[-1].index + 1
    return replayed


__all__ = [
    "Address",
    "ConfChange",
    "ConfChangeType",
    "MembershipError",
    "address_book",
    "check_add",
    "check_remove",
    "check_transfer",
    "encode_context",
    "records_from_peers",
    "replay_conf_changes",
]
