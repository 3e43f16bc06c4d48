"""The console's settings: one value built from ``quorumlog console``'s flags.

Owns: :class:`ConsoleSettings`, the rule that a console serving beyond loopback must ask
for a login, and that HTTPS needs both a certificate and its key (files that exist). Must
never: read flags or the files' contents (``quorumlog.client.cli.cmd_console`` and uvicorn
do) or open connections.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from quorumlog.client.tls import ClientSecurity

DEFAULT_LISTEN = "127.0.0.1:8080"


class SettingsError(ValueError):
    """A flag combination the console refuses; the message is one line for the operator."""


@dataclass(frozen=True)
class ConsoleSettings:
    addresses: list[str]  # the cluster's client addresses
    host: str
    port: int
    #: the console's own identity toward the cluster (TLS material, optional token); used
    #: for every call when no login is required, and for the public status calls always
    security: ClientSecurity | None = None
    read_only: bool = False
    #: every browser must log in with a cluster token; its calls carry that token, so the
    #: cluster's ACLs decide what the user may see and do
    require_login: bool = False
    audit_log: Path | None = None
    #: the key that seals the console's cookies (32 url-safe base64 bytes, Fernet); None: a
    #: fresh key each start (logins then end with the process)
    cookie_key: bytes | None = None
    #: serve HTTPS with this certificate chain and key (PEM files); None: plain HTTP
    https_cert: Path | None = None
    https_key: Path | None = None
    #: how often the overview's poller looks at the cluster, seconds
    poll_interval: float = 1.0
    deadline: float = 10.0  # seconds each cluster call may take

    def __post_init__(self) -> None:
        if not self.addresses:
            raise SettingsError("--cluster names no address")
        if not 0 < self.port < 65536:
            raise SettingsError(f"--listen port must be 1-65535, got {self.port}")
        if (self.https_cert is None) != (self.https_key is None):
            raise SettingsError("give --https-cert and --https-key together")
        for flag, path in (("--https-cert", self.https_cert), ("--https-key", self.https_key)):
            if path is not None and not path.is_file():
                raise SettingsError(f"{flag} {path}: no such file")
        if not self.require_login and not is_loopback(self.host):
            raise SettingsError(
                f"--listen {self.host} is not a loopback address: add --require-login so "
                "every user logs in with a cluster token"
            )


    @property
    def https(self) -> bool:
        return self.https_cert is not None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:8080``) into its parts, or SettingsError."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SettingsError(f"--listen must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)
