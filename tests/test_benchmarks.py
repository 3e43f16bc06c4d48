"""``benchmarks/``: the etcd comparison's ratio table and process cleanup without etcd, and,
with etcd installed, a short real side-by-side run and an interrupted one that must leave no
process or data behind; the failover and large-state scripts at toy sizes.

etcd: ``make test`` installs Debian's etcd-server first (``make testdeps``), so the two
end-to-end tests always run; without etcd they fail, never skip."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import compare_etcd  # noqa: E402
from benchmarks.processes import Processes  # noqa: E402
from quorumlog.client.cli.bench import drive  # noqa: E402
from quorumlog.node.process.supervisor import stop_processes  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SCRIPT_TIMEOUT = 120.0
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
STUBBORN = [sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)"]


def needs_etcd() -> None:
    """`make test` installs etcd (its `testdeps`), so a missing etcd is a failure, not a skip."""
    assert shutil.which("etcd"), "etcd is not installed: `make etcd` installs Debian's etcd-server"


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def script(*args: str, timeout: float = SCRIPT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run a benchmark script; one that overruns ``timeout`` gets SIGTERM (it stops its
    nodes), then its whole process group SIGKILL, and the test fails: a plain
    ``subprocess.run`` timeout SIGKILLs the script alone and orphans its nodes."""
    with subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                out, err = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                out, err = process.communicate()
            raise AssertionError(
                f"{' '.join(args)} overran {timeout:g} s; stderr:\n{err}") from None
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def side(rate: float, p50: float, p99: float, errors: dict[str, int] | None = None
         ) -> dict[str, Any]:
    return {"messages_per_second": rate, "errors": errors or {},
            "latency_ms": {"p50": p50, "p90": p50, "p99": p99, "p999": p99, "max": p99}}


def test_ratios_are_quorumlog_over_etcd_and_the_table_shows_every_scenario() -> None:
    quorumlog, etcd = side(1000.0, 1.0, 4.0), side(500.0, 2.0, 2.0)
    assert compare_etcd.ratios(quorumlog, etcd) == {"messages_per_second": 2.0, "p50": 0.5,
                                                    "p99": 2.0}
    assert compare_etcd.ratios(side(10.0, 1.0, 1.0), side(0.0, 0.0, 0.0)) == {
        "messages_per_second": None, "p50": None, "p99": None}
    rows = [
        {"title": scenario.title, "quorumlog": quorumlog,
         "etcd": side(500.0, 2.0, 2.0, {"AioRpcError": 3} if i == 0 else None),
         "ratios": compare_etcd.ratios(quorumlog, etcd)}
        for i, scenario in enumerate(compare_etcd.SCENARIOS)
    ]
    report = {"etcd_version": "3.4.23", "size": 100, "duration_s": 5.0, "warmup_s": 1.0,
              "scenarios": rows, "load_start": [1.0, 1.0, 1.0], "load_end": [2.0, 1.0, 1.0]}
    lines = compare_etcd.format_table(report)
    body = [line for line in lines if line.startswith(tuple(s.title for s in
                                                             compare_etcd.SCENARIOS))]
    assert len(body) == len(compare_etcd.SCENARIOS)
    assert all("2.00x" in line and "0.50x" in line for line in body)
    assert "errors 3" in body[0] and "errors" not in body[1]
    assert "etcd 3.4.23" in lines[0] and "load average" in lines[-1]
    assert [s.name for s in compare_etcd.SCENARIOS] == [
        "sequential", "concurrent_16", "concurrent_64", "batched"]
    assert [(s.concurrency, s.batch) for s in compare_etcd.SCENARIOS] == [
        (1, 1), (16, 1), (64, 1), (16, 100)]


def test_a_row_reports_the_median_run() -> None:
    runs = [{"messages_per_second": rate, "id": rate} for rate in (30.0, 10.0, 20.0)]
    assert compare_etcd.median_run(runs)["id"] == 20.0
    assert compare_etcd.median_run(runs[:2])["id"] == 10.0
    assert compare_etcd.median_run(runs[:1])["id"] == 30.0


def test_processes_are_all_stopped_when_the_run_fails(tmp_path: Path) -> None:
    started: list[int] = []
    with pytest.raises(RuntimeError), Processes() as processes:
        for i in range(3):
            started.append(processes.start(SLEEPER, tmp_path / f"p{i}.log").pid)
        assert processes.running() == started
        raise RuntimeError("the benchmark broke")
    assert all(gone(pid) for pid in started)
    assert processes.running() == []


def test_a_script_that_overruns_is_stopped_and_fails_the_test() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match="overran 1 s"):
        script("timeit", "-n", "1", "-r", "1", "import time; time.sleep(60)", timeout=1)
    assert time.monotonic() - started < 30  # stopped by SIGTERM, not waited out


def test_a_child_ignoring_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    processes = Processes()
    stubborn = processes.start(STUBBORN, tmp_path / "stubborn.log")
    wait_until(lambda: "ready" in (tmp_path / "stubborn.log").read_text(), 30,
               "the child to ignore SIGTERM")
    started = time.monotonic()
    stop_processes([stubborn], timeout=0.5)
    assert stubborn.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_bad_arguments_exit_2_before_starting_anything() -> None:
    result = script("benchmarks.compare_etcd", "--scenarios", "nope", timeout=60)
    assert result.returncode == 2 and "--scenarios" in result.stderr
    result = script("benchmarks.compare_etcd", "--duration", "0", timeout=60)
    assert result.returncode == 2 and "--duration" in result.stderr


