"""Packaging: ``quorumlog --version``, and ``python -m build``'s sdist and wheel installed into a
fresh venv outside the repository (runtime dependencies at the locked versions), where the
installed ``quorumlog`` runs a real 3-node cluster, appends and reads.

The build runs on a copy of the source tree in ``tmp_path`` (what ``python -m build`` in the
repository would see, minus ignored build output), so the test never writes ``*.egg-info`` or
``build/`` into a tree other processes are using. ``--no-isolation`` builds with the locked
setuptools and wheel of this venv, as ``make install`` does, so nothing unlocked is fetched.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from pathlib import Path

import pytest
from cluster_harness import wait_until
from cluster_up_process import cluster_up, free_base_port, pid_gone

from quorumlog.client.cli import main

REPO = Path(__file__).resolve().parent.parent
# The uv the Makefile pins (and installs into .tools/ before any test runs).
UV_VERSION = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M)
UV = REPO / ".tools" / f"uv-{UV_VERSION.group(1) if UV_VERSION else '?'}" / "bin" / "uv"
RUNTIME_LOCK = REPO / "requirements-runtime.txt"
#: source folder -> installed package (pyproject's [tool.setuptools.package-dir])
PACKAGES = {"raft": "raft", "node": "node", "client": "client", "chaos": "chaos", "proto": "proto"}
#: what a checkout holds that is not source: never copied into the build tree
NOT_SOURCE = {
    ".git", ".venv", ".venv-latest", ".tools", ".typecheck", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", "build", "dist", "data", "chaos-run", "node_modules", "__pycache__",
}
STEP_TIMEOUT = 300.0  # one build or install step; generous on a loaded 2-core machine
CLI_TIMEOUT = 60.0
READY_TIMEOUT = 60.0


def project_version() -> str:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return str(project["version"])


def test_version_flag_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out.strip()
    assert printed == importlib.metadata.version("quorumlog") == project_version()


# -- helpers of the installed-wheel test ---------------------------------------------------------


def run(command: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=STEP_TIMEOUT, check=False,
    )
    assert result.returncode == 0, (
        f"{command} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def source_files() -> list[Path]:
    """Every package source the dists must carry, relative to the repository."""
    files: list[Path] = []
    for folder in PACKAGES:
        for path in sorted((REPO / folder).rglob("*")):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if path.suffix in {".py", ".pyi", ".proto"} or path.name == "py.typed":
                files.append(path.relative_to(REPO))
            elif path.parent.parts[-2:] in (("console", "templates"), ("console", "static")):
                files.append(path.relative_to(REPO))  # the web console's pages and assets
    return files


def build_dists(tmp_path: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """``python -m build`` (sdist, then the wheel built from that sdist) on a copy of the tree."""
    source = tmp_path / "source"
    shutil.copytree(
        REPO, source,
        ignore=lambda _, names: [n for n in names if n in NOT_SOURCE or n.endswith(".egg-info")],
    )
    out = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source], source, env)
    (sdist,) = out.glob("quorumlog-*.tar.gz")
    (wheel,) = out.glob("quorumlog-*.whl")
    return sdist, wheel


def check_dists(sdist: Path, wheel: Path, version: str) -> None:
    expected = source_files()
    protos = [path for path in expected if path.suffix == ".proto"]
    generated = [path for path in expected if path.name.endswith(("_pb2.py", "_pb2_grpc.py"))]
    assert protos and generated, "no .proto files or generated code found in the source tree"
    assert len(generated) == 2 * len(protos), (protos, generated)

    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = {str(path) for path in expected} | {"README.md", "pyproject.toml"}
    missing -= in_sdist
    assert not missing, f"the sdist lacks {sorted(missing)}"

    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
        metadata = archive.read(f"quorumlog-{version}.dist-info/METADATA").decode()
        entry_points = archive.read(f"quorumlog-{version}.dist-info/entry_points.txt").decode()
    wanted = {
        f"quorumlog/{PACKAGES[path.parts[0]]}/{Path(*path.parts[1:]).as_posix()}"
        for path in expected
    }
    assert not wanted - in_wheel, f"the wheel lacks {sorted(wanted - in_wheel)}"
    for folder, package in PACKAGES.items():
        assert f"quorumlog/{package}/py.typed" in in_wheel, folder
    assert not [name for name in in_wheel if name.startswith(("tests/", "examples/"))]
    assert f"\nVersion: {version}\n" in metadata
    assert "quorumlog = quorumlog.client.cli:main" in entry_points


def make_venv(venv: Path, wheel: Path, env: dict[str, str]) -> None:
    """A fresh venv: the runtime lock (hashes checked), then the wheel alone (no resolution)."""
    cwd = venv.parent
    assert UV.exists(), f"{UV} not found: `make install` puts the pinned uv there"
    run([UV, "venv", "--quiet", "--python", sys.executable, venv], cwd, env)
    installing = {**env, "VIRTUAL_ENV": str(venv)}
    run([UV, "pip", "install", "--quiet", "--require-hashes", "-r", RUNTIME_LOCK], cwd, installing)
    run([UV, "pip", "install", "--quiet", "--no-deps", wheel], cwd, installing)


# Run by the venv's interpreter: import every module of the installed package and report where
# each came from, and the search path.
IMPORT_ALL = """
import importlib, json, pkgutil, sys
import quorumlog
names = [info.name for info in pkgutil.walk_packages(quorumlog.__path__, "quorumlog.")]
for name in names:
    importlib.import_module(name)
