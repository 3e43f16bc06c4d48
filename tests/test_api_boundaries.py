"""The gRPC services reach their node through one small interface, never through each other.

``quorumlog.node.api.node_port`` is the services' one way into the node (proposals, read
points, the applied index, membership, read-only status) and ``quorumlog.node.api.rpc`` their
one status mapping. This test reads the source (AST) of ``node/api`` and ``node/process`` and
fails on a reach around them: the Raft core (``.raw`` / ``.raft`` of the node), the Raft driver
imported by anything but the port, another object's private member (``x._name``, e.g. one
service calling another's ``_replicate``), a private name imported from another module, or a
service module importing another service module.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "node" / "api"
PROCESS = ROOT / "node" / "process"
PORT_MODULE = "quorumlog.node.api.node_port"
DRIVER_MODULE = "quorumlog.node.replication.raft_node"
CORE_ATTRIBUTES = {"raw", "raft"}  # RaftNode.raw (the RawNode) and RawNode.raft (the core)
OWN = {"self", "cls"}


@dataclass(frozen=True)
class Reach:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _module_of(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    return "quorumlog." + ".".join(relative.parts)


def _imports(tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import; ``import a.b`` gives (a.b, [])."""
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def reaches(source: str, path: str, module: str) -> list[Reach]:
    """Every boundary breach in one module's ``source``."""
    tree = ast.parse(source)
    found: list[Reach] = []
    in_api = module.startswith("quorumlog.node.api.")
    is_port = module == PORT_MODULE
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in CORE_ATTRIBUTES:
            found.append(Reach(path, node.lineno, f".{node.attr}: the Raft core, reached around "
                                                  "RaftNode's public methods"))
        if (
            in_api and not is_port and isinstance(node, ast.Attribute)
            and _is_private(node.attr)
            and not (isinstance(node.value, ast.Name) and node.value.id in OWN)
        ):
            found.append(Reach(path, node.lineno, f".{node.attr}: another object's private "
                                                  "member"))
    for line, imported, names in _imports(tree):
        if not in_api:
            continue
        if imported == DRIVER_MODULE and not is_port:
            found.append(Reach(path, line, f"imports {imported}: use the node port"))
        for name in names:
            if name == "raft_node" and imported == "quorumlog.node.replication" and not is_port:
                found.append(Reach(path, line, "imports the Raft driver: use the node port"))
            if _is_private(name):
                found.append(Reach(path, line, f"imports private {name} from {imported}"))
        if module.endswith("_service") and imported != module:
            targets = [imported] + [f"{imported}.{name}" for name in names]
            for target in targets:
                if target.startswith("quorumlog.node.api.") and target.endswith("_service"):
                    found.append(Reach(path, line, f"imports service {target}"))
    return found


def _sources() -> list[Path]:
    return sorted([*API.glob("*.py"), *PROCESS.glob("*.py")])


def test_services_reach_the_node_only_through_the_port() -> None:
    breaches = [
        reach
        for path in _sources()
        for reach in reaches(
            path.read_text(), str(path.relative_to(ROOT)), _module_of(path)
        )
    ]
    assert not breaches, "boundary breaches:\n" + "\n".join(map(str, breaches))


def test_the_port_and_every_service_module_exist() -> None:
    """The check above would pass vacuously on an empty folder."""
    names = {path.stem for path in API.glob("*.py")}
    assert {"node_port", "rpc", "appends", "quorumlog_service", "consumer_service",
            "acl_service", "admin_service"} <= names


def test_the_checker_catches_each_kind_of_reach() -> None:
    service = "quorumlog.node.api.consumer_service"
    bad = {
        "self.client_service._replicate(context, command, 8)": "private member",
        "self.node.raw.raft.conf_state()": ".raw",
        "status = node.raft.term": ".raft",
        "from quorumlog.node.replication.raft_node import NotLeader": "use the node port",
        "from quorumlog.node.replication import raft_node": "Raft driver",
        "from quorumlog.node.api.rpc import _remaining": "imports private",
        "from quorumlog.node.api.quorumlog_service import Context": "imports service",
        "from quorumlog.node.api import admin_service": "imports service",
    }
    for source, expected in bad.items():
        found = reaches(source, "x.py", service)
        assert any(expected in str(reach) for reach in found), (source, found)
    good = (
        "self._port.propose(command, 8, deadline)\n"
        "from quorumlog.node.api.node_port import NodePort\n"
        "from quorumlog.node.api import rpc\n"
        "import quorumlog.raft.types\n"
    )
    assert reaches(good, "x.py", service) == []
    # The port itself may use the driver (never the core); metrics may read neither.
    assert reaches("from quorumlog.node.replication import raft_node", "p.py", PORT_MODULE) == []
    assert reaches("x = node.raw.raft", "p.py", PORT_MODULE)
    assert reaches("x = node.raw.status()", "m.py", "quorumlog.node.process.metrics")
