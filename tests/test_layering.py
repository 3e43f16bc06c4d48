"""The package layout is the architecture: every import goes down the layers, never up.

docs/architecture.md ("Layers") is the picture this test keeps true. Each source file belongs
to one layer (by its folder); a ``quorumlog.*`` import is allowed only into a layer that the
importer's layer may use. Imports inside ``if TYPE_CHECKING:`` count too: a type annotation
is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Folder (relative to the repository) -> its layer name. The longest matching prefix wins.
LAYER_OF_FOLDER = {
    "raft": "raft",
    # the bare package folders hold only their __init__.py (a docstring): the lowest layer
    "node": "node.common",
    "chaos": "chaos.toxiproxy",
    "raft/testing": "raft.testing",
    "proto": "proto",
    "node/common": "node.common",
    "node/storage": "node.storage",
    "node/replication": "node.replication",
    "node/state": "node.state",
    "node/api": "node.api",
    "node/process": "node.process",
    "client": "client",
    "client/cli": "client.cli",
    "client/console": "client.console",
    "chaos/toxiproxy": "chaos.toxiproxy",
    "chaos/faultfs": "chaos.faultfs",
    "chaos/run": "chaos.run",
}

# What each layer may import (besides itself). node's layers, top to bottom: process -> api ->
# state -> replication -> storage, with common (config, limits, TLS) under all of them.
NODE_LAYERS = ["node.common", "node.storage", "node.replication", "node.state", "node.api",
               "node.process"]
ALLOWED: dict[str, set[str]] = {
    "raft": set(),
    "raft.testing": {"raft"},
    "proto": set(),
    **{layer: {"raft", "proto", *NODE_LAYERS[:index]}
       for index, layer in enumerate(NODE_LAYERS)},
    "client": {"proto"},
    "client.cli": {"client", "client.console", "proto", "raft", "raft.testing", *NODE_LAYERS,
                   "chaos.toxiproxy", "chaos.faultfs", "chaos.run"},
    # the web console is a client like any other: the SDK and the API's messages only
    "client.console": {"client", "proto"},
    "chaos.toxiproxy": {"client", "proto"},
    "chaos.faultfs": set(),
    "chaos.run": {"chaos.toxiproxy", "chaos.faultfs", "client", "proto"},
}

# The local-cluster launcher is the one piece of the node package the chaos run may use (it
# starts the node processes it then breaks); docs/architecture.md ("Layers") names it as chaos's
# third dependency. It imports only proto and its supervisor, never the node's server code.
LAUNCHER_MODULES = {"quorumlog.node.process.launcher", "quorumlog.node.process.supervisor"}
LAUNCHER_USERS = {"chaos.run"}


def layer_of_file(path: Path) -> str | None:
    relative = path.relative_to(ROOT).parent.as_posix()
    best: str | None = None
    for folder in LAYER_OF_FOLDER:
        if (relative == folder or relative.startswith(folder + "/")) and (
            best is None or len(folder) > len(best)
        ):
            best = folder
    return None if best is None else LAYER_OF_FOLDER[best]


def layer_of_module(dotted: str) -> str | None:
    """``quorumlog.node.api.guard`` -> ``node.api``; a package's own name counts as inside."""
    if not dotted.startswith("quorumlog."):
        return None
    parts = dotted.split(".")[1:]
    for size in range(len(parts), 0, -1):
        folder = "/".join(parts[:size])
        if folder in LAYER_OF_FOLDER:
            return LAYER_OF_FOLDER[folder]
    return None


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from quorumlog.node.api import guard` imports the module quorumlog.node.api.guard
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def source_files() -> list[Path]:
    folders = ["raft", "proto", "node", "client", "chaos"]
    return sorted(
        path for folder in folders for path in (ROOT / folder).rglob("*.py")
        if not path.name.endswith(("_pb2.py", "_pb2_grpc.py"))
    )


def violations() -> list[str]:
    problems: list[str] = []
    for path in source_files():
        layer = layer_of_file(path)
        assert layer is not None, f"{path.relative_to(ROOT)} is in no layer; add its folder"
        allowed = ALLOWED[layer] | {layer}
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, module in imported_modules(tree):
            target = layer_of_module(module)
            if target is None or target in allowed:
                continue
            if layer in LAUNCHER_USERS and any(
                module == launcher or module.startswith(launcher + ".")
                for launcher in LAUNCHER_MODULES
            ):
                continue
            problems.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {module} "
                            f"({target})")
    return problems


def test_every_import_goes_down_the_layers() -> None:
    problems = violations()
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The check itself works: a storage module importing the API layer is reported."""
    tree = ast.parse("from quorumlog.node.api import guard\nimport quorumlog.client.sdk\n")
    modules = [module for _, module in imported_modules(tree)]
    assert [layer_of_module(module) for module in modules] == ["node.api", "client"]
    assert "node.api" not in ALLOWED["node.storage"]
    assert "client" not in ALLOWED["node.state"]
    assert "node.process" not in ALLOWED["client"] and "client.cli" not in ALLOWED["client"]


def test_every_folder_with_code_has_a_layer() -> None:
    missing = sorted({path.parent.relative_to(ROOT).as_posix() for path in source_files()
                      if layer_of_file(path) is None})
    assert not missing, f"folders with no layer: {missing}"


def test_the_launcher_imports_only_proto_and_itself() -> None:
    """The chaos run may use the launcher, so the launcher must not bring the node's server
    (or anything else of ours) along with it."""
    problems = []
    for module in sorted(LAUNCHER_MODULES):
        path = ROOT / (module.removeprefix("quorumlog.").replace(".", "/") + ".py")
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, imported in imported_modules(tree):
            inside = any(imported == launcher or imported.startswith(launcher + ".")
                         for launcher in LAUNCHER_MODULES)
            if layer_of_module(imported) not in (None, "proto") and not inside:
                problems.append(f"{path.relative_to(ROOT)}:{line}: imports {imported}")
    assert not problems, "\n".join(problems)