files = {name: getattr(module, "__file__", None) for name, module in sys.modules.items()}
print(json.dumps({"path": sys.path, "package_path": list(quorumlog.__path__),
                  "modules": names, "files": files}))
"""


def check_imports_from_venv(python: Path, site_packages: Path, cwd: Path, env: dict[str, str]
                            ) -> None:
    report = json.loads(run([python, "-c", IMPORT_ALL], cwd, env))
    assert report["package_path"] == [str(site_packages / "quorumlog")]
    assert len(report["modules"]) >= len(PACKAGES) + 50, report["modules"]
    assert not [entry for entry in report["path"] if entry and Path(entry).is_relative_to(REPO)]
    from_repo = {
        name: file for name, file in report["files"].items()
        if file and Path(file).resolve().is_relative_to(REPO)
    }
    assert not from_repo, f"modules loaded from the repository: {from_repo}"
    for name in report["modules"]:
        file = report["files"][name]
        assert file and Path(file).is_relative_to(site_packages), (name, file)


@pytest.mark.slow
@pytest.mark.cluster
def test_built_wheel_runs_a_cluster_from_a_fresh_venv(tmp_path: Path) -> None:
    assert not tmp_path.resolve().is_relative_to(REPO)
    version = project_version()
    # Nothing of this checkout or its venv may leak into the installed package's processes.
    env = {
        key: value for key, value in os.environ.items()
        if key not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "QUORUMLOG_CLUSTER"}
    }
    env.update(UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    started = time.monotonic()

    sdist, wheel = build_dists(tmp_path, env)
    assert sdist.name == f"quorumlog-{version}.tar.gz"
    assert wheel.name == f"quorumlog-{version}-py3-none-any.whl"
    check_dists(sdist, wheel, version)
    built = time.monotonic()

    venv = tmp_path / "venv"
    make_venv(venv, wheel, env)
    installed = time.monotonic()
    python, quorumlog = venv / "bin" / "python", venv / "bin" / "quorumlog"
    site_packages = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages /= "site-packages"

    elsewhere = tmp_path / "elsewhere"  # the working directory: not the source tree
    elsewhere.mkdir()
    assert run([quorumlog, "--version"], elsewhere, env).strip() == version
    check_imports_from_venv(python, site_packages, elsewhere, env)

    base = free_base_port()
    addresses = ",".join(f"127.0.0.1:{base + i}" for i in range(3))
    command = [
        str(quorumlog), "cluster", "up", "--nodes", "3", "--data-dir", str(tmp_path / "data"),
        "--base-port", str(base),
    ]
    # The installed command, run from elsewhere with the cleaned env: it never imports the repo.
    with cluster_up(command, cwd=elsewhere, env=env) as up:
        leader, _ = up.wait_ready(READY_TIMEOUT)
        assert leader in {"n1", "n2", "n3"}
        before_ready = up.lines_before_ready()
        pids = [int(line.split(" pid ")[1].split()[0]) for line in before_ready]
        assert len(pids) == 3, before_ready
        for pid in pids:  # every node runs the venv's interpreter
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert Path(argv[0].decode()).parent == venv / "bin", argv

        appended = json.loads(run(
            [quorumlog, "append", "packaged/1", "built", "installed", "--json",
             "--cluster", addresses, "--deadline", str(CLI_TIMEOUT)], elsewhere, env,
        ))
        assert appended["session"] == "packaged/1" and appended["offsets"] == [0, 1]
        page = json.loads(run(
            [quorumlog, "read", "packaged/1", "--json", "--cluster", addresses,
             "--deadline", str(CLI_TIMEOUT)], elsewhere, env,
        ))
        assert [(m["offset"], m["data"]) for m in page["messages"]] == [
            (0, "built"), (1, "installed")
        ]

        code, rest = up.stop(signal.SIGINT, timeout=60)  # Ctrl-C
        assert code == 0 and "cluster stopped" in rest, (code, rest)
        wait_until(lambda: all(pid_gone(pid) for pid in pids), 30, "every node process to exit")
    print(
        f"build {built - started:.1f}s, venv + install {installed - built:.1f}s, "
        f"cluster run {time.monotonic() - installed:.1f}s"
    )
