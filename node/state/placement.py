"""Where the data shards live: the meta group's placement records, and the placement rule.

Owns: the ``P/`` keys of the meta group's state (``P/count``: ``>I`` shard count;
``P/<shard >I>``: a ``ShardPlacement`` protobuf: the shard's Raft group and its replicas,
preferred leader first), applying ``PlacementCommand`` (set once, when a sharded cluster is
founded; a second one is refused and changes nothing), and :func:`place`, the pure rule
the meta leader uses: replication factor min(3, nodes), no two replicas of a shard on one
node or one host tag (when there are enough tags), preferred leaders rotated so every node
leads about the same number of shards. Must never: read anything but its keys and its
arguments (every replica applies the same command to the same bytes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import rocksdict

from quorumlog.node.common.limits import ErrorCode
from quorumlog.node.replication.applier import CommandError
from quorumlog.node.state.keys import PLACEMENT_PREFIX, successor
from quorumlog.proto import commands_pb2
from quorumlog.raft.types import NodeId

COUNT_KEY = PLACEMENT_PREFIX + b"count"
REPLICATION_FACTOR = 3


@dataclass(frozen=True, slots=True)
class Shard:
    """One data shard: its index, its Raft group, its replicas (preferred leader first)."""

    shard: int
    group: int
    replicas: tuple[NodeId, ...]
    founders: tuple[NodeId, ...] = ()  # the founding replicas (empty: ``replicas``)

    def founded_by(self, node: NodeId) -> bool:
        """Whether ``node`` bootstraps this shard's group (else it starts empty)."""
        return node in (self.founders or self.replicas)


def shard_key(shard: int) -> bytes:
    return PLACEMENT_PREFIX + shard.to_bytes(4, "big")


def group_of(shard: int) -> int:
    """The Raft group of data shard ``shard`` in a cluster of more than one shard."""
    return shard + 1


def place(
    shard_count: int, nodes: Sequence[NodeId], host_tags: Mapping[NodeId, str]
) -> list[Shard]:
    """Replicas for ``shard_count`` shards over ``nodes`` (see the module docstring).

    Shard ``k`` takes its preferred leader from the nodes in turn (``nodes[k % n]``), then
    fills up its replicas with the next nodes in ring order, skipping nodes whose host tag
    is already used while unused tags remain."""
    ordered = sorted(nodes)
    if not ordered:
        raise ValueError("no nodes to place shards on")
    factor = min(REPLICATION_FACTOR, len(ordered))
    tags = {node: host_tags.get(node) or f"n{node}" for node in ordered}
    distinct_tags = len(set(tags.values()))
    shards = []
    for shard in range(shard_count):
        start = shard % len(ordered)
        ring = ordered[start:] + ordered[:start]
        chosen: list[NodeId] = []
        used: set[str] = set()
        for strict in (True, False):  # tags apart when possible, then anyone left
            for node in ring:
                if len(chosen) == factor:
                    break
                if node in chosen:
                    continue
                if strict and tags[node] in used and len(used) < distinct_tags:
                    continue
                chosen.append(node)
                used.add(tags[node])
        shards.append(Shard(shard, group_of(shard), tuple(chosen), tuple(chosen)))
    return shards


def _tag_of(tags: Mapping[NodeId, str], node: NodeId) -> str:
    return tags.get(node) or f"n{node}"


def _load(shards: Sequence[Shard]) -> dict[NodeId, int]:
    load: dict[NodeId, int] = {}
    for shard in shards:
        for node in shard.replicas:
            load[node] = load.get(node, 0) + 1
    return load


def _pick(
    candidates: Sequence[NodeId], shard: Shard, load: Mapping[NodeId, int],
    tags: Mapping[NodeId, str], leaving: NodeId,
) -> NodeId | None:
    """The least-loaded candidate not in ``shard`` whose host tag no remaining replica has
    (when one exists), ties by id."""
    staying = [node for node in shard.replicas if node != leaving]
    used = {_tag_of(tags, node) for node in staying}
    free = [node for node in candidates if node not in shard.replicas]
    apart = [node for node in free if _tag_of(tags, node) not in used]
    pool = apart or free
    return min(pool, key=lambda node: (load.get(node, 0), node)) if pool else None


