"""A node's TLS: its key material, server and peer-channel credentials, and who is calling.

Owns: loading ``ca.pem`` and ``node-<name>.pem/.key`` from ``--tls-dir`` (layout in
``quorumlog.proto.tls_layout``), the gRPC credentials of both ports (mutual TLS: a caller without a
certificate signed by the cluster's CA, or with an expired one, never completes the
handshake), the channel a node dials peers with (the peer's certificate must name the member
it is dialed as), reading a verified caller's identity (``O=quorumlog``, ``OU=node|client``,
``CN=name``) from a call's auth context, and deciding whether an address is loopback (plain
text without TLS is allowed there only, unless ``--plaintext`` says otherwise). gRPC (BoringSSL)
negotiates TLS 1.2 or 1.3 only; :func:`caller` refuses anything older as a second line.
Must never: decide what an identity may do (``quorumlog.node.state.acl`` / ``guard``), or log key
material.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from quorumlog.proto.tls_layout import CA_CERT, CLIENT_UNIT, NODE_UNIT, ORGANIZATION, node_files

_TLS_VERSIONS = (b"TLSv1.2", b"TLSv1.3")
_IDENTITY_CACHE_SIZE = 1024


class TlsError(OSError):
    """TLS material is missing or unreadable; the message names the file."""


@dataclass(frozen=True)
class Identity:
    """A verified certificate's identity: ``unit`` is ``node`` or ``client``."""

    unit: str
    name: str

    @property
    def is_node(self) -> bool:
        return self.unit == NODE_UNIT


@dataclass(frozen=True)
class NodeTls:
    """The PEM bytes a node serves and dials with."""

    ca: bytes
    certificate: bytes
    key: bytes

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.certificate)], root_certificates=self.ca, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca, self.key, self.certificate)


def load_node_tls(directory: Path, name: str) -> NodeTls:
    cert_path, key_path = node_files(directory, name)
    paths = (directory / CA_CERT, cert_path, key_path)
    try:
        ca, certificate, key = (path.read_bytes() for path in paths)
    except OSError as error:
        raise TlsError(
            f"--tls-dir {directory}: cannot read {error.filename} ({error.strerror}); "
            f"create it with `quorumlog certs init {directory} --nodes {name}`"
        ) from None
    return NodeTls(ca, certificate, key)


def peer_channel(
    address: str, tls: NodeTls | None, peer_name: str, options: list[tuple[str, Any]]
) -> grpc.aio.Channel:
    """A channel to a peer; with TLS, the peer's certificate must carry ``peer_name`` (its
    DNS SAN), whatever address (a proxy, a route) it is dialed at."""
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(
        address,
        tls.channel_credentials(),
        options=[*options, ("grpc.ssl_target_name_override", peer_name)],
    )


_identities: dict[bytes, Identity | None] = {}


def _parse_identity(pem: bytes) -> Identity | None:
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None
    subject = certificate.subject

    def first(oid: x509.ObjectIdentifier) -> str:
        values = subject.get_attributes_for_oid(oid)
        return str(values[0].value) if values else ""

    if first(NameOID.ORGANIZATION_NAME) != ORGANIZATION:
        return None
    unit = first(NameOID.ORGANIZATIONAL_UNIT_NAME)
    name = first(NameOID.COMMON_NAME)
    if unit not in (NODE_UNIT, CLIENT_UNIT) or not name:
        return None
    return Identity(unit, name)


def caller(context: grpc.aio.ServicerContext[Any, Any]) -> Identity | None:
    """The verified identity of the call's TLS peer; None on a plaintext call or a
    certificate that is not a quorumlog one. Raises ``PermissionError`` on TLS < 1.2."""
    auth: dict[str, list[bytes]] = {
        key: list(values) for key, values in (context.auth_context() or {}).items()
    }
    if auth.get("transport_security_type") != [b"ssl"]:
        return None
    version = auth.get("ssl_tls_version", [b""])[0]
    if version and version not in _TLS_VERSIONS:
        raise PermissionError(f"{version.decode(errors='replace')} is older than TLS 1.2")
    pems = auth.get("x509_pem_cert")
    if not pems:
        return None
    pem = pems[0]
    try:
        return _identities[pem]
    except KeyError:
        pass
    identity = _parse_identity(pem)
    if len(_identities) >= _IDENTITY_CACHE_SIZE:
        _identities.clear()
    _identities[pem] = identity
    return identity


def is_loopback(address: str) -> bool:
    """``HOST:PORT`` listens on loopback only (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
