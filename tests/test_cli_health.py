"""``quorumlog health`` (the container/orchestrator health check): exit 0 and one line when a
real node's gRPC health service answers SERVING, exit 1 with one line on stderr when it is
NOT_SERVING, does not know the service, or nobody listens; exit 2 for a malformed address."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cluster_harness import free_ports, running_cluster
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from quorumlog.client import cli

pytestmark = pytest.mark.cluster

CLI_TIMEOUT = 60.0


def health_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "QUORUMLOG_HEALTH_ADDR"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "quorumlog.client.cli", "health", *args],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, env=environment, check=False,
    )


def test_health_of_a_real_node(tmp_path: Path) -> None:
    with running_cluster(tmp_path, size=1) as cluster:
        address = cluster.nodes["n1"].client_addr
        node = health_cli("--address", address)
        assert node.returncode == 0, node.stderr
        assert node.stdout.splitlines() == [f"{address} service '': SERVING"]
        assert node.stderr == ""

        service = health_cli("--service", "quorumlog.v1.QuorumLog",
                             env={"QUORUMLOG_HEALTH_ADDR": address})
        assert service.returncode == 0, service.stderr
        assert "SERVING" in service.stdout

        unknown = health_cli("--address", address, "--service", "no.such.Service")
        assert unknown.returncode == 1
        assert unknown.stdout == ""
        (line,) = unknown.stderr.splitlines()
        assert line.startswith("quorumlog health: ") and "NOT_FOUND" in line


def test_health_of_nothing_listening_is_one_line_and_exit_1() -> None:
    (port,) = free_ports(1)
    result = health_cli("--address", f"127.0.0.1:{port}", "--deadline", "2")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert f"127.0.0.1:{port}" in line
    assert "UNAVAILABLE" in line or "DEADLINE_EXCEEDED" in line


@pytest.fixture
def not_serving_address() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait()


def test_not_serving_is_exit_1(
    not_serving_address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["health", "--address", not_serving_address]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"quorumlog health: {not_serving_address} service '': NOT_SERVING"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--address", "no-port"], "--address: expected HOST:PORT"),
        (["--address", "127.0.0.1:7001", "--deadline", "soon"], "--deadline must be a number"),
        (["--address", "127.0.0.1:7001", "--deadline", "0"], "--deadline must be positive"),
    ],
)
def test_bad_arguments_are_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["health", *args]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert message in line
