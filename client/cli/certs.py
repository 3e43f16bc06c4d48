"""Development certificates: a CA, node certificates and client certificates (``cryptography``).

Owns: making the keys and certificates of a TLS directory (its layout and identities are
``quorumlog.proto.tls_layout``'s). Identity is in
the subject: ``O=quorumlog``, ``OU=node`` or ``OU=client``, ``CN=<node name or principal>``.
A node certificate is good for both ends of a TLS connection (server and client auth) and
names the node (DNS SAN ``<name>``) plus ``localhost``, ``127.0.0.1``, ``::1`` and any extra
``--san``; a client certificate is good for client auth only.

Layout of ``DIR`` (``quorumlog certs init DIR``)::

    ca.pem  ca.key                 the development CA (reused when present)
    node-<name>.pem  node-<name>.key
    client-<principal>.pem  client-<principal>.key
    client.pem  client.key         the first client's (when there was none yet), what
                                   ``--tls-dir`` uses by default
    token.key  token.pub           Ed25519 pair for bearer tokens (``quorumlog certs token``)

Must never: be used for production PKI (keys are written unencrypted, mode 0600), or touch the
network.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from quorumlog.node.storage.engine import fsync_directory
from quorumlog.proto.tls_layout import (
    CA_CERT,
    CA_KEY,
    CLIENT_UNIT,
    NODE_UNIT,
    ORGANIZATION,
    TOKEN_KEY,
    TOKEN_PUB,
    client_files,
    node_files,
)

DEFAULT_DAYS = 825
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Authority:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Write ``path`` whole or not at all, durably: a temporary file, fsynced, renamed into
    place, the directory fsynced (a power cut leaves the old file or the new one)."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    fsync_directory(path.parent)


def _key_pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _subject(unit: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _general_name(text: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        return x509.DNSName(text)


def make_authority(
    common_name: str = "quorumlog development CA",
    days: int = DEFAULT_DAYS,
    not_before: datetime.datetime | None = None,
) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return Authority(certificate, key)


def issue(
    authority: Authority,
    *,
    unit: str,
    common_name: str,
    names: tuple[str, ...] = (),
    days: int = DEFAULT_DAYS,
    not_before: datetime.datetime | None = None,
) -> tuple[bytes, bytes]:
    """A leaf certificate and its key, both PEM. ``unit`` is ``node`` or ``client``."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if unit == NODE_UNIT:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_subject(unit, common_name))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()), False
        )
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(name) for name in names]), critical=False
        )
    certificate = builder.sign(authority.key, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def load_or_create_authority(directory: Path, days: int = DEFAULT_DAYS) -> Authority:
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() and key_path.exists():
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        return Authority(certificate, key)
    authority = make_authority(days=days)
    _write(cert_path, authority.certificate.public_bytes(serialization.Encoding.PEM))
    _write(key_path, _key_pem(authority.key), private=True)
    return authority


def write_node(
    directory: Path, authority: Authority, name: str, sans: tuple[str, ...] = (),
    days: int = DEFAULT_DAYS,
) -> None:
    names = tuple(dict.fromkeys((name, *LOCAL_NAMES, *sans)))
    cert, key = issue(authority, unit=NODE_UNIT, common_name=name, names=names, days=days)
    cert_path, key_path = node_files(directory, name)
    _write(cert_path, cert)
    _write(key_path, key, private=True)


def write_client(
    directory: Path, authority: Authority, principal: str, default: bool = False,
    days: int = DEFAULT_DAYS,
) -> None:
    cert, key = issue(authority, unit=CLIENT_UNIT, common_name=principal, days=days)
    targets = [client_files(directory, principal)]
    if default:
        targets.append(client_files(directory))
    for cert_path, key_path in targets:
        _write(cert_path, cert)
        _write(key_path, key, private=True)


def write_token_pair(directory: Path) -> None:
    """An Ed25519 pair for bearer tokens, unless one is there already."""
    private_path, public_path = directory / TOKEN_KEY, directory / TOKEN_PUB
    if private_path.exists() and public_path.exists():
        return
    key = ed25519.Ed25519PrivateKey.generate()
    _write(private_path, _key_pem(key), private=True)
    _write(
        public_path,
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def init_directory(
    directory: Path,
    nodes: tuple[str, ...],
    clients: tuple[str, ...],
    sans: tuple[str, ...] = (),
    days: int = DEFAULT_DAYS,
) -> list[Path]:
    """Create (or extend) a TLS directory; returns the files present afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    authority = load_or_create_authority(directory, days)
    for name in nodes:
        write_node(directory, authority, name, sans, days)
    has_default = client_files(directory)[0].exists()
    for position, principal in enumerate(clients):
        default = position == 0 and not has_default
        write_client(directory, authority, principal, default=default, days=days)
    write_token_pair(directory)
    return sorted(path for path in directory.iterdir() if not path.name.startswith("."))
