"""Who a browser is: the console's sealed cookie, the login token in it, and its CSRF token.

Owns: :class:`Identity` (a CSRF token, and after a login the user's cluster token and the
principal it names), sealing it into a cookie and opening it again (Fernet: AES-CBC with an
HMAC-SHA256, so the cookie can be neither read nor forged without the key, and it expires
after ``MAX_AGE_S``), and the CSRF comparison. Must never: verify a token (the cluster does,
on every call the console makes with it), log a token, or accept a cookie it cannot open.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken

COOKIE = "quorumlog_console"
MAX_AGE_S = 12 * 3600


@dataclass(frozen=True, slots=True)
class Identity:
    csrf: str
    token: str | None = None  # the user's cluster token (login); None: the console's own
    principal: str = ""  # the token's subject, for display

    @property
    def logged_in(self) -> bool:
        return self.token is not None


def fresh(token: str | None = None) -> Identity:
    """A new identity with a new CSRF token (a login always gets a new one)."""
    principal = "" if token is None else principal_of(token)
    return Identity(secrets.token_urlsafe(32), token, principal)


def principal_of(token: str) -> str:
    """The subject a ``ql1.<payload>.<signature>`` token names ("" when it names none). For
    display only: whether it is valid is the cluster's answer to the calls made with it."""
    parts = token.split(".")
    if len(parts) != 3:
        return ""
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return ""
    subject = payload.get("sub") if isinstance(payload, dict) else None
    return subject if isinstance(subject, str) else ""


class CookieSeal:
    """Seals identities into cookie values with one key."""

    def __init__(self, key: bytes | None = None) -> None:
        self._fernet = Fernet(key or Fernet.generate_key())

    def seal(self, identity: Identity) -> str:
        body = json.dumps({"c": identity.csrf, "t": identity.token, "p": identity.principal})
        return self._fernet.encrypt(body.encode("utf-8")).decode("ascii")

    def open(self, value: str | None) -> Identity | None:
        """The identity in ``value``; None when it is missing, forged, damaged or expired."""
        if not value:
            return None
        try:
            body = json.loads(self._fernet.decrypt(value.encode("ascii"), ttl=MAX_AGE_S))
        except (InvalidToken, ValueError, UnicodeEncodeError):
            return None
        csrf, token, principal = body.get("c"), body.get("t"), body.get("p")
        if not isinstance(csrf, str) or not isinstance(principal, str):
            return None
        if token is not None and not isinstance(token, str):
            return None
        return Identity(csrf, token, principal)


def csrf_matches(identity: Identity, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(identity.csrf, str(submitted))


def valid_key(key: bytes) -> bool:
    """Whether ``key`` can seal cookies (32 bytes, url-safe base64, as Fernet wants)."""
    try:
        Fernet(key)
    except (ValueError, binascii.Error):
        return False
    return True
