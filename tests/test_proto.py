"""The committed generated code matches the .proto files; the peer codec round-trips."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumlog.node.replication.codec import (
    CodecError,
    decode_batch,
    encode_batch,
    message_from_proto,
    message_to_proto,
)
from quorumlog.proto import generate, quorumlog_pb2, raft_pb2
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


def _declared_services(source: str) -> set[str]:
    """``package.Service`` for every ``service`` a .proto file's text declares."""
    (package,) = re.findall(r"^package\s+([\w.]+)\s*;", source, re.MULTILINE)
    return {f"{package}.{name}" for name in re.findall(r"^service\s+(\w+)", source, re.MULTILINE)}


def test_protos_compile_standalone_with_plain_protoc(tmp_path: Path) -> None:
    """Only the .proto tree, away from the Python package: protoc -I<that tree> compiles every
    file (imports are relative to proto/), and the public services are in the descriptors."""
    sources = tmp_path / "protos"
    relative = [path.relative_to(generate.PROTO_DIR) for path in generate.proto_files()]
    assert relative, "no .proto files found"
    for name in relative:
        (sources / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(generate.PROTO_DIR / name, sources / name)
    out = tmp_path / "out"
    out.mkdir()
    descriptor_set = out / "all.pb"
    result = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{sources}", "--include_imports",
         f"--descriptor_set_out={descriptor_set}", f"--python_out={out}",
         *[name.as_posix() for name in relative]],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file
    assert {file.name for file in files} == {name.as_posix() for name in relative}
    compiled = {f"{file.package}.{service.name}" for file in files for service in file.service}
    declared = set().union(*(_declared_services((sources / name).read_text())
                             for name in relative))
    public = {name for name in declared if name.startswith("quorumlog.v1.")}
    assert {"quorumlog.v1.QuorumLog", "quorumlog.v1.Admin", "quorumlog.v1.Acl",
            "quorumlog.v1.Consumer"} <= public
    assert declared <= compiled, f"declared but not compiled: {declared - compiled}"
    # Public files live under the folder of their package: quorumlog/v1/<name>.proto.
    for file in files:
        assert file.name.rpartition("/")[0] == file.package.replace(".", "/"), file.name
    assert {path.relative_to(out).as_posix() for path in out.rglob("*_pb2.py")} == {
        name.with_name(f"{name.stem}_pb2.py").as_posix() for name in relative
    }
    # The generated Python code registers the same file names, so reflection clients see
    # exactly the standalone layout.
    assert quorumlog_pb2.DESCRIPTOR.name == "quorumlog/v1/quorumlog.proto"
    assert raft_pb2.DESCRIPTOR.name == "quorumlog/raft/v1/raft.proto"


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
    batch = raft_pb2.MessageBatch.FromString(
        encode_batch(7, 1, [(0, good), (3, good)]).SerializeToString()
    )
    assert decode_batch(batch, 7) == [(0, good), (3, good)]  # each message keeps its group
    with pytest.raises(CodecError, match="cluster 7, this is cluster 8"):
        decode_batch(batch, 8)  # another cluster's
    spoofed = encode_batch(7, 1, [(0, Message(MessageType.HEARTBEAT, to=2, frm=3, term=3))])
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