def with_node(
    shards: Sequence[Shard], node: NodeId, nodes: Sequence[NodeId], tags: Mapping[NodeId, str],
) -> list[Shard]:
    """The shards whose replicas change when ``node`` joins: every shard short of replicas
    takes it; then the most loaded node of a shard hands its replica over, in place, until
    ``node`` carries its share. Only changed shards are returned."""
    everyone = sorted(set(nodes) | {node})
    load = _load(shards)
    factor = min(REPLICATION_FACTOR, len(everyone))
    share = -(-(len(shards) * factor) // len(everyone))  # ceiling
    changed: list[Shard] = []
    for shard in shards:
        if node in shard.replicas:
            continue
        if len(shard.replicas) < factor:
            replicas = (*shard.replicas, node)  # the shard was short of replicas
        elif load.get(node, 0) >= share:
            continue
        else:
            giver = max(shard.replicas, key=lambda n: (load.get(n, 0), n))
            if load.get(giver, 0) <= load.get(node, 0) + 1:
                continue
            replicas = tuple(node if n == giver else n for n in shard.replicas)
            load[giver] -= 1
        load[node] = load.get(node, 0) + 1
        changed.append(Shard(shard.shard, shard.group, replicas, shard.founders))
    return changed


def without_node(
    shards: Sequence[Shard], node: NodeId, nodes: Sequence[NodeId], tags: Mapping[NodeId, str],
) -> list[Shard]:
    """The shards whose replicas change when ``node`` leaves: its replica goes to the
    least-loaded other node (in place), or is dropped when every node already has one."""
    others = sorted(n for n in nodes if n != node)
    load = _load(shards)
    changed: list[Shard] = []
    for shard in shards:
        if node not in shard.replicas:
            continue
        taker = _pick(others, shard, load, tags, node)
        if taker is None:
            replicas = tuple(n for n in shard.replicas if n != node)
        else:
            replicas = tuple(taker if n == node else n for n in shard.replicas)
            load[taker] = load.get(taker, 0) + 1
        if not replicas:
            continue  # the last replica of a shard cannot leave
        changed.append(Shard(shard.shard, shard.group, replicas, shard.founders))
    return changed


def replicas_command(shard: Shard) -> commands_pb2.Command:
    """The ``ShardReplicasCommand`` that gives ``shard`` its (new) replicas."""
    return commands_pb2.Command(shard_replicas=commands_pb2.ShardReplicasCommand(
        shard=shard.shard, replicas=shard.replicas,
    ))


def command(
    shard_count: int, shards: Sequence[Shard], host_tags: Mapping[NodeId, str]
) -> commands_pb2.Command:
    """The ``PlacementCommand`` that stores ``shards``."""
    return commands_pb2.Command(placement=commands_pb2.PlacementCommand(
        shard_count=shard_count,
        shards=[
            commands_pb2.ShardPlacement(
                shard=s.shard, group=s.group, replicas=s.replicas, founders=s.founders
            )
            for s in shards
        ],
        host_tags=dict(host_tags),
    ))


@dataclass(frozen=True, slots=True)
class Placed:
    """A ``PlacementCommand`` applied: how many shards it placed."""

    shard_count: int


def apply(
    db: rocksdict.Rdict, raw: rocksdict.WriteBatch, placement: commands_pb2.PlacementCommand
) -> Placed | CommandError:
    """Store ``placement`` unless one is stored (then refuse; nothing changes)."""
    if db.get(shard_key(0)) is not None:
        return CommandError(ErrorCode.FAILED_PRECONDITION, "the shards are already placed")
    founded = shard_count(db)
    if founded != placement.shard_count:
        return CommandError(
            ErrorCode.FAILED_PRECONDITION,
            f"the cluster was founded with {founded} shards, not {placement.shard_count}",
        )
    if placement.shard_count < 1 or len(placement.shards) != placement.shard_count:
        return CommandError(ErrorCode.INVALID_ARGUMENT, "placement must name every shard")
    for index, shard in enumerate(placement.shards):
        if shard.shard != index or shard.group < 1 or not shard.replicas:
            return CommandError(ErrorCode.INVALID_ARGUMENT, f"bad placement of shard {index}")
    raw.put(COUNT_KEY, placement.shard_count.to_bytes(4, "big"))
    for shard in placement.shards:
        raw.put(shard_key(shard.shard), shard.SerializeToString())
    return Placed(placement.shard_count)


def apply_replicas(
    db: rocksdict.Rdict, raw: rocksdict.WriteBatch, command: commands_pb2.ShardReplicasCommand
) -> Placed | CommandError:
    """Give a placed shard new replicas (founders kept); refuse an unknown shard or an empty
    or repeating replica list (nothing changes)."""
    value = db.get(shard_key(command.shard))
    if value is None:
        return CommandError(ErrorCode.NOT_FOUND, f"shard {command.shard} is not placed")
    replicas = list(command.replicas)
    if not replicas or len(set(replicas)) != len(replicas) or 0 in replicas:
        return CommandError(ErrorCode.INVALID_ARGUMENT,
                            f"shard {command.shard}: replicas must be distinct node ids")
    record = commands_pb2.ShardPlacement.FromString(value)
    if not record.founders:
        record.founders.extend(record.replicas)
    del record.replicas[:]
    record.replicas.extend(replicas)
    raw.put(shard_key(command.shard), record.SerializeToString())
    return Placed(shard_count(db))


def shard_count(db: rocksdict.Rdict) -> int:
    """The shard count fixed when the cluster was founded (1 when none was recorded: a
    one-shard cluster, or a data directory from before sharding)."""
    value = db.get(COUNT_KEY)
    return 1 if value is None else int.from_bytes(value, "big")


def seed_count(
    db: rocksdict.Rdict, raw: rocksdict.WriteBatch, count: int,
    write_options: rocksdict.WriteOptions,
) -> None:
    """Record the shard count of a cluster being founded (every founding member derives it
    from the same ``--init-shards``; the placement itself is proposed by the meta leader)."""
    raw.put(COUNT_KEY, count.to_bytes(4, "big"))
    db.write(raw, write_options)


def seed(
    db: rocksdict.Rdict, raw: rocksdict.WriteBatch, count: int, shards: Sequence[Shard],
    write_options: rocksdict.WriteOptions,
) -> None:
    """Replace the placement (a restored backup placed over the new cluster's members;
    every member restored from the same file with the same ``--peers`` writes the same)."""
    raw.delete_range(PLACEMENT_PREFIX, successor(PLACEMENT_PREFIX))
    raw.put(COUNT_KEY, count.to_bytes(4, "big"))
    for shard in shards:
        raw.put(shard_key(shard.shard), commands_pb2.ShardPlacement(
            shard=shard.shard, group=shard.group, replicas=shard.replicas,
            founders=shard.founders or shard.replicas,
        ).SerializeToString())
    db.write(raw, write_options)


def stored(db: rocksdict.Rdict) -> list[Shard]:
    """The stored placement, by shard ([] while none is stored)."""
    options = rocksdict.ReadOptions()
    options.set_iterate_upper_bound(successor(PLACEMENT_PREFIX))
    iterator = db.iter(options)
    iterator.seek(shard_key(0))
    shards = []
    while iterator.valid() and iterator.key() != COUNT_KEY:  # "count" sorts after shards
        record = commands_pb2.ShardPlacement.FromString(iterator.value())
        shards.append(Shard(record.shard, record.group, tuple(record.replicas),
                            tuple(record.founders)))
        iterator.next()
    iterator.status()  # an iteration that stopped on damaged data raises here
    return shards
