"""The deterministic simulator: many seeds pass, a seed replays exactly, the CLI contract holds,
and the invariant checker refuses each kind of broken history it is given directly."""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys

import pytest

from quorumlog.client.cli.cmd_sim import add_arguments, run, run_seeds, summarize
from quorumlog.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    Entry,
    HardState,
    Message,
    MessageType,
    RawNode,
    StateRole,
)
from quorumlog.raft import bootstrap_memory_storage as bootstrap
from quorumlog.raft.invariants import InvariantChecker, InvariantViolation
from quorumlog.raft.log import RaftLog
from quorumlog.raft.testing.sim import DEFAULT_STEPS, RunOptions

pytestmark = pytest.mark.slow

SEED_CHUNKS = 20
SEEDS_PER_CHUNK = 50  # 1000 seeds of 3000 steps: about 20 s of CPU, spread by pytest-xdist


@pytest.mark.parametrize("chunk", range(SEED_CHUNKS))
def test_seeds_pass(chunk: int) -> None:
    options = RunOptions(steps=DEFAULT_STEPS)
    seeds = range(chunk * SEEDS_PER_CHUNK, (chunk + 1) * SEEDS_PER_CHUNK)
    results = run_seeds(list(seeds), options)
    failures = [
        f"seed {result.seed}: {result.violation or 'liveness'} at step {result.at_step}: "
        f"{result.message or result.liveness_failure}\n"
        f"  replay: quorumlog sim --seed {result.seed} --steps {options.steps}"
        for result in results
        if result.failed
    ]
    assert not failures, "\n".join(failures)
    # The run did real work: leaders were elected and client values committed.
    assert sum(result.elections for result in results) >= len(results)
    assert sum(result.committed for result in results) > 0


def test_the_workload_is_substantial() -> None:
    """Calm phases let the client get work done: most proposals are accepted, hundreds of
    values commit per seed, every client read is answered (and checked), and nodes keep
    stepping while a Ready is outstanding, sometimes crashing with it unpersisted."""
    options = RunOptions(steps=DEFAULT_STEPS)
    seeds = list(range(100, 120))
    summary = summarize(seeds, options, run_seeds(seeds, options))
    faults = summary["faults"]
    assert isinstance(faults, dict)
    committed = summary["committed"]
    assert isinstance(committed, int)
    assert committed / len(seeds) >= 150
    assert faults["proposals_dropped"] < 0.6 * faults["proposals"]  # the old schedule: 0.79
    assert faults["reads_completed"] == faults["reads"] > 0
    assert faults["reads_served"] >= faults["reads"]
    assert faults["held_readies"] > 0 and faults["held_crashes"] > 0
    assert faults["bursts"] >= len(seeds)


def test_a_seed_replays_identically() -> None:
    options = RunOptions(steps=1500)
    first = summarize([7], options, run_seeds([7], options))
    again = summarize([7], options, run_seeds([7], options))
    assert first == again
    assert first["elections"] and first["committed"]


def test_results_do_not_depend_on_jobs() -> None:
    options = RunOptions(steps=500)
    seeds = list(range(40, 48))
    assert summarize(seeds, options, run_seeds(seeds, options, jobs=1)) == summarize(
        seeds, options, run_seeds(seeds, options, jobs=2)
    )


def test_cli_json() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "quorumlog.client.cli", "sim", "--seeds", "4", "--steps", "300",
         "--seed", "10", "--json", "--jobs", "1"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout)
    for key in ("seeds", "steps", "violations", "liveness_failures", "elections", "committed",
                "faults", "wall_seconds"):
        assert key in summary, key
    assert summary["seeds"] == 4
    assert summary["steps"] == 300
    assert summary["first_seed"] == 10
    assert summary["violations"] == 0
    assert summary["liveness_failures"] == 0
    assert summary["faults"]["delivered"] > 0


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_reports_a_violation_with_its_replay_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def apply_beyond_commit(self: RaftLog) -> list[Entry]:
        lo = max(self.applied + 1, self.first_index())
        return self.slice(lo, self.last_index() + 1) if self.last_index() >= lo else []

    monkeypatch.setattr(RaftLog, "next_committed_entries", apply_beyond_commit)
    monkeypatch.setattr(
        RaftLog, "has_next_committed_entries",
        lambda self: self.last_index() > max(self.applied, self.first_index() - 1),
    )
    code = run(_parse(["--seed", "3", "--steps", "400", "--json"]))
    captured = capsys.readouterr()
    assert code == 1
    assert "seed 3: violation state-machine-safety" in captured.err
    assert "replay: quorumlog sim --seed 3 --steps 400" in captured.err
    summary = json.loads(captured.out)
    assert summary["violations"] == 1
    assert summary["failures"][0]["replay"] == "quorumlog sim --seed 3 --steps 400"


