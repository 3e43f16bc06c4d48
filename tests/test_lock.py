"""The lock files pin every dependency pyproject.toml declares, exactly and with hashes.

`make up` / `make test` install only from requirements.txt (the container image from
requirements-runtime.txt); a dependency added to pyproject.toml but not locked would be
missing from a fresh clone's venv, and an unpinned or unhashed line would let a registry
release change what CI runs. `make lock` regenerates both files.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.txt"
RUNTIME_LOCK = ROOT / "requirements-runtime.txt"
PYLOCK = ROOT / "pylock.toml"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def locked(path: Path, here_only: bool = False) -> dict[str, str]:
    """name -> version for every requirement line, checking each is pinned and hashed.

    ``here_only`` keeps only the lines whose environment marker holds on this machine (the
    lock is universal: ``colorama ; sys_platform == 'win32'`` is not installed here).
    """
    pins: dict[str, str] = {}
    # A requirement continues over backslash-ended lines; its hashes follow it.
    for block in re.split(r"\n(?=[A-Za-z0-9])", path.read_text()):
        first = block.split("\n", 1)[0]
        if not first or first.startswith("#"):
            continue
        match = PIN.match(first)
        assert match, f"{path.name}: not an exact pin: {first!r}"
        assert "--hash=sha256:" in block, f"{path.name}: {first!r} has no hash"
        marker = Requirement(first.rstrip(" \\")).marker
        if here_only and marker is not None and not marker.evaluate():
            continue
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def declared(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    if extra is not None:
        names += project["optional-dependencies"][extra]
    return [Requirement(name) for name in names]


@pytest.mark.parametrize(
    ("lock", "extra"), [(LOCK, "test"), (RUNTIME_LOCK, None)], ids=["full", "runtime"]
)
def test_every_declared_dependency_is_locked_within_its_range(
    lock: Path, extra: str | None
) -> None:
    pins = locked(lock)
    for requirement in declared(extra):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is declared in pyproject.toml but not in {lock.name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock.name} pins {name}=={pins[name]}, outside pyproject's {requirement}"
        )


def test_runtime_lock_agrees_with_the_full_lock() -> None:
    full, runtime = locked(LOCK), locked(RUNTIME_LOCK)
    differing = {name: (version, full.get(name)) for name, version in runtime.items()
                 if full.get(name) != version}
    assert not differing, f"runtime lock differs from the full lock: {differing}"


def test_this_venv_has_the_locked_versions() -> None:
    """What the suite runs on is what the lock says (skipped nowhere: `make test` syncs)."""
    mismatched = {}
    for name, version in locked(LOCK, here_only=True).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            mismatched[name] = (version, None)
            continue
        if installed != version:
            mismatched[name] = (version, installed)
    assert not mismatched, (
        f"installed versions differ from the lock (locked, installed): {mismatched}"
    )


def test_the_pep_751_lock_pins_the_same_versions_with_hashes() -> None:
    """pylock.toml (``make lock``) is the same resolution as requirements.txt, in the standard
    lock format: every package once, at the version requirements.txt pins, every file hashed."""
    data = tomllib.loads(PYLOCK.read_text())
    assert data["lock-version"] == "1.0"
    pinned = {canonicalize_name(package["name"]): package["version"]
              for package in data["packages"]}
    assert len(pinned) == len(data["packages"])
    assert pinned == {canonicalize_name(name): version for name, version in locked(LOCK).items()}
    for package in data["packages"]:
        files = [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]
        assert files and all(item["hashes"]["sha256"] for item in files), package["name"]
