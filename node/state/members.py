"""Member records: each cluster member's name and addresses, kept in step with membership
changes.

Owns: the ``n/`` keys (``n/<node id >Q>`` -> ``commands.MemberAddress``: name, peer and client
address, learner flag); applying a committed membership change entry to them (its context is
the address); seeding them for a founded cluster or a restore. Must never: read anything
node-local while applying (a malformed context changes no record, on every node alike), or be
seeded while entries are being applied.

The founding members' records are seeded from ``--peers`` (``seed``), so every member has one;
a record is written when a membership change entry applies and removed with the member.
"""

from __future__ import annotations

import rocksdict

from quorumlog.node.state.keys import MEMBER_PREFIX, U64, successor
from quorumlog.proto import commands_pb2
from quorumlog.raft.types import ConfChange, ConfChangeType, NodeId


def member_key(node_id: NodeId) -> bytes:
    return MEMBER_PREFIX + U64.pack(node_id)


def apply_conf_change(db: rocksdict.Rdict, raw: rocksdict.WriteBatch, data: bytes) -> None:
    """Keep the member records in step with a committed membership change (into ``raw``)."""
    try:
        change = ConfChange.decode(data)
        address = commands_pb2.MemberAddress.FromString(change.context)
    except Exception:  # a malformed context changes no record; every node agrees
        return
    key = member_key(change.node_id)
    if change.type == ConfChangeType.REMOVE_NODE:
        raw.delete(key)
        return
    if not address.peer_address:
        # A promotion (or demotion) without a context keeps the recorded addresses.
        value = db.get(key)
        if value is not None:
            address = commands_pb2.MemberAddress.FromString(value)
    address.learner = change.type == ConfChangeType.ADD_LEARNER
    raw.put(key, address.SerializeToString())


def stored_members(db: rocksdict.Rdict) -> dict[NodeId, commands_pb2.MemberAddress]:
    """Every member's record, as of the applied index (a handful of keys)."""
    options = rocksdict.ReadOptions()
    options.set_iterate_upper_bound(successor(MEMBER_PREFIX))
    iterator = db.iter(options)
    iterator.seek(MEMBER_PREFIX)
    records: dict[NodeId, commands_pb2.MemberAddress] = {}
    while iterator.valid():
        key: bytes = iterator.key()
        node_id: NodeId = U64.unpack_from(key, len(MEMBER_PREFIX))[0]
        records[node_id] = commands_pb2.MemberAddress.FromString(iterator.value())
        iterator.next()
    iterator.status()  # an iteration that stopped on damaged data raises here
    return records


def seed(
    db: rocksdict.Rdict,
    records: dict[NodeId, commands_pb2.MemberAddress],
    write_options: rocksdict.WriteOptions,
    raw: rocksdict.WriteBatch,
) -> None:
    """Replace every member record with ``records`` in one write (``raw``: an empty batch
    of the group's keys)."""
    raw.delete_range(MEMBER_PREFIX, successor(MEMBER_PREFIX))
    for node_id, record in sorted(records.items()):
        raw.put(member_key(node_id), record.SerializeToString())
    db.write(raw, write_options)
