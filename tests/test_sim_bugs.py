"""The simulator can fail: five classic Raft bugs, injected into the core, are each caught.

Each test monkeypatches one method of the core, runs seeds 0, 1, 2, ... with the exact
settings of ``quorumlog sim`` (3000 steps, every fault enabled) and asserts that a *safety*
invariant reports a violation before the seed budget runs out. Everything is deterministic, so
the seed that catches each bug is fixed; the budgets leave a wide margin over it, and a
passing test stops at its first catch. The Ready-contract check (``durable-before-send``) is
switched off except where a test says otherwise, so these show the consequences being caught,
not just the broken rule.
"""

from __future__ import annotations

import pytest

from quorumlog.raft.log import RaftLog
from quorumlog.raft.raft import Raft
from quorumlog.raft.testing.sim import DEFAULT_STEPS, SeedResult, Simulation
from quorumlog.raft.types import Entry, Message, MessageType

SAFETY = {
    "election-safety",
    "log-matching",
    "leader-completeness",
    "committed-mismatch",
    "state-machine-safety",
    "acknowledged-lost",
    "stale-read",
}


# -- the bugs ------------------------------------------------------------------------------------
def commit_any_term(self: RaftLog, index: int, term: int) -> bool:
    """Figure 8: count replicas of an older term's entry toward commitment."""
    if index > self.committed:
        self.committed = index
        return True
    return False


def send_everything_now(self: Raft, message: Message) -> None:
    """Votes and append acks leave before the state they vouch for is durable."""
    message.frm = self.id
    if message.term == 0 and message.type not in (MessageType.PROPOSE, MessageType.READ_INDEX):
        message.term = self.term
    self.msgs.append(message)


def always_up_to_date(self: RaftLog, last_index: int, last_term: int) -> bool:
    """Grant votes without the §5.4.1 log comparison."""
    return True


def apply_beyond_commit(self: RaftLog) -> list[Entry]:
    """Hand every entry in the log to the state machine, committed or not."""
    lo = max(self.applied + 1, self.first_index())
    if self.last_index() < lo:
        return []
    return self.slice(lo, self.last_index() + 1)


def has_entries_beyond_commit(self: RaftLog) -> bool:
    return self.last_index() > max(self.applied, self.first_index() - 1)


def append_without_truncating(
    self: RaftLog, index: int, log_term: int, committed: int, entries: list[Entry]
) -> int | None:
    """Keep a conflicting suffix and only append what lies beyond our last index."""
    if not self.match_term(index, log_term):
        return None
    last_new = index + len(entries)
    fresh = [entry for entry in entries if entry.index > self.last_index()]
    if fresh:
        self.append(fresh)
    self.commit_to(min(committed, last_new, self.last_index()))
    return last_new


def first_violation(budget: int, check_sends: bool = False) -> SeedResult | None:
    for seed in range(budget):
        result = Simulation(seed, DEFAULT_STEPS, check_sends=check_sends).run()
        if result.violation is not None:
            print(f"caught at seed {seed}, step {result.at_step}: {result.violation}: "
                  f"{result.message}")
            return result
    return None


def assert_caught(budget: int) -> SeedResult:
    result = first_violation(budget)
    assert result is not None, f"no violation in seeds 0..{budget - 1}"
    assert result.violation in SAFETY, (
        f"seed {result.seed}: expected a safety violation, got {result.violation}: "
        f"{result.message}"
    )
    return result


# -- the tests -----------------------------------------------------------------------------------
@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
def test_counting_previous_term_entries_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RaftLog, "maybe_commit", commit_any_term)
    assert_caught(budget=400)  # first caught at seed 66


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
def test_ack_before_persist_breaks_safety(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Raft, "_send", send_everything_now)
    assert_caught(budget=300)  # first caught at seed 5, by a crash between send and persist


def test_ack_before_persist_breaks_the_ready_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Raft, "_send", send_everything_now)
    result = first_violation(budget=5, check_sends=True)
    assert result is not None
    assert result.seed == 0
    assert result.violation == "durable-before-send", result.message


def test_voting_without_log_check_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RaftLog, "is_up_to_date", always_up_to_date)
    assert_caught(budget=60)  # first caught at seed 3


def test_applying_beyond_commit_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RaftLog, "next_committed_entries", apply_beyond_commit)
    monkeypatch.setattr(RaftLog, "has_next_committed_entries", has_entries_beyond_commit)
    result = assert_caught(budget=20)  # first caught at seed 0
    assert result.violation == "state-machine-safety"


def test_keeping_a_conflicting_suffix_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RaftLog, "maybe_append", append_without_truncating)
    assert_caught(budget=60)  # first caught at seed 0


def test_the_correct_core_passes_the_same_seeds() -> None:
    """The seeds that catch the bugs are ordinary seeds: without a bug they pass."""
    for seed in (0, 3, 5, 66):
        result = Simulation(seed, DEFAULT_STEPS).run()
        assert not result.failed, (
            f"seed {seed}: {result.violation or result.liveness_failure}: {result.message}\n"
            f"replay: quorumlog sim --seed {seed} --steps {DEFAULT_STEPS}"
        )
