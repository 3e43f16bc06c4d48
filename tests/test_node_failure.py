"""A node process stops when its Raft loop dies (a failed write is fatal, never retried), and
only then: ``node.process.server.run_until_stopped`` decides between the two endings; how
``serve`` then treats the failure (fatal, a full disk, damaged data) is tested end to end in
``test_power_loss``, ``test_disk_full`` and ``test_bit_rot``, and here for its sorting."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from quorumlog.node.common.config import NodeConfig
from quorumlog.node.process.repair import MAX_REPAIRS, can_repair, set_aside
from quorumlog.node.process.server import run_until_stopped
from quorumlog.node.storage.disk_space import is_out_of_space
from quorumlog.node.storage.raft_store import StorageCorrupted
from quorumlog.node.storage.scrub import is_corruption
from quorumlog.raft.errors import Unavailable


def test_a_dead_raft_loop_ends_the_wait_with_its_error() -> None:
    async def main() -> BaseException | None:
        async def failure() -> BaseException:
            return OSError(5, "Input/output error")

        return await run_until_stopped(asyncio.Event(), failure())

    error = asyncio.run(main())
    assert isinstance(error, OSError) and error.errno == 5


@pytest.mark.parametrize(("error", "full", "damaged"), [
    (OSError(5, "Input/output error"), False, False),
    (Exception("IO error: While fsync: a.log: Input/output error"), False, False),
    (OSError(28, "No space left on device"), True, False),
    (Exception("IO error: No space left on device: While appending to file"), True, False),
    (StorageCorrupted("entry 7: checksum mismatch"), False, True),
    (Exception("Corruption: block checksum mismatch: stored = 1, computed = 2"), False, True),
    (Unavailable("index 1365 beyond last 230"), False, True),
])
def test_failures_are_sorted_into_fatal_full_disk_and_damaged_data(
    error: BaseException, full: bool, damaged: bool
) -> None:
    assert is_out_of_space(error) is full
    assert is_corruption(error) is damaged


def test_a_node_repairs_only_when_a_peer_holds_a_copy(tmp_path: Path) -> None:
    alone = NodeConfig("n1", "127.0.0.1:1", "127.0.0.1:2", {"n1": "127.0.0.1:2"}, tmp_path)
    assert can_repair(alone, 0) == "no peer holds another copy (a cluster of one)"
    three = NodeConfig("n1", "127.0.0.1:1", "127.0.0.1:2", {
        "n1": "127.0.0.1:2", "n2": "127.0.0.1:3", "n3": "127.0.0.1:4"}, tmp_path)
    assert can_repair(three, 0) is None
    assert can_repair(three, MAX_REPAIRS) is not None
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "CURRENT").write_text("x")
    moved = set_aside(tmp_path)
    assert not (tmp_path / "db").exists() and (moved / "CURRENT").read_text() == "x"


def test_a_requested_stop_is_not_a_failure() -> None:
    async def main() -> BaseException | None:
        stop = asyncio.Event()
        never: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        async def failure() -> BaseException:
            return await never

        asyncio.get_running_loop().call_later(0.01, stop.set)
        return await run_until_stopped(stop, failure())

    assert asyncio.run(main()) is None
