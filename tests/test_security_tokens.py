"""Bearer tokens (HMAC and Ed25519), per-principal rate limits and the audit log."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from cluster_harness import running_cluster

from quorumlog.client import Client, errors
from quorumlog.client.cli import main
from quorumlog.client.tls import ClientSecurity
from quorumlog.node.api.auth import TokenKey, Unauthenticated
from quorumlog.node.api.ratelimit import RateLimiter

pytestmark = pytest.mark.cluster

NOW = 1_800_000_000.0


def _hmac_key() -> TokenKey:
    return TokenKey.from_bytes(b"0123456789abcdef-secret")


def _ed25519(tmp_path: Path) -> tuple[TokenKey, TokenKey]:
    from quorumlog.client.cli import certs

    certs.write_token_pair(tmp_path)
    return (TokenKey.load(tmp_path / certs.TOKEN_KEY), TokenKey.load(tmp_path / certs.TOKEN_PUB))


def test_hmac_tokens_verify_until_they_expire() -> None:
    key = _hmac_key()
    token = key.sign("alice", 60, now=NOW)
    assert key.verify(token, now=NOW + 59) == "alice"
    with pytest.raises(Unauthenticated, match="expired"):
        key.verify(token, now=NOW + 60)
    other = TokenKey.from_bytes(b"another-secret-of-16+")
    with pytest.raises(Unauthenticated, match="signature"):
        other.verify(token, now=NOW)


def test_ed25519_tokens_verify_with_the_public_key_only(tmp_path: Path) -> None:
    private, public = _ed25519(tmp_path)
    token = private.sign("svc-orders", 60, now=NOW)
    assert public.verify(token, now=NOW) == "svc-orders"
    with pytest.raises(ValueError, match="cannot sign"):
        public.sign("x", 60)
    # An HMAC token is never taken for an Ed25519 one (and the other way round).
    with pytest.raises(Unauthenticated, match="key type"):
        public.verify(_hmac_key().sign("alice", 60, now=NOW), now=NOW)
    with pytest.raises(Unauthenticated, match="key type"):
        _hmac_key().verify(token, now=NOW)


@pytest.mark.parametrize("token", [
    "", "ql1", "ql1..", "ql2.e30.AA", "ql1.!!!.AA", "ql1.e30.AA", "x" * 5000,
    "ql1.eyJzdWIiOiAiYSJ9.AAAA",
])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(Unauthenticated):
        _hmac_key().verify(token, now=NOW)


def test_tampered_payload_is_refused() -> None:
    key = _hmac_key()
    head, payload, signature = key.sign("bob", 60, now=NOW).split(".")
    forged = key.sign("admin", 60, now=NOW).split(".")[1]
    with pytest.raises(Unauthenticated, match="signature"):
        key.verify(f"{head}.{forged}.{signature}", now=NOW)
    assert payload != forged


def test_rate_limiter_refills_per_principal() -> None:
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [True, True, False]
    assert limiter.take("b")  # another principal has its own budget
    now[0] = 0.5
    assert limiter.take("a") and not limiter.take("a")


def test_tokens_rate_limit_and_audit_on_a_live_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "token.secret"
    secret.write_text(secrets.token_hex(32))
    audit = tmp_path / "audit.jsonl"
    assert main(["certs", "token", "--key", str(secret), "--principal", "alice"]) == 0
    token = capsys.readouterr().out.strip()
    args = ["--token-key", str(secret), "--audit-log", str(audit), "--rate-limit", "20"]
    with running_cluster(tmp_path, size=1, extra_args=args) as cluster:
        alice = ClientSecurity(token=token)
        with Client(cluster.addresses, deadline=10, security=alice) as client:
            assert client.acl.list().caller == "alice"
            assert client.acl.grant("alice", "manage", "")
        forged = ClientSecurity(token=token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB"))
        with (
            Client(cluster.addresses, deadline=3, security=forged) as client,
            pytest.raises(errors.Unauthenticated, match="signature"),
        ):
            client.append("s", b"x")
        with Client(cluster.addresses, deadline=3) as client:  # no token: anonymous
            assert client.acl.list().caller == ""
            refused = None
            for _ in range(100):  # 20 requests/s with bursts of 20: some of 100 are refused
                try:
                    client.describe_session("nothing-here")
                except errors.NotFound:
                    continue
                except errors.ResourceExhausted as error:
                    refused = error
                    break
            assert refused is not None and "rate limit" in refused.message
        with Client(cluster.addresses, deadline=10, security=alice) as client:
            assert client.acl.set_enabled(True)
        mallory = ClientSecurity(token=TokenKey.load(secret).sign("mallory", 60))
        with (
            Client(cluster.addresses, deadline=3, security=mallory) as client,
            pytest.raises(errors.PermissionDenied, match="'mallory' may not manage"),
        ):
            client.acl.grant("mallory", "manage", "")
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    by_method = {(e["method"], e["principal"], e["outcome"]) for e in entries}
    assert ("/quorumlog.v1.Acl/List", "alice", "OK") in by_method
    assert ("/quorumlog.v1.Acl/Grant", "alice", "OK") in by_method
    assert ("/quorumlog.v1.Acl/Grant", "mallory", "PERMISSION_DENIED") in by_method  # refused
    grant = next(e for e in entries if e["method"].endswith("/Grant"))
    assert 'principal: "alice"' in grant["request"] and grant["peer"]
    assert token not in audit.read_text()
