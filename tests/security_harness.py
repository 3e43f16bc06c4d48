"""Helpers for the security tests: TLS directories, a TLS-aware cluster, raw calls.

Owns: making a development TLS directory once per test, a :class:`TlsCluster` (the shared
``LocalCluster`` with ``--tls-dir`` and status probes over mutual TLS), and one-shot calls
(``probe``) that report the gRPC status code a node answers a given credential with. Must
never: leave a process behind (the cluster context manager stops every node).
"""

from __future__ import annotations

import contextlib
import datetime
from pathlib import Path

import grpc
from cluster_harness import LocalCluster, running

from quorumlog.client.cli import certs
from quorumlog.client.tls import ClientSecurity, sync_channel
from quorumlog.proto import quorumlog_pb2, quorumlog_pb2_grpc, raft_pb2, raft_pb2_grpc


def tls_dir(root: Path, nodes: tuple[str, ...] = ("n1", "n2", "n3"),
            clients: tuple[str, ...] = ("admin", "bob", "carol")) -> Path:
    directory = root / "tls"
    certs.init_directory(directory, nodes, clients)
    return directory


def client_security(directory: Path, principal: str | None = None) -> ClientSecurity:
    return ClientSecurity.from_dir(directory, principal)


def node_as_client(directory: Path, name: str) -> ClientSecurity:
    """A node's certificate used as a client's (what a peer presents)."""
    cert, key = (path.read_bytes() for path in certs.node_files(directory, name))
    return ClientSecurity((directory / certs.CA_CERT).read_bytes(), cert, key)


def expired_client(directory: Path, principal: str = "late") -> ClientSecurity:
    """A client certificate of the cluster's CA that expired yesterday."""
    authority = certs.load_or_create_authority(directory)
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3)
    cert, key = certs.issue(
        authority, unit=certs.CLIENT_UNIT, common_name=principal, days=2, not_before=start
    )
    return ClientSecurity((directory / certs.CA_CERT).read_bytes(), cert, key)


def foreign_client(root: Path, directory: Path) -> ClientSecurity:
    """A client certificate of ANOTHER CA (the client still trusts the cluster's CA)."""
    other = root / "other-ca"
    certs.init_directory(other, (), ("mallory",))
    cert, key = (path.read_bytes() for path in certs.client_files(other))
    return ClientSecurity((directory / certs.CA_CERT).read_bytes(), cert, key)


class TlsCluster(LocalCluster):
    """``LocalCluster`` whose nodes run with ``--tls-dir``; probes use the admin client."""

    def __init__(self, root: Path, directory: Path, size: int = 3,
                 extra_args: list[str] | None = None) -> None:
        super().__init__(root, size, ["--tls-dir", str(directory), *(extra_args or [])])
        self.tls_dir = directory
        self.security = client_security(directory)  # status probes over mutual TLS


def running_tls_cluster(
    root: Path, directory: Path, size: int = 3, extra_args: list[str] | None = None
) -> contextlib.AbstractContextManager[TlsCluster]:
    return running(TlsCluster(root, directory, size, extra_args))


def probe_client_port(address: str, security: ClientSecurity | None) -> grpc.StatusCode:
    """The status a ClusterStatus call with ``security`` ends with (OK when it is served)."""
    with sync_channel(address, security) as channel:
        stub = quorumlog_pb2_grpc.QuorumLogStub(channel)  # type: ignore[no-untyped-call]
        try:
            stub.ClusterStatus(quorumlog_pb2.ClusterStatusRequest(), timeout=5)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return,attr-defined]
    return grpc.StatusCode.OK


def probe_peer_port(
    address: str, security: ClientSecurity | None, sender: int = 0
) -> grpc.StatusCode:
    """The status a peer ``Send`` of an empty batch from Raft id ``sender`` (of another
    cluster id, so nothing is delivered even if admitted) ends with."""
    batch = raft_pb2.MessageBatch(cluster_id=999)
    setattr(batch, "from", sender)
    with sync_channel(address, security) as channel:
        stub = raft_pb2_grpc.RaftPeerStub(channel)  # type: ignore[no-untyped-call]
        try:
            stub.Send(batch, timeout=5)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return,attr-defined]
    return grpc.StatusCode.OK
