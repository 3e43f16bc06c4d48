"""The many-groups simulator (``quorumlog sim --groups G``): 1,000 seeds pass, the shared disk,
the shared links and the replica move do what they model, a seed replays exactly, the CLI
contract holds, and deliberately broken nodes are caught."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from quorumlog.client.cli.cmd_sim import add_arguments, run, run_multi_seeds, summarize_multi
from quorumlog.raft import ConfState, Entry, HardState
from quorumlog.raft.log import RaftLog
from quorumlog.raft.storage import MemoryStorage, bootstrap_memory_storage
from quorumlog.raft.testing.multisim import (
    DEFAULT_GROUPS,
    DEFAULT_STEPS,
    Batch,
    MultiRunOptions,
    MultiSeedResult,
    MultiSimulation,
    NodeDisk,
)

SEED_CHUNKS = 20
SEEDS_PER_CHUNK = 50  # 1,000 seeds x 1,200 steps x 4 groups: about 35 s of CPU in all

SAFETY = {
    "election-safety",
    "log-matching",
    "leader-completeness",
    "committed-mismatch",
    "state-machine-safety",
    "acknowledged-lost",
}


def _failures(results: list[MultiSeedResult], options: MultiRunOptions) -> list[str]:
    return [
        f"seed {result.seed}: {result.violation or 'liveness'} (group {result.group}) at step "
        f"{result.at_step}: {result.message or result.liveness_failure}\n"
        f"  replay: quorumlog sim --groups {options.groups} --seed {result.seed} "
        f"--steps {options.steps}"
        for result in results
        if result.failed
    ]


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(SEED_CHUNKS))
def test_seeds_pass(chunk: int) -> None:
    options = MultiRunOptions(steps=DEFAULT_STEPS, groups=DEFAULT_GROUPS)
    seeds = list(range(chunk * SEEDS_PER_CHUNK, (chunk + 1) * SEEDS_PER_CHUNK))
    results = run_multi_seeds(seeds, options)
    failures = _failures(results, options)
    assert not failures, "\n".join(failures)
    assert sum(result.elections for result in results) >= len(results) * DEFAULT_GROUPS
    assert sum(result.committed for result in results) > 0
    assert sum(result.counters.moves_done for result in results) == len(results)


def test_the_run_exercises_shared_disks_links_and_moves() -> None:
    """Fsyncs cover several groups' writes, crashes drop unsynced writes, links carry several
    messages per batch, every seed moves a replica (most before the final heal) and every
    group commits client values."""
    options = MultiRunOptions(steps=DEFAULT_STEPS, groups=DEFAULT_GROUPS)
    seeds = list(range(500, 520))
    results = run_multi_seeds(seeds, options)
    assert not _failures(results, options)
    summary = summarize_multi(seeds, options, results)
    faults = summary["faults"]
    assert isinstance(faults, dict)
    assert faults["shared_syncs"] > 0.1 * faults["syncs"]
    assert faults["synced_groups"] > 1.2 * faults["syncs"]
    assert faults["lost_writes"] > 0 and faults["round_crashes"] > 0
    assert faults["held_syncs"] > 0
    assert faults["delivered"] > 1.5 * faults["batches_delivered"]
    assert faults["moves_done"] == len(seeds)
    assert faults["moves_done_in_run"] >= len(seeds) // 2
    assert faults["conf_changes"] >= 3 * len(seeds)
    committed = summary["committed"]
    assert isinstance(committed, int) and committed / len(seeds) >= 60
    assert all("done at step" in result.move for result in results)


def test_a_seed_replays_identically() -> None:
    lines: list[list[str]] = [[], []]
    results = [
        MultiSimulation(7, 800, trace=lines[attempt].append).run() for attempt in range(2)
    ]
    assert lines[0] == lines[1] and lines[0]
    assert vars(results[0].counters) == vars(results[1].counters)
    assert results[0].move == results[1].move
    assert results[0].committed == results[1].committed > 0


def test_results_do_not_depend_on_jobs() -> None:
    options = MultiRunOptions(steps=400)
    seeds = list(range(40, 46))
    assert summarize_multi(seeds, options, run_multi_seeds(seeds, options, jobs=1)) == (
        summarize_multi(seeds, options, run_multi_seeds(seeds, options, jobs=2))
    )


def test_groups_share_the_hosting_nodes() -> None:
    sim = MultiSimulation(3, 0, groups=5)
    assert sorted(sim.replicas) == [0, 1, 2, 3, 4]
    for group, members in sim.replicas.items():
        assert len(members) == 3, group
    for node_id in sim.node_ids:
        assert len(sim.hosted[node_id]) >= 2  # every node hosts several groups
    assert sim.move.group != 0 and sim.move.target not in sim.replicas[sim.move.group]


# -- the node's one storage engine -----------------------------------------------------------
def test_one_fsync_covers_every_groups_writes_and_a_crash_drops_them_all() -> None:
    disk = NodeDisk()
    for group in (0, 1, 2):
        disk.create(group, bootstrap_memory_storage((1, 2, 3)))
    disk.write(0, lambda storage: storage.append([Entry(2, 2, b"a")]))
    disk.write(1, lambda storage: storage.set_hard_state(HardState(term=3, vote=1, commit=1)))
    assert disk.live[0].last_index() == 2  # readable at once
    assert disk.durable[0].last_index() == 1  # not durable before the fsync
    assert disk.sync() == {0, 1}  # one fsync, both groups
    assert disk.durable[0].last_index() == 2
    assert disk.durable[1].hard_state.term == 3
    disk.write(0, lambda storage: storage.append([Entry(2, 3, b"b")]))
    disk.write(2, lambda storage: storage.append([Entry(2, 2, b"c")]))
    disk.write(1, lambda storage: storage.set_hard_state(HardState(term=4, vote=2, commit=1)))
    assert disk.lose_unsynced() == 3
    assert disk.wal == []
    for group in (0, 1, 2):  # every group back to its last synced state at once
        assert disk.live[group].last_index() == disk.durable[group].last_index()
        assert disk.live[group].hard_state == disk.durable[group].hard_state
    assert disk.live[0].last_index() == 2 and disk.live[2].last_index() == 1
    assert disk.live[1].hard_state.term == 3


def test_destroying_a_group_drops_only_its_writes() -> None:
    disk = NodeDisk()
    disk.create(1, bootstrap_memory_storage((1, 2, 3)))
    disk.create(2, MemoryStorage(ConfState()))
    disk.write(1, lambda storage: storage.append([Entry(2, 2, b"a")]))
    disk.write(2, lambda storage: storage.set_hard_state(HardState(term=2)))
    disk.destroy(2)
    assert [group for group, _ in disk.wal] == [1]
    assert disk.sync() == {1}


def test_a_crash_in_the_simulation_restarts_every_group_from_its_synced_state() -> None:
    """Step a seed until some node holds unsynced writes of two or more groups, crash it:
    every group's replica there is down, every group's storage is back to its durable state,
    and each restarts at its durable term."""
    for seed in range(20):
        sim = MultiSimulation(seed, 2000)
        for step_no in range(2000):
            sim.step_no = step_no
            sim._step()
            sim._flush_links()
            victims = [
                node_id
                for node_id, disk in sim.disks.items()
                if node_id not in sim.down and len({group for group, _ in disk.wal}) >= 2
            ]
            if victims:
                break
        else:
            continue
        node_id = victims[0]
        disk = sim.disks[node_id]
        durable = {group: storage.hard_state for group, storage in disk.durable.items()}
        sim._crash_node(node_id, "by the test")
        assert all(replica.raw is None for replica in sim.hosted[node_id].values())
        for group, storage in disk.live.items():
            assert storage.hard_state == durable[group]
            assert storage.last_index() == disk.durable[group].last_index()
        sim._restart_node(node_id)
        for group, replica in sim.hosted[node_id].items():
            assert replica.raw is not None
            assert replica.raw.raft.term == durable[group].term
        return
    pytest.fail("no node ever held two groups' unsynced writes")


def test_one_batch_per_link_per_step_and_a_cut_link_stops_every_group() -> None:
    sim = MultiSimulation(11, 0)
    mixed = 0
    for step_no in range(600):
        sim.step_no = step_no
        sim._step()
        before = len(sim.in_flight)
        outbox_links = set(sim.outbox)
        sim._flush_links()
        new: list[Batch] = sim.in_flight[before:]
        links = [(batch.frm, batch.to) for batch in new]
        assert len(links) == len(set(links)) and set(links) <= outbox_links
        mixed += sum(1 for batch in new if len({group for group, _ in batch.messages}) > 1)
    assert mixed > 0  # batches carry several groups' messages
    # A cut link loses every group's messages on it.
    for node_id in sim.node_ids:
        sim._tick_node(node_id)
    for node_id in sim.node_ids:
        if node_id not in sim.down:
            sim._round(node_id, faults=False)
    link = next(iter(sim.outbox))
    sim.cut.add(link)
    before = len(sim.in_flight)
    sim._flush_links()
    assert all((batch.frm, batch.to) != link for batch in sim.in_flight[before:])


# -- the checker bites ---------------------------------------------------------------------------
def _first_failure(broken: str, budget: int, check_sends: bool) -> MultiSeedResult | None:
    for seed in range(budget):
        result = MultiSimulation(seed, DEFAULT_STEPS, broken=broken, check_sends=check_sends).run()
        if result.violation is not None:
            return result
    return None


def test_acks_before_the_fsync_are_caught() -> None:
    result = _first_failure("early-acks", 5, check_sends=True)
    assert result is not None and result.violation == "durable-before-send", result


def test_acks_before_the_fsync_lose_committed_entries() -> None:
    """Without the send check, the consequence is caught: a crash drops the writes that early
    acknowledgements vouched for, and a committed entry is missing from a later leader (seed
    14 is the first; the budget leaves room)."""
    result = _first_failure("early-acks", 60, check_sends=False)
    assert result is not None and result.violation in SAFETY, result


def test_a_group_left_out_of_the_fsync_is_caught() -> None:
    result = _first_failure("unsynced-group", 5, check_sends=False)
    assert result is not None
    assert result.violation in {"durable-log", *SAFETY}, result
    assert result.group == DEFAULT_GROUPS - 1


# -- the command line --------------------------------------------------------------------------
def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_json() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "quorumlog.client.cli", "sim", "--groups", "4", "--seeds", "4",
         "--steps", "300", "--seed", "10", "--json", "--jobs", "1"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout)
    assert summary["seeds"] == 4 and summary["first_seed"] == 10
    assert summary["steps"] == 300 and summary["groups"] == 4
    assert summary["violations"] == 0 and summary["liveness_failures"] == 0
    assert summary["moves_done"] == 4
    assert summary["faults"]["syncs"] > 0
    assert "wall_seconds" in summary


def test_cli_text_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_parse(["--groups", "3", "--seeds", "2", "--steps", "200", "--jobs", "1"])) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 seeds x 200 steps x 3 groups: 0 violations, 0 liveness failures")
    assert "replica moves" in out and "fsyncs" in out


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
    code = run(_parse(["--groups", "4", "--seed", "3", "--steps", "400", "--json"]))
    captured = capsys.readouterr()
    assert code == 1
    assert "seed 3: violation state-machine-safety in group" in captured.err
    assert "replay: quorumlog sim --groups 4 --seed 3 --steps 400" in captured.err
    summary = json.loads(captured.out)
    assert summary["violations"] == 1
    assert summary["failures"][0]["replay"] == "quorumlog sim --groups 4 --seed 3 --steps 400"


def test_cli_reports_a_liveness_failure(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(_parse(["--groups", "2", "--seed", "5", "--steps", "0", "--heal-ticks", "1"]))
    captured = capsys.readouterr()
    assert code == 1
    assert "seed 5: liveness failure" in captured.err
    assert "replay: quorumlog sim --groups 2 --seed 5 --steps 0 --heal-ticks 1" in captured.err
