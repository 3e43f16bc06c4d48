"""The TLS directory layout and certificate identities both ends of the wire rely on.

A contract like the ``.proto`` files beside it: the SDK (``quorumlog.client.tls``) finds its
client certificate here, a node (``quorumlog.node.common.tls``) its own and checks callers'
identities against these names, and ``quorumlog certs`` (``quorumlog.client.cli.certs``)
writes them. Identity is in the subject: ``O=quorumlog``, ``OU=node`` or ``OU=client``,
``CN=<node name or principal>``. Must never: create keys or certificates, or touch a file.
"""

from __future__ import annotations

from pathlib import Path

ORGANIZATION = "quorumlog"
NODE_UNIT = "node"
CLIENT_UNIT = "client"

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
CLIENT_CERT = "client.pem"
CLIENT_KEY = "client.key"
TOKEN_KEY = "token.key"
TOKEN_PUB = "token.pub"


def node_files(directory: Path, name: str) -> tuple[Path, Path]:
    """(certificate, key) of node ``name`` in a TLS directory."""
    return directory / f"node-{name}.pem", directory / f"node-{name}.key"


def client_files(directory: Path, principal: str | None = None) -> tuple[Path, Path]:
    """(certificate, key) of a client; ``None``: the default client (``client.pem``)."""
    if principal is None:
        return directory / CLIENT_CERT, directory / CLIENT_KEY
    return directory / f"client-{principal}.pem", directory / f"client-{principal}.key"
