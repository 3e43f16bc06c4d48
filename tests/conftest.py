"""Shared pytest options and fixtures for quorumlog's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faultfs_harness import Mount, node_mounts


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regen-traces",
        action="store_true",
        default=False,
        help="rewrite tests/traces/*.txt with the output the core produces now",
    )


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[dict[str, Mount]]:
    """A fault filesystem at ``tmp_path/<node>`` for n1..n3, where ``LocalCluster(tmp_path)``
    keeps each node's data (``faultfs_harness.node_mounts``)."""
    with node_mounts(tmp_path) as made:
        yield made
