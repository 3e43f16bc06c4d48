"""Conversion between the Raft core's messages and the peer protocol (``raft.proto``).

Owns: the one-to-one mapping of ``quorumlog.raft.types`` values to ``quorumlog.proto.raft_pb2``
and back, including validation of enum values arriving from the network. Must never: decide
anything about Raft, or accept a message whose kind is local-only (timers, proposals): those
never cross the wire, and a peer that sends one gets ``CodecError``.
"""

from __future__ import annotations

from quorumlog.proto import raft_pb2
from quorumlog.raft.types import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
    is_local_message,
)

_ENTRY_TYPES = {int(kind): kind for kind in EntryType}
_MESSAGE_TYPES = {int(kind): kind for kind in MessageType}


class CodecError(ValueError):
    """A peer sent something that is not a valid Raft message."""


def entry_to_proto(entry: Entry) -> raft_pb2.Entry:
    return raft_pb2.Entry(term=entry.term, index=entry.index, type=entry.type, data=entry.data)


def entry_from_proto(proto: raft_pb2.Entry) -> Entry:
    kind = _ENTRY_TYPES.get(proto.type)
    if kind is None:
        raise CodecError(f"unknown entry type {proto.type} at index {proto.index}")
    return Entry(proto.term, proto.index, proto.data, kind)


def conf_state_to_proto(conf: ConfState) -> raft_pb2.ConfState:
    return raft_pb2.ConfState(voters=conf.voters, learners=conf.learners)


def conf_state_from_proto(proto: raft_pb2.ConfState) -> ConfState:
    return ConfState(tuple(proto.voters), tuple(proto.learners))


def metadata_to_proto(meta: SnapshotMetadata) -> raft_pb2.SnapshotMetadata:
    return raft_pb2.SnapshotMetadata(
        index=meta.index, term=meta.term, conf_state=conf_state_to_proto(meta.conf_state)
    )


def metadata_from_proto(proto: raft_pb2.SnapshotMetadata) -> SnapshotMetadata:
    return SnapshotMetadata(proto.index, proto.term, conf_state_from_proto(proto.conf_state))


def message_to_proto(message: Message) -> raft_pb2.Message:
    if is_local_message(message.type):
        raise CodecError(f"{message.type.name} is local and never crosses the wire")
    proto = raft_pb2.Message(
        type=message.type,
        to=message.to,
        term=message.term,
        log_term=message.log_term,
        index=message.index,
        commit=message.commit,
        reject=message.reject,
        reject_hint=message.reject_hint,
        snap_offset=message.snap_offset,
        snap_done=message.snap_done,
        context=message.context,
    )
    # ``from`` is a Python keyword: set it through setattr.
    setattr(proto, "from", message.frm)
    if message.entries:
        proto.entries.extend([entry_to_proto(entry) for entry in message.entries])
    if message.snapshot is not None:
        proto.snapshot.metadata.CopyFrom(metadata_to_proto(message.snapshot.metadata))
        proto.snapshot.data = message.snapshot.data
    return proto


def message_from_proto(proto: raft_pb2.Message) -> Message:
    kind = _MESSAGE_TYPES.get(proto.type)
    if kind is None:
        raise CodecError(f"unknown message type {proto.type}")
    if is_local_message(kind):
        raise CodecError(f"{kind.name} is local and must not arrive from a peer")
    snapshot = None
    if proto.HasField("snapshot"):
        snapshot = Snapshot(metadata_from_proto(proto.snapshot.metadata), proto.snapshot.data)
    return Message(
        type=kind,
        to=proto.to,
        frm=getattr(proto, "from"),
        term=proto.term,
        log_term=proto.log_term,
        index=proto.index,
        entries=[entry_from_proto(entry) for entry in proto.entries],
        commit=proto.commit,
        reject=proto.reject,
        reject_hint=proto.reject_hint,
        snapshot=snapshot,
        snap_offset=proto.snap_offset,
        snap_done=proto.snap_done,
        context=proto.context,
    )


#: A Raft message and the group (0: the meta group) it belongs to.
GroupMessage = tuple[int, Message]


def encode_batch(
    cluster_id: int, frm: int, messages: list[GroupMessage]
) -> raft_pb2.MessageBatch:
    """One batch of every group's messages to one peer (one frame, one connection)."""
    batch = raft_pb2.MessageBatch(cluster_id=cluster_id)
    setattr(batch, "from", frm)
    protos = []
    for group, message in messages:
        proto = message_to_proto(message)
        if group:
            proto.group = group
        protos.append(proto)
    batch.messages.extend(protos)
    return batch


def decode_batch(batch: raft_pb2.MessageBatch, cluster_id: int) -> list[GroupMessage]:
    """Messages of ``batch`` with their groups; refuses another cluster's traffic and
    spoofed senders."""
    if batch.cluster_id != cluster_id:
        raise CodecError(f"batch for cluster {batch.cluster_id}, this is cluster {cluster_id}")
    sender = getattr(batch, "from")
    messages = [(proto.group, message_from_proto(proto)) for proto in batch.messages]
    for _, message in messages:
        if message.frm != sender:
            raise CodecError(f"message from n{message.frm} inside a batch from n{sender}")
    return messages


#: A beat's content: groups the sender leads (with the receiver as a member), and groups in
#: which the sender follows the receiver.
Beat = tuple[list[int], list[int]]
NO_BEAT: Beat = ([], [])


def add_beat(batch: raft_pb2.MessageBatch, beat: Beat) -> None:
    """Make ``batch`` carry the sender's beat."""
    batch.beat.SetInParent()  # present even when it names no group
    batch.beat.groups.extend(beat[0])
    batch.beat.following.extend(beat[1])


def beat_of(batch: raft_pb2.MessageBatch) -> Beat | None:
    """The beat a batch carries (None: none)."""
    if not batch.HasField("beat"):
        return None
    return list(batch.beat.groups), list(batch.beat.following)