def test_side_by_side_run_reports_ratios_and_stops_everything(tmp_path: Path) -> None:
    needs_etcd()
    result = script("benchmarks.compare_etcd", "--duration", "0.6", "--warmup", "0.2",
                    "--rounds", "2", "--data-root", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert [row["name"] for row in report["scenarios"]] == [
        s.name for s in compare_etcd.SCENARIOS]
    for row in report["scenarios"]:
        for system in ("quorumlog", "etcd"):
            assert row[system]["messages_per_second"] > 0, (row["name"], system, row[system])
            assert row[system]["errors"] == {}, (row["name"], system)
        assert len(row["rounds"]) == 2 and all(r["quorumlog"] > 0 for r in row["rounds"])
        assert row["quorumlog"]["messages_per_second"] == min(
            r["quorumlog"] for r in row["rounds"])  # the lower middle of two runs
        ratio = row["ratios"]["messages_per_second"]
        assert ratio == pytest.approx(row["quorumlog"]["messages_per_second"]
                                      / row["etcd"]["messages_per_second"], rel=1e-2)
    batched = report["scenarios"][-1]
    assert batched["quorumlog"]["entries_per_fsync"] is not None
    assert len(report["pids"]) == 6 and all(gone(pid) for pid in report["pids"])
    assert list(tmp_path.iterdir()) == []  # the etcd and quorumlog data are deleted


def test_interrupted_comparison_stops_every_process_and_deletes_its_data(
        tmp_path: Path) -> None:
    needs_etcd()
    errors = tmp_path / "stderr.txt"
    data = tmp_path / "data"
    data.mkdir()
    with open(errors, "w") as stderr:
        # Its own process group (its nodes and etcd members inherit it), so a failure here
        # can kill them all instead of leaving six servers running.
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.compare_etcd", "--duration", "60",
             "--data-root", str(data)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr,
            start_new_session=True)
    try:
        wait_until(lambda: "sequential: etcd" in errors.read_text(), 60,
                   "the comparison to start measuring")
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = errors.read_text()
    pids = [int(pid) for line in text.splitlines() if "pids [" in line
            for pid in line.split("pids [", 1)[1].split("]", 1)[0].split(",")]
    assert len(pids) == 6, text
    assert all(gone(pid) for pid in pids)
    assert list(data.iterdir()) == []


def test_failover_script_times_a_leader_kill(tmp_path: Path) -> None:
    result = script("benchmarks.failover", "--trials", "1", "--data-root", str(tmp_path),
                    "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    (trial,) = report["trials"]
    assert trial["killed"] != trial["new_leader"]
    assert 0 < report["median_s"] < 30
    assert all(gone(pid) for pid in report["pids"]) and len(report["pids"]) == 4
    assert list(tmp_path.iterdir()) == []


def test_large_state_script_restarts_and_measures_memory(tmp_path: Path) -> None:
    result = script("benchmarks.large_state", "--messages", "20000", "--batch", "500",
                    "--data-root", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["load"]["messages"] >= 20000
    assert all(value > 0 for value in report["rss_after_load_mb"].values())
    assert [r["how"] for r in report["follower_restart"]] == ["SIGTERM", "kill -9"]
    assert all(r["restart_to_serving_s"] > 0 for r in report["follower_restart"])
    assert report["cluster_restart"]["first_read_ok"] is True
    assert all(gone(pid) for pid in report["pids"])
    assert list(tmp_path.iterdir()) == []


def test_open_loop_rate_paces_calls_and_times_them_from_their_schedule() -> None:
    settings = compare_etcd.settings_for(compare_etcd.Scenario("t", "t", 4, 2), 1.0, 0.0)
    calls: list[str] = []

    async def fast(key: str) -> None:
        calls.append(key)

    paced = asyncio.run(drive(fast, ["a", "b"], replace(settings, rate=400.0),
                              failures=(RuntimeError,)))
    # 400 messages/s of 2-message calls for 1 s: about 200 calls, never much more.
    assert 150 <= paced.totals.appends <= 210, paced.totals.appends
    assert paced.totals.messages == 2 * paced.totals.appends
    assert set(calls) == {"a", "b"}

    async def slow(key: str) -> None:
        await asyncio.sleep(0.05)  # the "server": at most 4 workers x 20 calls/s = 160 msg/s

    behind = asyncio.run(drive(slow, ["a"], replace(settings, rate=2000.0),
                               failures=(RuntimeError,)))
    # Offered 1000 calls/s, served ~80/s: the backlog shows in the latency (from the
    # schedule), far above the 50 ms a call takes once started.
    assert behind.reservoir.percentiles()["p99"] > 300, behind.reservoir.percentiles()


INTERRUPTIBLE = """
import asyncio, sys
from quorumlog.client.cli.bench import sigterm_as_interrupt
try:
    with sigterm_as_interrupt():
        print("ready", flush=True)
        asyncio.run(asyncio.sleep(60))
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_run_started_with_sigint_ignored_still_stops_on_ctrl_c(
        signum: signal.Signals) -> None:
    """A background job of a non-interactive shell starts with SIGINT ignored; the scripts'
    Ctrl-C (and SIGTERM) must still stop them (cleanup runs, exit 130)."""
    # ``trap '' INT`` ignores SIGINT, and exec passes that on to Python.
    with subprocess.Popen(
            ["sh", "-c", 'trap "" INT; exec "$0" -c "$1"', sys.executable, INTERRUPTIBLE],
            cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
            process.send_signal(signum)
            assert process.wait(timeout=30) == 130
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
