"""A node process stops when its Raft loop dies (a failed write is fatal, never retried), and
only then: ``node.process.server.run_until_stopped`` decides between the two endings."""

from __future__ import annotations

import asyncio
import logging

import pytest

from quorumlog.node.process.server import run_until_stopped


def test_a_dead_raft_loop_ends_the_wait_with_its_error_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> BaseException | None:
        async def failure() -> BaseException:
            return OSError(5, "Input/output error")

        return await run_until_stopped(asyncio.Event(), failure())

    with caplog.at_level(logging.CRITICAL, logger="quorumlog.server"):
        error = asyncio.run(main())
    assert isinstance(error, OSError) and error.errno == 5
    assert any("raft loop failed" in record.getMessage() for record in caplog.records)


def test_a_requested_stop_is_not_a_failure() -> None:
    async def main() -> BaseException | None:
        stop = asyncio.Event()
        never: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        async def failure() -> BaseException:
            return await never

        asyncio.get_running_loop().call_later(0.01, stop.set)
        return await run_until_stopped(stop, failure())

    assert asyncio.run(main()) is None
