"""The Raft core stays pure: no I/O, clock, threads, event loop or unseeded randomness."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import quorumlog.raft

FORBIDDEN_MODULES = {
    "asyncio",
    "grpc",
    "rocksdict",
    "socket",
    "threading",
    "multiprocessing",
    "time",
    "datetime",
    "os",
    "subprocess",
    "select",
    "selectors",
    "secrets",
    "uuid",
    "random",  # randomness comes only from the injected Config.rng
}

RAFT_DIR = Path(quorumlog.raft.__file__).parent


def _module_files() -> list[Path]:
    return sorted(RAFT_DIR.glob("*.py"))


def test_every_raft_module_imports() -> None:
    names = [info.name for info in pkgutil.iter_modules([str(RAFT_DIR)])]
    for required in ("raft", "rawnode", "log", "progress", "quorum", "storage", "invariants"):
        assert required in names, f"quorumlog.raft.{required} is missing"
    for name in names:
        importlib.import_module(f"quorumlog.raft.{name}")


def test_no_forbidden_imports() -> None:
    problems: list[str] = []
    for path in _module_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                        problems.append(f"{path.name}: import {alias.name}")
            elif isinstance(node, ast.ImportFrom) and node.module:
                root = node.module.split(".")[0]
                if root in FORBIDDEN_MODULES:
                    problems.append(f"{path.name}: from {node.module} import ...")
    assert problems == []


def test_core_loaded_without_forbidden_runtime_modules() -> None:
    """Importing the core in a fresh interpreter pulls in none of the forbidden libraries."""
    import subprocess
    import sys

    code = "import sys, importlib, pkgutil, quorumlog.raft as r\n"
    code += (
        "for info in pkgutil.iter_modules(r.__path__):\n"
        "    importlib.import_module('quorumlog.raft.' + info.name)\n"
        "bad = [m for m in ('asyncio', 'grpc', 'rocksdict', 'socket', 'threading')"
        " if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


def test_the_core_test_kit_has_no_clock_processes_or_io() -> None:
    """raft/testing (simulator, in-memory cluster, traces) is as pure as the core, except that
    it builds its own ``random.Random(seed)`` from the seed it is given; running many seeds in
    processes and timing them is the CLI's (``quorumlog.client.cli.cmd_sim``)."""
    problems: list[str] = []
    allowed = {"random"}
    for path in sorted((RAFT_DIR / "testing").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     else [])
            for name in names:
                root = name.split(".")[0]
                if root in FORBIDDEN_MODULES - allowed:
                    problems.append(f"testing/{path.name}: {name}")
    assert problems == []
