"""A node's operational surface: Prometheus metrics, the gRPC health service, config errors."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from cluster_harness import free_ports, running_cluster, wait_until
from grpc_health.v1 import health_pb2, health_pb2_grpc

from quorumlog.client import Client
from quorumlog.client.errors import NotFound
from quorumlog.node.process.priority import BACKGROUND_NICE, rocksdb_threads

pytestmark = pytest.mark.cluster


def _metrics(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def test_metrics_and_health_of_a_single_node(tmp_path: Path) -> None:
    (metrics_port,) = free_ports(1)
    metrics_addr = f"127.0.0.1:{metrics_port}"
    with running_cluster(tmp_path, size=1, extra_args=["--metrics-addr", metrics_addr]) as cluster:
        node = cluster.nodes["n1"]
        text = wait_until(
            lambda: (body := _metrics(metrics_addr)) and "quorumlog_raft_is_leader" in body
            and body,
            30, "metrics endpoint",
        )
        # One group: its figures carry the shard and group labels too ("0": the only shard).
        assert 'quorumlog_raft_is_leader{group="0",node="n1",shard="0"} 1.0' in text
        assert "quorumlog_raft_term" in text and "quorumlog_raft_commit_index" in text
        # What the node's memory is made of, and the process's own figures.
        for metric in ("quorumlog_rocksdb_memtable_bytes", "quorumlog_rocksdb_block_cache_bytes",
                       "quorumlog_rocksdb_level0_files",
                       "quorumlog_rocksdb_pending_compaction_bytes"):
            assert f'{metric}{{node="n1"}}' in text, metric
        memtable = float(text.split('quorumlog_rocksdb_memtable_bytes{node="n1"} ')[1].split()[0])
        assert memtable > 0
        rss = float(text.split("\nprocess_resident_memory_bytes ")[1].split()[0])
        assert 10e6 < rss < 2e9
        # The disk and storage health (issue 21): room above the reserve, a clean scrub.
        free = float(text.split('quorumlog_disk_free_bytes{node="n1"} ')[1].split()[0])
        reserve = float(text.split('quorumlog_disk_reserve_bytes{node="n1"} ')[1].split()[0])
        assert free > reserve == 64 << 20
        assert 'quorumlog_disk_writes_refused{node="n1"} 0.0' in text
        assert 'quorumlog_incarnation_votes_dropped_total{node="n1"} 0.0' in text
        wait_until(lambda: 'quorumlog_scrub_passes_total{node="n1"} 1.0' in _metrics(
            metrics_addr), 30, "the scrub pass at start")
        with Client(cluster.addresses, deadline=20) as client:
            client.append("metrics-session", b"one")
            with pytest.raises(NotFound):
                client.describe_session("no-such-session")
        # The server observes a call's latency when its handler has finished, which may be
        # just after the client got the reply (an abort sends the status first): wait for it.
        text = wait_until(
            lambda: (body := _metrics(metrics_addr))
            and 'code="NOT_FOUND",method="DescribeSession"' in body and body,
            10, "the failed DescribeSession in the request metrics",
        )
        # the SDK sends appends as AppendBatch requests on one AppendStream call; each
        # request the stream carries is timed like a unary call
        assert 'quorumlog_request_seconds_count{code="OK",method="AppendStream"}' in text, text
        with grpc.insecure_channel(node.client_addr) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for service in ("", "quorumlog.v1.QuorumLog"):
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # Housekeeping: RocksDB's flush and compaction threads run at a lower priority than
        # the event loop's thread.
        assert node.process is not None
        tasks = Path(f"/proc/{node.process.pid}/task")
        wait_until(
            lambda: (threads := rocksdb_threads(tasks)) and all(
                os.getpriority(os.PRIO_PROCESS, thread) == BACKGROUND_NICE for thread in threads),
            30, "RocksDB threads at the background priority",
        )
        assert os.getpriority(os.PRIO_PROCESS, node.process.pid) == 0


def _node(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quorumlog.client.cli", "node", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_node_refuses_bad_configuration_with_one_line(tmp_path: Path) -> None:
    base = ["--id", "n1", "--client-addr", "127.0.0.1:7001", "--peer-addr", "127.0.0.1:7101"]
    cases = {
        "missing --peers": ([*base, "--data-dir", str(tmp_path)], "missing --peers"),
        "self not in peers": (
            [*base, "--peers", "n2=127.0.0.1:7102", "--data-dir", str(tmp_path)],
            "--peers must include this node",
        ),
        "bad address": (
            ["--id", "n1", "--client-addr", "nope", "--peer-addr", "127.0.0.1:7101",
             "--peers", "n1=127.0.0.1:7101", "--data-dir", str(tmp_path)],
            "--client-addr: expected HOST:PORT",
        ),
        "duplicate peer": (
            [*base, "--peers", "n1=127.0.0.1:7101,n1=127.0.0.1:7102", "--data-dir", str(tmp_path)],
            "listed twice",
        ),
        "bad toml": (["--config", str(tmp_path / "missing.toml")], "cannot read"),
    }
    for name, (args, expected) in cases.items():
        result = _node(*args)
        assert result.returncode == 2, (name, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (name, result.stderr)
        assert "Traceback" not in result.stderr


def test_node_reads_its_settings_from_toml(tmp_path: Path) -> None:
    client_port, peer_port = free_ports(2)
    config = tmp_path / "node.toml"
    config.write_text(
        f'id = "n1"\nclient_addr = "127.0.0.1:{client_port}"\n'
        f'peer_addr = "127.0.0.1:{peer_port}"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[peers]\nn1 = "127.0.0.1:{peer_port}"\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "quorumlog.client.cli", "node", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        from quorumlog.proto import quorumlog_pb2, quorumlog_pb2_grpc

        def leader() -> bool:
            with grpc.insecure_channel(f"127.0.0.1:{client_port}") as channel:
                stub = quorumlog_pb2_grpc.QuorumLogStub(channel)  # type: ignore[no-untyped-call]
                status = stub.ClusterStatus(quorumlog_pb2.ClusterStatusRequest(), timeout=2)
                return bool(status.role == "leader" and status.id == "n1")

        wait_until(leader, 30, "the TOML-configured node to lead")
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()[-2000:]


def test_peer_route_flag_overrides_how_this_node_dials_members() -> None:
    import argparse

    from quorumlog.client.cli.cmd_node import add_arguments, config_from_args
    from quorumlog.node.common.config import ConfigError

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--id", "n1", "--client-addr", "127.0.0.1:7001", "--peer-addr", "127.0.0.1:7101",
            "--peers", "n1=127.0.0.1:7101,n2=127.0.0.1:7102", "--data-dir", "/tmp/x"]
    config = config_from_args(parser.parse_args([*base, "--peer-route", "n2=127.0.0.1:9999"]))
    assert config.peer_routes == {"n2": "127.0.0.1:9999"}
    assert config.peers["n2"] == "127.0.0.1:7102"  # the member record stays the real address
    with pytest.raises(ConfigError, match="--peer-route: expected NAME=HOST:PORT"):
        config_from_args(parser.parse_args([*base, "--peer-route", "n2"]))


def test_transport_dials_a_routed_member_at_its_route() -> None:
    import asyncio

    from quorumlog.node.replication.transport import PeerInfo, PeerTransport

    async def links() -> dict[int, str]:
        transport = PeerTransport(
            self_name="n1", self_id=1, cluster_id=1, client_address="127.0.0.1:1",
            peers={2: PeerInfo("n2", "127.0.0.1:7102"), 3: PeerInfo("n3", "127.0.0.1:7103")},
            on_messages=lambda messages: None, on_unreachable=lambda peer: None,
            routes={"n2": "127.0.0.1:9999"},
        )
        transport.start()
        try:
            return {peer: link.address for peer, link in transport.links.items()}
        finally:
            await transport.stop()

    assert asyncio.run(links()) == {2: "127.0.0.1:9999", 3: "127.0.0.1:7103"}
