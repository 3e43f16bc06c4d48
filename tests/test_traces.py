"""Golden traces: scripts in ``tests/traces/*.txt`` run through the Raft core (via
``quorumlog.raft.testing.trace``) and compared with their checked-in output.

Regenerate after an intended change with ``pytest tests/test_traces.py --regen-traces`` (or
``QUORUMLOG_REGEN_TRACES=1``), then read the diff: a golden file that bakes in a bug is worse
than none.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from quorumlog.raft.testing.trace import TraceError, run_script

TRACE_DIR = Path(__file__).parent / "traces"
TRACES = sorted(TRACE_DIR.glob("*.txt"))


def _regenerate(config: pytest.Config) -> bool:
    return bool(config.getoption("--regen-traces")) or os.environ.get(
        "QUORUMLOG_REGEN_TRACES", ""
    ) not in ("", "0")


def test_trace_directory_is_not_empty() -> None:
    assert len(TRACES) >= 10, f"expected the golden traces in {TRACE_DIR}"


@pytest.mark.parametrize("path", TRACES, ids=[path.stem for path in TRACES])
def test_trace(path: Path, request: pytest.FixtureRequest) -> None:
    expected = path.read_text()
    actual = run_script(expected)
    if _regenerate(request.config):
        if actual != expected:
            path.write_text(actual)
        return
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"{path.name} (checked in)",
                tofile=f"{path.name} (now)",
            )
        )
        pytest.fail(
            f"{path.name} differs from what the core produces now "
            f"(rerun with --regen-traces if the change is intended):\n{diff}",
            pytrace=False,
        )


def test_a_changed_expectation_is_reported_as_a_diff() -> None:
    """The comparison is real: a script whose expected output is wrong does not round-trip."""
    script = "add-nodes 3\n----\nok\n\ncampaign 1\n----\nwrong\n"
    actual = run_script(script)
    assert actual != script
    assert "n1 became pre-candidate at term 1" in actual
    assert actual.startswith("add-nodes 3\n----\n")


def test_a_broken_script_names_the_line() -> None:
    with pytest.raises(TraceError, match=r"line 4: compact 9 1: no node 9"):
        run_script("add-nodes 3\n----\n\ncompact 9 1\n----\n")
    with pytest.raises(TraceError, match="lacks a ----"):
        run_script("add-nodes 3\n")
