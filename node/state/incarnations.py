"""Admitted incarnations: which data directory each replica of this group is known by.

Owns: the ``I/`` keys (``I/<node id >Q>`` -> ``>Q`` incarnation), applying an
``AdmitIncarnationCommand`` to them, and reading them. A replica's incarnation is the random id
its database was made with (``quorumlog.node.storage.raft_store``, ``m/incarnation``); a replica
whose disk was wiped or replaced comes back with another one and an empty log, having
forgotten every vote it cast and every entry it acknowledged. Votes from an incarnation other
than the admitted one are not counted by any node (``quorumlog.node.replication.incarnations``)
until the group's leader, having seen it catch up, admits the new one through the log. Must
never: decide when to admit (the leader's keeper does), or be written but by applying a
committed command (every replica holds the same records at the same index).
"""

from __future__ import annotations

import rocksdict

from quorumlog.node.common.limits import ErrorCode
from quorumlog.node.replication.applier import CommandError
from quorumlog.node.state.keys import INCARNATION_PREFIX, U64, successor
from quorumlog.proto import commands_pb2
from quorumlog.raft.types import NodeId


def incarnation_key(node_id: NodeId) -> bytes:
    return INCARNATION_PREFIX + U64.pack(node_id)


def apply(raw: rocksdict.WriteBatch, command: commands_pb2.AdmitIncarnationCommand
          ) -> tuple[NodeId, int] | CommandError:
    """Record ``command``'s incarnation for its node (into ``raw``)."""
    if command.node_id == 0 or command.incarnation == 0:
        return CommandError(ErrorCode.INVALID_ARGUMENT, "admit: node id and incarnation > 0")
    raw.put(incarnation_key(command.node_id), U64.pack(command.incarnation))
    return command.node_id, command.incarnation


def stored(db: rocksdict.Rdict) -> dict[NodeId, int]:
    """Every admitted incarnation, as of the applied index (one key per replica)."""
    options = rocksdict.ReadOptions()
    options.set_iterate_upper_bound(successor(INCARNATION_PREFIX))
    iterator = db.iter(options)
    iterator.seek(INCARNATION_PREFIX)
    found: dict[NodeId, int] = {}
    while iterator.valid():
        key: bytes = iterator.key()
        if not key.startswith(INCARNATION_PREFIX):
            break
        node_id: NodeId = U64.unpack_from(key, len(INCARNATION_PREFIX))[0]
        found[node_id] = U64.unpack(iterator.value())[0]
        iterator.next()
    iterator.status()  # an iteration that stopped on damaged data raises here
    return found
