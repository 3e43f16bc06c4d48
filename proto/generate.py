"""Regenerate the committed Python code for the ``.proto`` files under ``proto/``.

Owns: the exact protoc invocation (grpcio-tools, pinned in pyproject so output is stable) and
the one rewrite that makes its output importable here. The sources are standalone: they live
at ``proto/<package path>/<name>.proto`` (``quorumlog/v1/quorumlog.proto``, the client API;
``quorumlog/commands/v1/``, ``quorumlog/raft/v1/``, internal) and import each other relative
to ``proto/``, so ``protoc -Iproto`` compiles them anywhere, for any language. protoc's Python
output mirrors that tree (``quorumlog/v1/quorumlog_pb2.py``, importing
``from quorumlog.v1 import ...``); this script flattens it into ``proto/<name>_pb2.py``,
``_pb2.pyi`` and ``_pb2_grpc.py`` and rewrites every reference to a generated module
(cross-file imports, the module name message classes are built under, the file named in the
grpc version check) to ``quorumlog.proto.<name>_pb2``, the import path the code base uses.
Must never: run at import time of the package; it is a development tool
(``python -m quorumlog.proto.generate`` or ``make proto``) and the drift test's helper.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
#: The Python package the generated modules are imported from.
PYTHON_PACKAGE = "quorumlog.proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    """Every ``.proto`` source, below ``PROTO_DIR`` (the ``-I`` root)."""
    return sorted(PROTO_DIR.rglob("*.proto"))


def _rewrites(sources: list[str]) -> list[tuple[str, str]]:
    """(protoc's reference, ours) for every module generated from ``sources`` (paths
    relative to the include root, e.g. ``quorumlog/v1/acl.proto``)."""
    pairs: list[tuple[str, str]] = []
    for source in sources:
        folder, _, file_name = source.rpartition("/")
        stem = file_name.removesuffix(".proto")
        package = folder.replace("/", ".")
        ours_folder = PYTHON_PACKAGE.replace(".", "/")
        for module in (f"{stem}_pb2", f"{stem}_pb2_grpc"):
            pairs += [
                (f"from {package} import {module} ", f"from {PYTHON_PACKAGE} import {module} "),
                (f"'{package}.{module}'", f"'{PYTHON_PACKAGE}.{module}'"),
                (f"{folder}/{module}.py", f"{ours_folder}/{module}.py"),
            ]
    return pairs


def _rewrite(text: str, pairs: list[tuple[str, str]], packages: set[str], name: str) -> str:
    for old, new in pairs:
        text = text.replace(old, new)
    # A reference protoc may add in a later release must fail here, not at import time.
    for package in packages:
        leftover = re.search(rf"^\s*(from|import) {re.escape(package)}\b.*$", text, re.MULTILINE)
        if leftover:
            raise RuntimeError(f"{name}: unrewritten import {leftover.group(0).strip()!r}")
    return text


def generate(out_dir: Path) -> list[Path]:
    """Generate code for every .proto into ``out_dir``; returns the files written."""
    from grpc_tools import protoc  # noqa: PLC0415 -- development dependency only

    sources = [source.relative_to(PROTO_DIR).as_posix() for source in proto_files()]
    stems = [source.rpartition("/")[2] for source in sources]
    clashes = sorted({stem for stem in stems if stems.count(stem) > 1})
    if clashes:
        raise RuntimeError(f"proto file names must be unique across folders: {clashes}")
    packages = {source.rpartition("/")[0].replace("/", ".") for source in sources}
    pairs = _rewrites(sources)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={root}",
            f"--pyi_out={root}",
            f"--grpc_python_out={root}",
            *sources,
        ]
        status = protoc.main(args)
        if status != 0:
            raise RuntimeError(f"protoc failed with status {status}")
        written: list[Path] = []
        out_dir.mkdir(parents=True, exist_ok=True)
        for produced in sorted(root.rglob("*"), key=lambda path: path.name):
            if not produced.name.endswith(GENERATED_SUFFIXES):
                continue
            target = out_dir / produced.name
            text = _rewrite(produced.read_bytes().decode(), pairs, packages, produced.name)
            target.write_bytes(text.encode())
            written.append(target)
        return written


def main() -> int:
    for path in generate(PROTO_DIR):
        print(f"wrote {path.relative_to(PROTO_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
