"""Deadline-bounded waiting for test conditions (never a bare sleep for an event)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)  # polling interval of a deadline-bounded wait


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float, what: str,
    interval: float = 0.05,
) -> None:
    """``wait_until`` inside an event loop: poll ``condition`` (plain or a coroutine function)
    until it holds, yielding to other tasks in between; fail with ``what`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)  # polling interval of a deadline-bounded wait
