"""Mutual TLS on both ports, development certificates, and when plaintext is allowed."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from security_harness import (
    expired_client,
    foreign_client,
    node_as_client,
    probe_client_port,
    probe_peer_port,
    running_tls_cluster,
    tls_dir,
)
from waiting import wait_until

from quorumlog.client import Client, errors
from quorumlog.client.cli import main
from quorumlog.client.sdk import Consistency
from quorumlog.client.tls import ClientSecurity
from quorumlog.node.common.config import ConfigError, NodeConfig
from quorumlog.node.process.launcher import free_base_port

pytestmark = pytest.mark.cluster

QUORUMLOG = [sys.executable, "-m", "quorumlog.client.cli"]


def _subject(path: Path) -> dict[str, str]:
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    return {
        attribute.oid._name: str(attribute.value)  # type: ignore[attr-defined]
        for attribute in certificate.subject
    }


def test_certs_init_creates_ca_nodes_clients_and_reuses_the_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "tls"
    assert main(["certs", "init", str(directory), "--nodes", "n1,n2", "--clients", "ops"]) == 0
    assert "node-n1.pem" in capsys.readouterr().out
    for name in ("ca.pem", "ca.key", "node-n1.pem", "node-n2.key", "client.pem",
                 "client-ops.pem", "token.key", "token.pub"):
        assert (directory / name).exists(), name
    for key in directory.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    node = _subject(directory / "node-n1.pem")
    assert (node["organizationalUnitName"], node["commonName"]) == ("node", "n1")
    client = _subject(directory / "client.pem")
    assert (client["organizationalUnitName"], client["commonName"]) == ("client", "ops")
    san = x509.load_pem_x509_certificate((directory / "node-n2.pem").read_bytes()).extensions
    names = san.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "n2" in names.get_values_for_type(x509.DNSName)
    ca_before = (directory / "ca.pem").read_bytes()
    # Extending the directory keeps the CA (new certificates join the same cluster) and the
    # default client certificate.
    assert main(["certs", "init", str(directory), "--nodes", "n4", "--clients", "eve"]) == 0
    assert (directory / "ca.pem").read_bytes() == ca_before
    assert _subject(directory / "client.pem")["commonName"] == "ops"
    issuer = x509.load_pem_x509_certificate((directory / "node-n4.pem").read_bytes()).issuer
    assert issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value.startswith("quorumlog")
    assert main(["certs", "init", str(directory), "--nodes", "bad name"]) == 2


def _config(**overrides: object) -> NodeConfig:
    values: dict[str, object] = {
        "name": "n1", "client_addr": "10.0.0.5:7001", "peer_addr": "10.0.0.5:7101",
        "peers": {"n1": "10.0.0.5:7101"}, "data_dir": Path("/nonexistent"),
    }
    values.update(overrides)
    return NodeConfig(**values)  # type: ignore[arg-type]


def test_plaintext_only_on_loopback_unless_asked_for() -> None:
    with pytest.raises(ConfigError, match=r"--tls-dir DIR.*--plaintext"):
        _config().validate()
    _config(plaintext=True).validate()
    _config(tls_dir=Path("/etc/quorumlog/tls")).validate()
    _config(client_addr="127.0.0.1:7001", peer_addr="127.0.0.1:7101",
            peers={"n1": "127.0.0.1:7101"}).validate()
    with pytest.raises(ConfigError, match="--peer-addr"):
        _config(client_addr="localhost:7001").validate()


def test_mutual_tls_refuses_missing_foreign_expired_and_misplaced_certificates(
    tmp_path: Path,
) -> None:
    directory = tls_dir(tmp_path, nodes=("n1", "n9"))
    with running_tls_cluster(tmp_path, directory, size=1) as cluster:
        node = cluster.nodes["n1"]
        admin = ClientSecurity.from_dir(directory)
        ca = (directory / "ca.pem").read_bytes()
        with Client(cluster.addresses, deadline=10, security=admin) as client:
            assert client.append("tls-1", b"a", b"b").first_offset == 0
            assert [r.data for r in client.read("tls-1").records] == [b"a", b"b"]
        assert probe_client_port(node.client_addr, admin) == grpc.StatusCode.OK
        refused = {
            "no certificate": ClientSecurity(ca=ca),
            "another CA": foreign_client(tmp_path, directory),
            "expired": expired_client(directory),
        }
        for what, security in refused.items():
            for probe, address in ((probe_client_port, node.client_addr),
                                   (probe_peer_port, node.peer_addr)):
                code = probe(address, security)
                assert code == grpc.StatusCode.UNAVAILABLE, (what, address, code)
        assert probe_client_port(node.client_addr, None) == grpc.StatusCode.UNAVAILABLE
        assert probe_peer_port(node.peer_addr, None) == grpc.StatusCode.UNAVAILABLE
        # The handshake succeeds, the peer port still refuses: a client certificate...
        assert probe_peer_port(node.peer_addr, admin) == grpc.StatusCode.PERMISSION_DENIED
        # ...and a node certificate that is not on the allow list (n9 is no member).
        n9 = node_as_client(directory, "n9")
        assert probe_peer_port(node.peer_addr, n9) == grpc.StatusCode.PERMISSION_DENIED
        # A member's certificate is admitted (the batch of another cluster id then is not),
        # but only for batches from itself: it cannot speak for another node.
        n1 = node_as_client(directory, "n1")
        assert probe_peer_port(node.peer_addr, n1, sender=1) == grpc.StatusCode.INVALID_ARGUMENT
        assert probe_peer_port(node.peer_addr, n1, sender=2) == grpc.StatusCode.PERMISSION_DENIED
        assert cluster.nodes["n1"].alive


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*QUORUMLOG, *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False,
    )


def test_cluster_up_and_every_client_command_over_tls(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    assert _run("certs", "init", str(directory), "--clients", "admin,bob").returncode == 0
    base = free_base_port()  # cluster up uses base..base+2, base+100.. and base+200..
    up = subprocess.Popen(
        [*QUORUMLOG, "cluster", "up", "--nodes", "3", "--data-dir", str(tmp_path / "data"),
         "--base-port", str(base), "--tls-dir", str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    try:
        assert up.stdout is not None

        def ready() -> bool:
            line = up.stdout.readline() if up.stdout else ""
            lines.append(line)
            return "cluster ready" in line or up.poll() is not None
        wait_until(ready, 60, "cluster ready")
        assert "cluster ready" in lines[-1], "".join(lines)
        cluster = ",".join(f"127.0.0.1:{base + i}" for i in range(3))
        tls = ["--cluster", cluster, "--tls-dir", str(directory), "--deadline", "15"]
        appended = _run("append", "orders-1", "created", "paid", *tls, "--json")
        assert appended.returncode == 0, appended.stderr
        assert json.loads(appended.stdout)["offsets"] == [0, 1]
        read = _run("read", "orders-1", *tls, "--json")
        assert [r["data"] for r in json.loads(read.stdout)["messages"]] == ["created", "paid"]
        sessions = _run("sessions", *tls, "--json")
        assert "orders-1" in sessions.stdout, sessions.stderr
        status = _run("status", *tls, "--json")
        assert status.returncode == 0 and len(json.loads(status.stdout)) == 3
        health = _run("health", "--address", f"127.0.0.1:{base}", "--tls-dir", str(directory))
        assert health.returncode == 0, health.stderr
        backup = _run("backup", "--out", str(tmp_path / "b.qlbackup"), *tls)
        assert backup.returncode == 0 and (tmp_path / "b.qlbackup").stat().st_size > 0
        consumed = _run("consume", "orders-1", "--group", "tls-g", "--max", "2", *tls, "--json")
        assert consumed.returncode == 0, consumed.stderr
        assert [m["data"] for m in json.loads(consumed.stdout)["messages"]] == ["created", "paid"]
        dead = _run("dlq", "list", "orders-1", *tls, "--json")
        assert dead.returncode == 0 and json.loads(dead.stdout)["dead_letters"] == [], dead.stderr
        bench = _run("bench-consume", "--sessions", "2", "--messages", "20", "--batch", "10",
                     "--cluster", cluster, "--tls-dir", str(directory), "--json")
        assert bench.returncode == 0, bench.stderr
        assert json.loads(bench.stdout)["messages"] == 40
        leader = next(row["id"] for row in json.loads(status.stdout) if row["role"] == "leader")
        target = "n2" if leader != "n2" else "n3"
        moved = _run("cluster", "transfer-leader", target, *tls)
        assert moved.returncode == 0, moved.stderr
        # ACLs from the command line: bob may append to orders/ only.
        for rule in (("admin", "manage"), ("bob", "append", "orders/")):
            assert _run("acl", "grant", *rule, *tls).returncode == 0
        assert _run("acl", "enable", *tls).returncode == 0
        listing = json.loads(_run("acl", "list", *tls, "--json").stdout)
        assert listing["enabled"] and listing["caller"] == "admin" and len(listing["rules"]) == 2
        as_bob = [*tls, "--tls-client", "bob"]
        assert _run("append", "orders-2", "x", *as_bob).returncode == 1  # not under orders/
        denied = _run("append", "orders-1", "x", *tls)  # admin may manage, not append
        assert denied.returncode == 1 and "permission_denied" in denied.stderr, denied.stderr
        assert _run("append", "orders/7", "x", *as_bob).returncode == 0
        # Without --tls-dir the same commands are refused at the handshake.
        plain = _run("append", "orders-1", "x", "--cluster", cluster, "--deadline", "3")
        assert plain.returncode == 1 and "unavailable" in plain.stderr
        unhealthy = _run("health", "--address", f"127.0.0.1:{base}")
        assert unhealthy.returncode == 1
    finally:
        up.terminate()
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        if up.stdout is not None:
            up.stdout.close()


def test_a_node_joins_and_catches_up_over_tls(tmp_path: Path) -> None:
    """A joining node (no member records yet) admits the leader's node certificate, the
    leader verifies it by name, state transfer runs over the TLS peer port, and afterwards
    the new member's peer port admits members only."""
    directory = tls_dir(tmp_path, nodes=("n1", "n2", "n9"))
    with running_tls_cluster(tmp_path, directory, size=1) as cluster:
        admin = ClientSecurity.from_dir(directory)
        with Client(cluster.addresses, deadline=20, security=admin) as client:
            for i in range(20):
                client.append("joined", f"m{i}".encode())
            n2 = cluster.add_member("n2", ["--tls-dir", str(directory), "--join"])
            cluster.start("n2")
            client.add_node("n2", n2.peer_addr, n2.client_addr, deadline=60)
        with Client([n2.client_addr], deadline=20, security=admin) as on_n2:
            def caught_up() -> bool:
                try:
                    page = on_n2.read("joined", consistency=Consistency.FOLLOWER)
                except errors.NotFound:
                    return False  # n2 has not applied the session yet
                return len(page.records) == 20

            wait_until(caught_up, 30, "n2 to serve every message")
        # n2 now has member records: a node certificate that is no member is refused.
        n9 = node_as_client(directory, "n9")
        assert probe_peer_port(n2.peer_addr, n9) == grpc.StatusCode.PERMISSION_DENIED
        assert cluster.nodes["n1"].alive and n2.alive


