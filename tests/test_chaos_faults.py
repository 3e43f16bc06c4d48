"""The chaos run's fault list parsing and seeded scheduler (pure, no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quorumlog.chaos.run.faults import (
    DEFAULT_FAULTS,
    FAULT_KINDS,
    FaultListError,
    FaultScheduler,
    candidates_pick,
    parse_fault_list,
)
from quorumlog.chaos.run.nemesis import Nemesis, estimated_seconds
from quorumlog.chaos.run.processes import ChaosNode, ChaosNodes

ISSUE_FAULTS = {"isolate_leader", "isolate_follower", "asymmetric", "latency", "bandwidth",
                "slicer", "client_reset", "client_timeout", "kill_leader", "kill_two",
                "pause_leader", "pause_then_kill", "compaction", "membership"}


def test_default_list_covers_every_fault_of_the_issue() -> None:
    assert set(DEFAULT_FAULTS) >= ISSUE_FAULTS
    assert all(FAULT_KINDS[name].available for name in ISSUE_FAULTS)


def test_every_schedulable_fault_has_a_nemesis_action() -> None:
    for name, kind in FAULT_KINDS.items():
        if kind.available:
            assert callable(getattr(Nemesis, f"_fault_{name}", None)), name


@pytest.mark.parametrize("text", [None, "default", "all", " all "])
def test_default_spellings(text: str | None) -> None:
    assert parse_fault_list(text) == DEFAULT_FAULTS


def test_list_keeps_order_drops_repeats_and_accepts_dashes() -> None:
    assert parse_fault_list("kill-leader, latency,kill_leader,") == ("kill_leader", "latency")


def test_unknown_fault_is_named() -> None:
    with pytest.raises(FaultListError, match="unknown fault 'explode'"):
        parse_fault_list("latency,explode")


def test_membership_can_be_scheduled_alone() -> None:
    assert parse_fault_list("membership") == ("membership",)
    plans = FaultScheduler(1, ["membership"])
    assert next(iter(plans)).kind == "membership"


def test_empty_list_is_refused() -> None:
    with pytest.raises(FaultListError, match="no fault"):
        parse_fault_list(" , ")


@pytest.mark.parametrize("seed", [1, 2, 77])
def test_same_seed_same_schedule(seed: int) -> None:
    first = FaultScheduler(seed, DEFAULT_FAULTS).take(40)
    second = FaultScheduler(seed, DEFAULT_FAULTS).take(40)
    assert first == second, f"seed {seed}"


def test_other_seed_other_schedule() -> None:
    assert FaultScheduler(1, DEFAULT_FAULTS).take(14) != FaultScheduler(2, DEFAULT_FAULTS).take(14)


def test_each_round_is_a_permutation_of_the_list() -> None:
    plans = FaultScheduler(5, DEFAULT_FAULTS).take(3 * len(DEFAULT_FAULTS))
    for round_start in range(0, len(plans), len(DEFAULT_FAULTS)):
        kinds = [plan.kind for plan in plans[round_start:round_start + len(DEFAULT_FAULTS)]]
        assert sorted(kinds) == sorted(DEFAULT_FAULTS)
    assert [plan.number for plan in plans] == list(range(1, len(plans) + 1))


def test_holds_and_parameters_stay_in_their_ranges() -> None:
    for plan in FaultScheduler(9, DEFAULT_FAULTS).take(200):
        low, high = FAULT_KINDS[plan.kind].hold
        assert low <= plan.hold <= high, plan
        if plan.kind == "latency":
            assert 40 <= plan.params["latency"] < 120 and 10 <= plan.params["jitter"] < 40
        if plan.kind == "bandwidth":
            assert plan.params["rate"] > 0
        if plan.kind == "pause_leader":
            # SIGSTOP must outlast the election timeout (10 ticks of 100 ms, randomised to 2 s)
            assert plan.hold > 2.0
        assert estimated_seconds(plan) >= min(plan.hold, 12.0)


def test_a_single_fault_repeats() -> None:
    assert {plan.kind for plan in FaultScheduler(3, ["kill_all"]).take(5)} == {"kill_all"}


def test_candidates_pick_is_by_sorted_name() -> None:
    assert candidates_pick(["n3", "n1"], 0) == "n1"
    assert candidates_pick(["n3", "n1"], 3) == "n3"
    with pytest.raises(ValueError):
        candidates_pick([], 1)


def _nemesis() -> Nemesis:
    nodes = ChaosNodes([ChaosNode(name, f"127.0.0.1:{port}", f"127.0.0.1:{port + 100}", {},
                                  Path("/nonexistent") / name, Path("/nonexistent/log"))
                        for port, name in ((1, "n1"), (2, "n2"), (3, "n3"))], [], 1)
    return Nemesis(None, nodes, None, None, print)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_targets_resolve_against_the_current_leader(seed: int) -> None:
    nemesis = _nemesis()
    for plan in FaultScheduler(seed, DEFAULT_FAULTS).take(60):
        target = nemesis._target(plan, "n2", ["n1", "n3"])
        if plan.kind in ("isolate_leader", "kill_leader", "pause_leader", "pause_then_kill",
                         "client_timeout"):
            assert target == "n2", plan
        elif plan.kind in ("isolate_follower", "compaction"):
            assert target in ("n1", "n3"), plan
        elif plan.kind == "kill_two":
            assert target is not None
            first, second = target.split(",")
            assert first == "n2" and second in ("n1", "n3"), plan
        elif plan.kind == "asymmetric":
            assert target is not None
            source, destination = target.split("->")
            assert "n2" in (source, destination) and source != destination, plan
