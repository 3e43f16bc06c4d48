"""Small pieces of the chaos run: outcome classification, routing, proxy wiring, progress,
and the unsafe storage mode the canary relies on (kill -9 loses acknowledged writes)."""

from __future__ import annotations

import asyncio
import io
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from quorumlog.chaos.run.nemesis import add_back
from quorumlog.chaos.run.network import ChaosNetwork, client_proxy, peer_proxy
from quorumlog.chaos.run.runner import Progress, RunOptions, _faulty_phase
from quorumlog.chaos.run.workload import Route, classify
from quorumlog.client import errors
from quorumlog.client.admin import AddNodeResult
from quorumlog.client.errors import AlreadyExists, FailedPrecondition
from quorumlog.node.storage.raft_store import RocksStorage


@pytest.mark.parametrize(("error", "kind"), [
    (errors.Unavailable("node n1: not the leader; leader is n2"), "refused"),
    (errors.Unavailable("node n1: leadership changed; not written; no leader known"),
     "refused"),
    (errors.Unavailable("outcome unknown: leadership lost while the request was in flight"),
     "unknown"),
    (errors.Unavailable("failed to connect to all addresses; last error: connection refused"),
     "refused"),
    (errors.Unavailable("Socket closed"), "unknown"),
    (errors.Unavailable("recvmsg:Connection reset by peer"), "unknown"),
    (errors.DeadlineExceeded("Deadline Exceeded"), "unknown"),
    (errors.InvalidArgument("partially overlap"), "final"),
    (errors.ResourceExhausted("too big"), "final"),
    (errors.Cancelled("cancelled"), "unknown"),
])
def test_classify_only_calls_certain_refusals_refused(error: errors.QuorumLogError,
                                                      kind: str) -> None:
    assert classify(error) == kind


def test_route_follows_the_leader_id_and_never_a_real_address() -> None:
    route = Route({"n1": "127.0.0.1:1", "n2": "127.0.0.1:2", "n3": "127.0.0.1:3"},
                  random.Random(1))
    hinted = errors.Unavailable("node n1: not the leader",
                                metadata={errors.LEADER_ID_KEY: "n3",
                                          errors.LEADER_ADDR_KEY: "127.0.0.1:9999"})
    route.after_error("n1", hinted)
    assert route.target == "n3"
    assert "127.0.0.1:9999" not in route.addresses.values()
    route.after_error("n3", errors.Unavailable("Socket closed"))
    assert route.target == "n1"  # round robin after n3
    unknown_leader = errors.Unavailable("x", metadata={errors.LEADER_ID_KEY: "n9"})
    route.after_error("n1", unknown_leader)
    assert route.target == "n2"


class FakeToxiproxy:
    """Records the calls ChaosNetwork makes; resolves listen ports deterministically."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.port = 20000

    def create_proxy(self, name: str, upstream: str, listen: str) -> dict[str, Any]:
        self.port += 1
        self.calls.append(("create", name, upstream))
        return {"name": name, "listen": f"127.0.0.1:{self.port}", "upstream": upstream}

    def update_proxy(self, name: str, **fields: Any) -> dict[str, Any]:
        self.calls.append(("update", name, fields))
        return {}

    def add_toxic(self, proxy: str, toxic_type: str, **fields: Any) -> dict[str, Any]:
        self.calls.append(("toxic", proxy, toxic_type, fields["stream"]))
        return {}


def _network() -> tuple[ChaosNetwork, FakeToxiproxy]:
    fake = FakeToxiproxy()
    network = ChaosNetwork(fake,  # type: ignore[arg-type]
                           {"n1": "127.0.0.1:1", "n2": "127.0.0.1:2", "n3": "127.0.0.1:3"},
                           {"n1": "127.0.0.1:11", "n2": "127.0.0.1:12", "n3": "127.0.0.1:13"})
    network.setup()
    return network, fake


def test_one_proxy_per_client_port_and_directed_peer_link() -> None:
    network, fake = _network()
    created = {call[1]: call[2] for call in fake.calls}
    assert created[client_proxy("n2")] == "127.0.0.1:2"
    assert created[peer_proxy("n1", "n2")] == "127.0.0.1:12"  # n1 -> n2 ends at n2
    assert created[peer_proxy("n2", "n1")] == "127.0.0.1:11"
    assert len(created) == 3 + 6
    assert network.routes_for("n1") == {  # the others, each through n1's own proxy
        "n2": network.listen[peer_proxy("n1", "n2")],
        "n3": network.listen[peer_proxy("n1", "n3")],
    }
    assert network.client_address("n3") == network.listen[client_proxy("n3")]


def test_isolation_cuts_both_directions_and_asymmetry_one() -> None:
    network, fake = _network()
    fake.calls.clear()
    network.cut(network.links_of("n2"))
    cut = {call[1] for call in fake.calls if call[0] == "update"}
    assert cut == {peer_proxy(a, b) for a, b in
                   [("n1", "n2"), ("n2", "n1"), ("n3", "n2"), ("n2", "n3")]}
    fake.calls.clear()
    network.cut([("n1", "n3")])
    assert fake.calls == [("update", peer_proxy("n1", "n3"), {"enabled": False})]
    fake.calls.clear()
    network.blackhole([("n1", "n3")])
    assert sorted(fake.calls) == [("toxic", peer_proxy("n1", "n3"), "timeout", "downstream"),
                                  ("toxic", peer_proxy("n1", "n3"), "timeout", "upstream")]


def test_progress_rewrites_one_line_on_a_terminal_only() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    progress = Progress(terminal, 60)
    progress.show(1.0, "ops 1")
    progress.show(2.0, "ops 2")
    progress.log(2.5, "fault start")
    assert terminal.getvalue().count("\r") >= 3
    assert "[   2.5s] fault start\n" in terminal.getvalue()
    plain = io.StringIO()
    progress = Progress(plain, 60)
    for second in range(25):
        progress.show(float(second), f"ops {second}")
    assert plain.getvalue().splitlines() == ["ops 0", "ops 10", "ops 20"]


_WRITER = textwrap.dedent("""
    import os, sys
    from quorumlog.node.storage.raft_store import RocksStorage
    from quorumlog.raft.types import Entry, HardState
    storage = RocksStorage(sys.argv[1], unsafe_volatile=sys.argv[2] == "volatile")
    batch = storage.batch()
    batch.append([Entry(term=1, index=i) for i in range(1, 51)])
    batch.set_hard_state(HardState(term=1, vote=0, commit=50))
    storage.write(batch, sync=True)
    if sys.argv[3] == "kill":
        os.kill(os.getpid(), 9)
    storage.close()