def test_security_settings_from_toml_and_flags(tmp_path: Path) -> None:
    from quorumlog.client.cli.cmd_node import add_arguments, config_from_args
    from quorumlog.node.common.config import load_toml

    toml = tmp_path / "n1.toml"
    toml.write_text(
        'tls_dir = "/etc/ql/tls"\nplaintext = false\npeer_allow = ["n7", "n8"]\n'
        'token_key = "/etc/ql/token.pub"\nrate_limit = 50\naudit_log = "/var/log/ql.jsonl"\n'
    )
    values = load_toml(toml)
    assert values["tls_dir"] == Path("/etc/ql/tls") and values["peer_allow"] == ["n7", "n8"]
    assert values["token_key"] == Path("/etc/ql/token.pub") and values["rate_limit"] == 50
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([
        "--id", "n1", "--client-addr", "0.0.0.0:7001", "--peer-addr", "0.0.0.0:7101",
        "--peers", "n1=0.0.0.0:7101", "--data-dir", str(tmp_path), "--plaintext",
        "--peer-allow", "n9", "--rate-limit", "5", "--audit-log", str(tmp_path / "a"),
    ])
    config = config_from_args(args)
    config.validate()
    assert (config.plaintext, config.peer_allow, config.rate_limit) == (True, ["n9"], 5.0)
