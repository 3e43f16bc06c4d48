"""Regenerate the committed Python code for ``proto/*.proto``.

Owns: the exact protoc invocation (grpcio-tools, pinned in pyproject so output is stable),
producing ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` importable as
``quorumlog.proto.<name>_pb2``. Must never: run at import time of the package; it is a
development tool (``python -m quorumlog.proto.generate`` or ``make proto``) and the drift
test's helper.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Generate code for every .proto into ``out_dir``; returns the files written."""
    from grpc_tools import protoc  # noqa: PLC0415 -- development dependency only

    with tempfile.TemporaryDirectory() as scratch:
        # Lay the sources out as quorumlog/proto/*.proto so generated imports read
        # ``from quorumlog.proto import x_pb2``.
        root = Path(scratch)
        package_dir = root / "quorumlog" / "proto"
        package_dir.mkdir(parents=True)
        for source in proto_files():
            shutil.copy(source, package_dir / source.name)
        args = [
            "protoc",
            f"-I{root}",
            f"--python_out={root}",
            f"--pyi_out={root}",
            f"--grpc_python_out={root}",
            *[f"quorumlog/proto/{source.name}" for source in proto_files()],
        ]
        status = protoc.main(args)
        if status != 0:
            raise RuntimeError(f"protoc failed with status {status}")
        written: list[Path] = []
        out_dir.mkdir(parents=True, exist_ok=True)
        for produced in sorted(package_dir.iterdir()):
            if produced.name.endswith(GENERATED_SUFFIXES):
                target = out_dir / produced.name
                shutil.copy(produced, target)
                written.append(target)
        return written


def main() -> int:
    for path in generate(PROTO_DIR):
        print(f"wrote {path.relative_to(PROTO_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