""")


@pytest.mark.parametrize(("mode", "ending", "survives"), [
    ("volatile", "kill", False),  # the canary's node option: acknowledged, then gone
    ("volatile", "close", True),  # a clean stop still flushes
    ("safe", "kill", True),  # the default: a synced write survives kill -9
])
def test_unsafe_volatile_storage_loses_writes_on_kill_9(tmp_path: Path, mode: str,
                                                       ending: str, survives: bool) -> None:
    path = tmp_path / "db"
    subprocess.run([sys.executable, "-c", _WRITER, str(path), mode, ending], timeout=60,
                   check=False)
    with RocksStorage(path) as storage:
        assert (storage.last_index() == 50) is survives
        assert (storage.initial_state()[0].commit == 50) is survives


class _StubAdmin:
    """``add_node`` refuses with the given errors first, then succeeds."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def add_node(self, node_id: str, peer_address: str,
                       client_address: str) -> AddNodeResult:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return AddNodeResult(node_id, 10, 12, 0.5)


def _add_back(admin: _StubAdmin, *, deadline: float = 30.0) -> tuple[bool, list[str]]:
    notes: list[str] = []
    done = asyncio.run(add_back(
        admin, "n3", "127.0.0.1:2", "127.0.0.1:1", notes,  # type: ignore[arg-type]
        deadline=deadline, pause=0.01))
    return done, notes


def test_membership_add_back_waits_out_a_pending_change() -> None:
    pending = FailedPrecondition("previous membership change at 18624 not applied yet")
    admin = _StubAdmin(pending, pending)
    done, notes = _add_back(admin)
    assert done and admin.calls == 3
    assert notes == ["re-added n3: learner at 10, voter at 12, caught up in 0.50s"]


def test_membership_add_back_gives_up_at_its_deadline_and_says_so() -> None:
    admin = _StubAdmin(*[FailedPrecondition("previous change not applied yet")] * 1000)
    done, notes = _add_back(admin, deadline=0.2)
    assert not done and 2 <= admin.calls < 1000
    assert notes[-1].startswith("re-adding n3 failed: FailedPrecondition")


def test_membership_add_back_of_a_node_that_never_left() -> None:
    done, notes = _add_back(_StubAdmin(AlreadyExists("n3 is already a voter")))
    assert done and notes == ["n3 is still a member: n3 is already a voter"]


class _SlowLeader:
    """A monitor whose first leader takes ``delay`` seconds (past the baseline)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def wait_leader(self, timeout: float) -> str:
        await asyncio.sleep(self.delay)
        return "n1"


class _Recorder:
    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.events: list[tuple[str, float]] = []
        self.recorder = None

    def start(self) -> None:
        self.events.append(("workload", self.clock()))

    async def finish(self) -> None:
        self.events.append(("finish", self.clock()))

    async def run(self, scheduler: Any, end_at: float) -> None:
        self.events.append(("faults", self.clock()))

    async def restart_all(self) -> None:
        self.events.append(("restart", self.clock()))


def test_the_fault_free_baseline_counts_from_the_workload_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster slow to elect (0.6 s here, 6 s on a loaded machine) must not eat the
    baseline: the first fault waits ``baseline`` seconds after the workload started."""
    import quorumlog.chaos.run.runner as run_module

    async def no_progress(*args: Any) -> None:
        return None

    monkeypatch.setattr(run_module, "_show_progress", no_progress)
    monkeypatch.setattr(run_module, "MIN_AFTER_RESTART", 0.0)
    monkeypatch.setattr(run_module, "FINAL_RESERVE", 0.0)

    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        origin = loop.time()

        def clock() -> float:
            return loop.time() - origin

        fake = _Recorder(clock)
        options = RunOptions(out=Path("unused"), duration=1.0, baseline=0.5)
        await _faulty_phase(options, clock, Progress(io.StringIO(), 1.0),
                            monitor=_SlowLeader(0.6), nemesis=fake,  # type: ignore[arg-type]
                            workload=fake)  # type: ignore[arg-type]
        return fake.events

    events = dict(asyncio.run(main()))
    assert events["workload"] >= 0.6
    assert events["faults"] - events["workload"] >= 0.5 - 0.01, events
