"""The committed generated code matches the .proto files; the peer codec round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumlog.node.codec import (
    CodecError,
    decode_batch,
    encode_batch,
    message_from_proto,
    message_to_proto,
)
from quorumlog.proto import generate, raft_pb2
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


def test_generated_code_has_no_drift(tmp_path: Path) -> None:
    written = generate.generate(tmp_path)
    assert written, "no .proto files found"
    for fresh in written:
        committed = generate.PROTO_DIR / fresh.name
        assert committed.exists(), f"{fresh.name} is not committed; run make proto"
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"proto/{fresh.name} differs from a fresh generation; run make proto"
        )
    committed_generated = {
        path.name
        for path in generate.PROTO_DIR.iterdir()
        if path.name.endswith(generate.GENERATED_SUFFIXES)
    }
    assert committed_generated == {path.name for path in written}, "stale generated files"


u64 = st.integers(min_value=0, max_value=2**64 - 1)
node_ids = st.integers(min_value=1, max_value=2**63)
wire_types = st.sampled_from([kind for kind in MessageType if not is_local_message(kind)])
entries = st.builds(
    Entry,
    term=u64,
    index=u64,
    data=st.binary(max_size=64),
    type=st.sampled_from(list(EntryType)),
)
conf_states = st.builds(
    ConfState,
    voters=st.lists(node_ids, max_size=5).map(tuple),
    learners=st.lists(node_ids, max_size=3).map(tuple),
)
snapshots = st.builds(
    Snapshot,
    metadata=st.builds(SnapshotMetadata, index=u64, term=u64, conf_state=conf_states),
    data=st.binary(max_size=64),
)
messages = st.builds(
    Message,
    type=wire_types,
    to=node_ids,
    frm=node_ids,
    term=u64,
    log_term=u64,
    index=u64,
    entries=st.lists(entries, max_size=4),
    commit=u64,
    reject=st.booleans(),
    reject_hint=u64,
    snapshot=st.none() | snapshots,
    snap_offset=u64,
    snap_done=st.booleans(),
    context=st.binary(max_size=16),
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_message_round_trips_through_the_wire(message: Message) -> None:
    wire = message_to_proto(message).SerializeToString()
    decoded = message_from_proto(raft_pb2.Message.FromString(wire))
    assert decoded == message


def test_batch_refuses_other_cluster_and_spoofed_sender() -> None:
    good = Message(MessageType.HEARTBEAT, to=2, frm=1, term=3)
    batch = raft_pb2.MessageBatch.FromString(encode_batch(7, 1, [good]).SerializeToString())
    assert decode_batch(batch, 7) == [good]
    with pytest.raises(CodecError, match="cluster 7, this is cluster 8"):
        decode_batch(batch, 8)
    spoofed = encode_batch(7, 1, [Message(MessageType.HEARTBEAT, to=2, frm=3, term=3)])
    with pytest.raises(CodecError, match="inside a batch from n1"):
        decode_batch(spoofed, 7)


def test_local_and_unknown_types_never_cross_the_wire() -> None:
    with pytest.raises(CodecError, match="local"):
        message_to_proto(Message(MessageType.HUP, to=2, frm=1))
    forged = raft_pb2.Message(type=int(MessageType.BEAT), to=2)
    with pytest.raises(CodecError, match="local"):
        message_from_proto(forged)
    with pytest.raises(CodecError, match="unknown message type 999"):
        message_from_proto(raft_pb2.Message(type=999))
    bad_entry = raft_pb2.Message(type=int(MessageType.APP))
    bad_entry.entries.add(term=1, index=1, type=42)
    with pytest.raises(CodecError, match="unknown entry type 42"):
        message_from_proto(bad_entry)
