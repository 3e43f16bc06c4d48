"""Hostile input: property-based fuzzing of every RPC of a live node.

Every method of every service the node serves (found from the protobuf descriptors, so a
service added later is fuzzed too) gets requests that are either random bytes on the wire or
messages whose fields hold extreme values (empty, huge, control characters, 2^64-1, unknown
enum numbers, thousands of repeated items, nested messages). Properties: every call ends with
a gRPC status (never UNKNOWN, which would be an unhandled exception in a handler), the node
never exits, and the sessions stored before the fuzzing are byte-for-byte the same afterwards
(read straight from the node's RocksDB once it is stopped).

Bounded: a fixed number of examples, derandomized (the same examples every run; a failure
prints the example to replay), a short deadline per call. The peer port is fuzzed with
batches of another cluster id (a plaintext peer port trusts its callers; with TLS the guard
refuses non-members, see test_security_tls.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from cluster_harness import running_cluster
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorumlog.client import Client
from quorumlog.node.state.state_machine import SessionStateMachine
from quorumlog.node.storage.raft_store import RocksStorage
from quorumlog.proto import acl_pb2, admin_pb2, quorumlog_pb2, raft_pb2

pytestmark = pytest.mark.cluster

try:  # the consumer service (issue 4) once it has landed
    from quorumlog.proto import consumer_pb2

    CONSUMER: list[tuple[Any, str]] = [(consumer_pb2, "Consumer")]
except ImportError:  # pragma: no cover -- before it lands
    CONSUMER = []

MAX_EXAMPLES = 600
CALL_TIMEOUT = 2.0
STREAM_TIMEOUT = 0.25  # a stream that follows the tail ends with DEADLINE_EXCEEDED
KEEP = "keep/"  # sessions written before the fuzzing; fuzzed names never start with it
OUR_CLUSTER_ID = 1

FieldDescriptor = pb_descriptor.FieldDescriptor
BIG_BYTES = b"\xff" * (2 << 20)  # over the 1 MiB message limit
EXTREME_STRINGS = [
    "", " ", "a", "n1", "*", "orders/1", "x" * 257, "é" * 200, "\x00", "a\nb", "\x7f",
    "\u202e", "/" * 70, "../../etc", "n" + "9" * 30, "127.0.0.1:1", "[::1]:99999", "x" * 70_000,
]
EXTREME_INTS = [0, 1, 2, 63, 255, 65_535, 2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1]


def _text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(EXTREME_STRINGS), st.text(max_size=24)
    ).filter(lambda text: not text.startswith(KEEP))


def _bytes() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=64), st.sampled_from([b"", b"\x00" * 1025, BIG_BYTES])
    )


def _scalar(field: Any) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _text()
    if kind == FieldDescriptor.TYPE_BYTES:
        return _bytes()
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([0, 1, 2, 3, 7, 99, 2**31 - 1])
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.sampled_from([0.0, -1.0, 1e300, float("inf"), float("nan")])
    signed = kind in (
        FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED32, FieldDescriptor.TYPE_SFIXED64,
    )
    bits = 32 if kind in (
        FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_SFIXED32,
    ) else 64
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    extremes = [value for value in [*EXTREME_INTS, low, -1] if low <= value <= high]
    return st.one_of(st.sampled_from(extremes), st.integers(low, high))


def _message(descriptor: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Messages of ``descriptor`` with a random subset of fields set to extreme values."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 2:
        return st.builds(cls)
    fields = list(descriptor.fields)

    def value_of(field: Any) -> st.SearchStrategy[Any]:
        single = (
            _message(field.message_type, depth + 1)
            if field.type == FieldDescriptor.TYPE_MESSAGE
            else _scalar(field)
        )
        if not field.is_repeated:
            return single
        many = st.lists(single, max_size=4)
        if field.type == FieldDescriptor.TYPE_BYTES:
            many = st.one_of(many, st.just([b"m"] * 10_001))  # over the per-append count
        return many

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        message = cls()
        chosen = draw(st.lists(st.sampled_from(fields), unique=True)) if fields else []
        for field in chosen:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                continue  # no map fields in our APIs; skip rather than half-support them
            value = draw(value_of(field))
            if field.is_repeated:
                getattr(message, field.name).extend(value)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(message, field.name).CopyFrom(value)
            else:
                setattr(message, field.name, value)
        return message

    return build()


class Method:
    def __init__(self, full_name: str, descriptor: Any, port: str) -> None:
        self.path = full_name
        self.input = descriptor.input_type
        self.client_streaming = descriptor.client_streaming
        self.server_streaming = descriptor.server_streaming
        self.port = port

    def __repr__(self) -> str:
        return self.path


def _methods() -> list[Method]:
    services = [
        (quorumlog_pb2, "QuorumLog", "client"), (admin_pb2, "Admin", "client"),
        (acl_pb2, "Acl", "client"), (health_pb2, "Health", "client"),
        (raft_pb2, "RaftPeer", "peer"),
        *[(module, name, "client") for module, name in CONSUMER],
    ]
    found = []
    for module, name, port in services:
        service = module.DESCRIPTOR.services_by_name[name]
        for method in service.methods:
            found.append(Method(f"/{service.full_name}/{method.name}", method, port))
    return found


METHODS = _methods()


@st.composite
def calls(draw: st.DrawFn) -> tuple[Method, bytes]:
    method = draw(st.sampled_from(METHODS))
    if draw(st.integers(0, 3)) == 0:
        payload = draw(st.binary(max_size=256))  # whatever it decodes to, if anything
        if method.port == "peer":
            # Pin another cluster id (field 1 of both peer requests, last one wins).
            payload += b"\x08\x07"
        return method, payload
    message = draw(_message(method.input))
    if method.port == "peer" and getattr(message, "cluster_id", None) == OUR_CLUSTER_ID:
        message.cluster_id = OUR_CLUSTER_ID + 1
    return method, message.SerializeToString()


def _call(channel: grpc.Channel, method: Method, payload: bytes) -> grpc.StatusCode:
    """Send ``payload`` as the request; the status the call ended with."""
    identity: Callable[[bytes], bytes] = lambda data: data  # noqa: E731
    try:
        if method.client_streaming and method.server_streaming:
            stream = channel.stream_stream(method.path, identity, identity)
            for _ in stream(iter([payload, payload]), timeout=STREAM_TIMEOUT):
                pass
        elif method.client_streaming:
            channel.stream_unary(method.path, identity, identity)(
                iter([payload, payload]), timeout=CALL_TIMEOUT
            )
        elif method.server_streaming:
            stream = channel.unary_stream(method.path, identity, identity)
            for _ in stream(payload, timeout=STREAM_TIMEOUT):
                pass
        else:
            channel.unary_unary(method.path, identity, identity)(payload, timeout=CALL_TIMEOUT)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
        return code
    return grpc.StatusCode.OK


def _limit_cases() -> list[tuple[str, bytes, grpc.StatusCode]]:
    """Each limit broken once, with the precise status it must get."""
    append, batch = quorumlog_pb2.AppendRequest, quorumlog_pb2.AppendBatchRequest
    invalid, exhausted = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED
    cases: list[tuple[str, Any, grpc.StatusCode]] = [
        ("/Append", append(session="s", messages=[BIG_BYTES]), exhausted),  # message size
        ("/Append", append(session="s", messages=[b"m"] * 10_001), exhausted),  # count
        ("/Append", append(session="x" * 257, messages=[b"m"]), invalid),  # id length
        ("/Append", append(session="a\x00b", messages=[b"m"]), invalid),  # id charset
        ("/Append", append(session="", messages=[b"m"]), invalid),
        ("/Append", append(session="s", messages=[]), invalid),
        ("/Append", append(session="s", messages=[b"m"], producer_id="p" * 129), invalid),
        ("/Append", append(session="s", messages=[b"m", b"n"], producer_id="p",
                           sequence=2**64 - 1), invalid),
        ("/AppendBatch", batch(appends=[append(session="s", messages=[b"m"])] * 1001),
         exhausted),  # batch size
        ("/AppendBatch", batch(), invalid),
        ("/Read", quorumlog_pb2.ReadRequest(session="x" * 300), invalid),
        ("/Read", quorumlog_pb2.ReadRequest(session=f"{KEEP}0", consistency=99),
         invalid),
    ]
    found = [(name, message.SerializeToString(), code) for name, message, code in cases]
    found.append(("/Append", b"\x00", invalid))  # bytes that are no AppendRequest
    return found


def _stored(data_dir: Path) -> dict[str, list[bytes]]:
    storage = RocksStorage(data_dir / "db")
    try:
        machine = SessionStateMachine(storage)
        sessions = machine.list_sessions(KEEP, 1000).sessions
        return {
            info.session: [r.data for r in machine.read(info.session, 0, 10_000).records]
            for info in sessions
        }
    finally:
        storage.close()


def test_fuzzing_every_rpc_of_a_live_node_changes_nothing_stored(tmp_path: Path) -> None:
    assert len(METHODS) >= 20, METHODS
    stored = {f"{KEEP}{i}": [f"v{i}-{j}".encode() for j in range(3)] for i in range(4)}
    statuses: dict[str, set[str]] = {}
    with running_cluster(tmp_path, size=1) as cluster:
        node = cluster.nodes["n1"]
        with Client(cluster.addresses, deadline=10) as client:
            for session, values in stored.items():
                client.append(session, *values)
        channels = {
            "client": grpc.insecure_channel(node.client_addr),
            "peer": grpc.insecure_channel(node.peer_addr),
        }
        started = time.monotonic()
        try:
            for method_name, request, expected in _limit_cases():
                path = f"/quorumlog.v1.QuorumLog{method_name}"
                method = next(m for m in METHODS if m.path == path)
                code = _call(channels["client"], method, request)
                assert code == expected, (method_name, code, expected)

            @settings(
                max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck), print_blob=True,
            )
            @given(call=calls())
            def one_call(call: tuple[Method, bytes]) -> None:
                method, payload = call
                code = _call(channels[method.port], method, payload)
                statuses.setdefault(method.path, set()).add(code.name)
                assert code != grpc.StatusCode.UNKNOWN, (
                    f"{method.path} ended UNKNOWN (an unhandled exception) on {payload[:200]!r}"
                )
                assert node.alive, f"the node exited after {method.path}"

            one_call()
        finally:
            for channel in channels.values():
                channel.close()
        elapsed = time.monotonic() - started
        assert node.alive
        with Client(cluster.addresses, deadline=10) as client:  # still serving
            assert client.read(f"{KEEP}0").records[0].data == b"v0-0"
    assert _stored(node.data_dir) == stored
    refused = {name for codes in statuses.values() for name in codes} - {"OK"}
    assert "INVALID_ARGUMENT" in refused, statuses
    print(f"fuzzed {len(statuses)} methods in {elapsed:.1f}s: {sorted(refused)}")
    for path, codes in sorted(statuses.items()):
        print(path, sorted(codes))
