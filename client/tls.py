"""How a client connects securely: TLS material, a bearer token, and the channels built from them.

Owns: :class:`ClientSecurity` (CA, client certificate and key, optional server name override,
optional bearer token), loading it from a TLS directory (``ca.pem`` plus ``client.pem`` /
``client.key``, or ``client-<principal>.*``; layout in ``quorumlog.proto.tls_layout``), and making
grpc channels with it: mutual TLS when TLS material is given, plaintext otherwise, and the
token sent as ``authorization: Bearer ...`` metadata on every call (over TLS or, for a TLS
terminating proxy in front of the nodes, over plaintext). Must never: retry, pick nodes, or
print or log the token or key material.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from quorumlog.client import errors
from quorumlog.proto.tls_layout import CA_CERT, client_files

TOKEN_ENV = "QUORUMLOG_TOKEN"
TLS_DIR_ENV = "QUORUMLOG_TLS_DIR"


@dataclass(frozen=True)
class ClientSecurity:
    """TLS material (PEM bytes) and/or a bearer token; empty means plaintext, anonymous."""

    ca: bytes | None = None
    certificate: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None  # verify the nodes' certificates for this name
    token: str | None = None

    @property
    def uses_tls(self) -> bool:
        return self.ca is not None

    @staticmethod
    def from_dir(
        directory: Path | str, principal: str | None = None, token: str | None = None
    ) -> ClientSecurity:
        """``ca.pem`` and the client certificate of ``principal`` (default ``client.pem``)."""
        directory = Path(directory)
        cert_path, key_path = client_files(directory, principal)
        try:
            ca = (directory / CA_CERT).read_bytes()
            certificate, key = cert_path.read_bytes(), key_path.read_bytes()
        except OSError as error:
            raise errors.InvalidArgument(
                f"TLS directory {directory}: cannot read {error.filename} ({error.strerror}); "
                f"create it with `quorumlog certs init {directory}`"
            ) from None
        return ClientSecurity(ca, certificate, key, token=token)

    def channel_options(self, options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
        extra = [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
        return [*options, *extra]

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca, self.key, self.certificate)


class _WithToken:
    """A multi-callable that adds ``authorization: Bearer <token>`` to every call."""

    def __init__(self, multicallable: Any, entry: tuple[str, str]) -> None:
        self._multicallable = multicallable
        self._entry = entry

    def __call__(self, *args: Any, metadata: Any = None, **kwargs: Any) -> Any:
        return self._multicallable(
            *args, metadata=(*(metadata or ()), self._entry), **kwargs
        )


class _TokenChannel:
    """A grpc.aio channel whose calls carry the bearer token. (Not a channel interceptor:
    grpc.aio's intercepted streaming calls leave a task behind when they fail early.)"""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self._channel = channel
        self._entry = ("authorization", f"Bearer {token}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _WithToken(self._channel.unary_unary(*args, **kwargs), self._entry)

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _WithToken(self._channel.unary_stream(*args, **kwargs), self._entry)

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _WithToken(self._channel.stream_unary(*args, **kwargs), self._entry)

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _WithToken(self._channel.stream_stream(*args, **kwargs), self._entry)


def aio_channel(
    address: str, security: ClientSecurity | None, options: Sequence[tuple[str, Any]]
) -> Any:
    """A grpc.aio channel to ``address`` with ``security`` (None: plaintext, anonymous)."""
    security = security or ClientSecurity()
    if security.uses_tls:
        channel = grpc.aio.secure_channel(
            address, security.credentials(), options=security.channel_options(options)
        )
    else:
        channel = grpc.aio.insecure_channel(address, options=list(options))
    return _TokenChannel(channel, security.token) if security.token else channel


def sync_channel(
    address: str, security: ClientSecurity | None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """A blocking channel (health checks, status probes; no token: those calls are public)."""
    if security is None or not security.uses_tls:
        return grpc.insecure_channel(address, options=list(options))
    return grpc.secure_channel(
        address, security.credentials(), options=security.channel_options(options)
    )


def security_from(
    tls_dir: str | Path | None = None,
    principal: str | None = None,
    token: str | None = None,
) -> ClientSecurity | None:
    """What a command line asked for: ``--tls-dir`` (else ``$QUORUMLOG_TLS_DIR``),
    ``--tls-client`` and ``--token`` (else ``$QUORUMLOG_TOKEN``); None when none."""
    tls_dir = tls_dir or os.environ.get(TLS_DIR_ENV) or None
    token = token or os.environ.get(TOKEN_ENV) or None
    if tls_dir is not None:
        return ClientSecurity.from_dir(tls_dir, principal, token)
    if token is not None:
        return ClientSecurity(token=token)
    return None
