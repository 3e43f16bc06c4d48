"""Shared by the examples: the ``--cluster`` flag (default: the ``make up`` cluster) and a
run id, so running an example again never meets the previous run's sessions."""

from __future__ import annotations

import argparse
import os
import uuid

DEFAULT_CLUSTER = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"


def cluster_from_args(description: str) -> str:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--cluster", default=os.environ.get("QUORUMLOG_CLUSTER") or DEFAULT_CLUSTER,
        help="node client addresses (default: $QUORUMLOG_CLUSTER, else the `make up` cluster)",
    )
    cluster: str = parser.parse_args().cluster
    return cluster


def run_id() -> str:
    return uuid.uuid4().hex[:8]
