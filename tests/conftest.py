"""Shared pytest options for quorumlog's tests."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regen-traces",
        action="store_true",
        default=False,
        help="rewrite tests/traces/*.txt with the output the core produces now",
    )
