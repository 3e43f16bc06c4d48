"""Who is calling: the principal of a client call, from its certificate or a bearer token.

Owns: the bearer token format and its signing and verification, and resolving a call's
principal. A call with ``authorization: Bearer <token>`` metadata is that token's subject
(the token must verify against the node's ``--token-key``; there is no fallback to the
certificate once a token is presented). Otherwise a TLS client certificate gives its common
name (``OU=client``) or ``node:<name>`` (a node certificate); a plaintext call without a token
is the anonymous principal ``""``.

Token: ``ql1.<payload>.<signature>``, both base64url without padding; the payload is JSON
``{"sub": principal, "exp": unix seconds, "alg": "HS256" | "EdDSA"}`` and the signature is over
``ql1.<payload>``: HMAC-SHA256 with a shared secret, or Ed25519 (nodes hold only the public
key). The key file decides the algorithm (a PEM Ed25519 key, else the file's bytes are the HMAC
secret); a token naming the other algorithm is refused, so one cannot be passed off as the
other. Expiry is checked against this node's clock.

Must never: decide what a principal may do (``quorumlog.node.state.acl``), accept an unsigned,
expired or malformed token, or put a token into a log line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from quorumlog.node.common import tls

ANONYMOUS = ""
AUTHORIZATION_KEY = "authorization"
BEARER = "bearer "
TOKEN_VERSION = "ql1"
MAX_TOKEN_BYTES = 4096
MAX_PRINCIPAL_BYTES = 128
HMAC_ALG = "HS256"
ED25519_ALG = "EdDSA"


class Unauthenticated(Exception):
    """The call's credentials are invalid; the message says why (never the token)."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class TokenKey:
    """One key: an HMAC secret, an Ed25519 private key (signs and verifies) or an Ed25519
    public key (verifies only)."""

    algorithm: str
    secret: bytes = b""
    private: ed25519.Ed25519PrivateKey | None = None
    public: ed25519.Ed25519PublicKey | None = None

    @staticmethod
    def from_bytes(data: bytes) -> TokenKey:
        if b"-----BEGIN" in data:
            if b"PRIVATE KEY" in data:
                private = serialization.load_pem_private_key(data, password=None)
                if not isinstance(private, ed25519.Ed25519PrivateKey):
                    raise ValueError("the private key is not an Ed25519 key")
                return TokenKey(ED25519_ALG, private=private, public=private.public_key())
            public = serialization.load_pem_public_key(data)
            if not isinstance(public, ed25519.Ed25519PublicKey):
                raise ValueError("the public key is not an Ed25519 key")
            return TokenKey(ED25519_ALG, public=public)
        secret = data.strip()
        if len(secret) < 16:
            raise ValueError("an HMAC secret must be at least 16 bytes")
        return TokenKey(HMAC_ALG, secret=secret)

    @staticmethod
    def load(path: Path) -> TokenKey:
        try:
            return TokenKey.from_bytes(path.read_bytes())
        except OSError as error:
            raise ValueError(f"cannot read token key {path}: {error.strerror}") from None

    def sign(self, principal: str, ttl_seconds: float, now: float | None = None) -> str:
        issued = time.time() if now is None else now
        payload = {"sub": principal, "exp": int(issued + ttl_seconds), "alg": self.algorithm}
        head = f"{TOKEN_VERSION}.{_b64encode(json.dumps(payload, sort_keys=True).encode())}"
        if self.algorithm == HMAC_ALG:
            signature = hmac.new(self.secret, head.encode(), hashlib.sha256).digest()
        elif self.private is not None:
            signature = self.private.sign(head.encode())
        else:
            raise ValueError("an Ed25519 public key cannot sign; use the private key")
        return f"{head}.{_b64encode(signature)}"

    def verify(self, token: str, now: float | None = None) -> str:
        """The token's principal; ``Unauthenticated`` unless it is valid and unexpired."""
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated("bearer token too long")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_VERSION:
            raise Unauthenticated("malformed bearer token")
        head = f"{parts[0]}.{parts[1]}".encode()
        try:
            signature = _b64decode(parts[2])
            payload = json.loads(_b64decode(parts[1]))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise Unauthenticated("malformed bearer token") from None
        if not isinstance(payload, dict) or payload.get("alg") != self.algorithm:
            raise Unauthenticated("bearer token is not signed with this cluster's key type")
        if self.algorithm == HMAC_ALG:
            expected = hmac.new(self.secret, head, hashlib.sha256).digest()
            if not hmac.compare_digest(expected, signature):
                raise Unauthenticated("bearer token signature does not verify")
        else:
            assert self.public is not None
            try:
                self.public.verify(signature, head)
            except InvalidSignature:
                raise Unauthenticated("bearer token signature does not verify") from None
        subject, expires = payload.get("sub"), payload.get("exp")
        if not isinstance(subject, str) or not isinstance(expires, int):
            raise Unauthenticated("bearer token lacks sub or exp")
        if not subject or len(subject.encode()) > MAX_PRINCIPAL_BYTES:
            raise Unauthenticated("bearer token subject is empty or too long")
        if expires <= (time.time() if now is None else now):
            raise Unauthenticated("bearer token expired")
        return subject


def bearer_token(metadata: Any) -> str | None:
    """The token of an ``authorization: Bearer ...`` entry in the invocation metadata."""
    for key, value in metadata or ():
        if key == AUTHORIZATION_KEY:
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            if not text.lower().startswith(BEARER):
                raise Unauthenticated("authorization metadata is not a Bearer token")
            return text[len(BEARER) :].strip()
    return None


def principal_of(
    context: grpc.aio.ServicerContext[Any, Any], token_key: TokenKey | None
) -> str:
    """The call's principal (module docstring); raises ``Unauthenticated`` or
    ``PermissionError`` (TLS older than 1.2)."""
    token = bearer_token(context.invocation_metadata())
    if token is not None:
        if token_key is None:
            raise Unauthenticated("this node accepts no bearer tokens (no --token-key)")
        return token_key.verify(token)
    identity = tls.caller(context)
    if identity is None:
        return ANONYMOUS
    return f"node:{identity.name}" if identity.is_node else identity.name