def test_cli_reports_a_liveness_failure(capsys: pytest.CaptureFixture[str]) -> None:
    # One heal tick is far too few for a cluster to elect a leader: a liveness failure.
    code = run(_parse(["--seed", "5", "--steps", "0", "--heal-ticks", "1"]))
    captured = capsys.readouterr()
    assert code == 1
    assert "seed 5: liveness failure" in captured.err
    assert "replay: quorumlog sim --seed 5 --steps 0 --heal-ticks 1" in captured.err


# -- the checker, fed broken histories directly ------------------------------------------------
def _raw(node_id: int) -> RawNode:
    return RawNode(Config(id=node_id, rng=random.Random(node_id)), bootstrap((1, 2, 3)))


def test_checker_refuses_two_leaders_in_one_term() -> None:
    checker = InvariantChecker()
    first, second = _raw(1), _raw(2)
    for raw in (first, second):
        raw.campaign()
        raw.raft.become_leader()  # forced: no votes were exchanged
        raw.raft.term = 2
    checker.observe(1, first.raft)
    with pytest.raises(InvariantViolation) as caught:
        checker.observe(2, second.raft)
    assert caught.value.invariant == "election-safety"


def test_checker_refuses_a_stale_read() -> None:
    checker = InvariantChecker()
    checker._extend_committed(1, 2, 2)
    checker.acknowledge(2, 2, b"x")
    checker.read_invoked(b"r1")
    with pytest.raises(InvariantViolation) as caught:
        checker.read_served(1, b"r1", 1)
    assert caught.value.invariant == "stale-read"


def test_checker_refuses_diverging_applies() -> None:
    checker = InvariantChecker()
    checker._extend_committed(1, 2, 2)
    checker.observe_applied(1, [Entry(2, 2, b"a")], commit=2)
    with pytest.raises(InvariantViolation) as caught:
        checker.observe_applied(2, [Entry(2, 2, b"b")], commit=2)
    assert caught.value.invariant == "state-machine-safety"


def test_checker_refuses_durable_term_going_down_and_double_votes() -> None:
    checker = InvariantChecker()
    checker.observe_durable(1, HardState(term=3, vote=2, commit=1))
    with pytest.raises(InvariantViolation) as caught:
        checker.observe_durable(1, HardState(term=3, vote=3, commit=1))
    assert caught.value.invariant == "vote-once"
    with pytest.raises(InvariantViolation) as caught:
        checker.observe_durable(1, HardState(term=2, vote=0, commit=1))
    assert caught.value.invariant == "monotonic-term"


def test_a_candidate_removed_while_campaigning_cannot_win() -> None:
    """Found by seed 2092 once Readies were pipelined: a follower's Ready carried the committed
    removal of itself; it campaigned before ``advance()`` applied it, then won with the votes
    in flight and led forever as a non-voter that could commit nothing."""
    raw = _raw(1)
    raw.raft.become_pre_candidate()
    raw.raft.become_candidate()
    raw.raft.apply_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 1))
    assert raw.raft.role == StateRole.FOLLOWER
    for voter in (2, 3):
        raw.step(Message(MessageType.VOTE_RESP, to=1, frm=voter, term=raw.raft.term))
    assert raw.raft.role == StateRole.FOLLOWER


def test_checker_refuses_stable_entries_missing_from_disk() -> None:
    checker = InvariantChecker()
    raw = _raw(1)
    raw.raft.log.unstable_offset = 5  # claims entries up to 4 are stable
    checker.observe_stable(1, raw.raft, durable_last_index=4)
    with pytest.raises(InvariantViolation) as caught:
        checker.observe_stable(1, raw.raft, durable_last_index=3)
    assert caught.value.invariant == "durable-log"


def test_checker_refuses_a_vote_sent_before_it_is_durable() -> None:
    checker = InvariantChecker()
    grant = Message(MessageType.VOTE_RESP, to=2, frm=1, term=4)
    checker.observe_sent(1, [grant], HardState(term=4, vote=2), durable_last_index=1)
    with pytest.raises(InvariantViolation) as caught:
        checker.observe_sent(1, [grant], HardState(term=3, vote=0), durable_last_index=1)
    assert caught.value.invariant == "durable-before-send"
