"""A node's security settings, assembled once from its configuration for the server to wire.

Owns: loading the TLS material (``--tls-dir``) and token key, building the interceptors of
both ports (``quorumlog.node.api.guard``) and binding a port with or without TLS. Must never:
enforce anything itself (the guards do) or keep state beyond what the configuration says.

Plaintext: without ``--tls-dir`` both ports are plaintext; ``NodeConfig.validate`` allows
that only on loopback addresses unless ``--plaintext`` was given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from quorumlog.node.api.audit import AuditLog
from quorumlog.node.api.auth import TokenKey
from quorumlog.node.api.guard import ClientGuard, PeerGuard
from quorumlog.node.api.ratelimit import RateLimiter
from quorumlog.node.common.config import NodeConfig
from quorumlog.node.common.tls import NodeTls, TlsError, load_node_tls
from quorumlog.node.state.acl import AclStore


class NodeSecurity:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.tls: NodeTls | None = (
            load_node_tls(config.tls_dir, config.name) if config.tls_dir is not None else None
        )
        self.token_key: TokenKey | None = None
        if config.token_key is not None:
            try:
                self.token_key = TokenKey.load(config.token_key)
            except ValueError as error:
                raise TlsError(f"--token-key: {error}") from None
        self.audit = AuditLog(config.name, config.audit_log)

    def client_interceptors(self, acl: AclStore) -> list[Any]:
        rate = RateLimiter(self.config.rate_limit) if self.config.rate_limit > 0 else None
        return [ClientGuard(acl, token_key=self.token_key, rate=rate, audit=self.audit)]

    def peer_interceptors(self, allowed: Callable[[], set[str] | None]) -> list[Any]:
        """With TLS: only allowed node certificates; plaintext has no identity to check."""
        return [PeerGuard(allowed, tls=self.tls is not None)]

    def bind(self, server: grpc.aio.Server, address: str, flag: str) -> None:
        try:
            if self.tls is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, self.tls.server_credentials())
        except RuntimeError as error:
            raise OSError(f"{flag} {address}: cannot listen ({error})") from error
        if port == 0:
            raise OSError(f"{flag} {address}: cannot listen (address in use?)")
