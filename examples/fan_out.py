"""Fan-out to several groups: one session of order events is processed independently by
three consumer groups (billing, shipping, audit), each with its own session processor, cursor
and backlog; a slow or failing group never holds the others back.

    python examples/fan_out.py [--cluster ADDRS]
"""

from __future__ import annotations

import asyncio
from collections import Counter

from _common import cluster_from_args, run_id

from quorumlog.client import AsyncClient
from quorumlog.client.consumer import ReceivedMessage
from quorumlog.client.processor import AsyncSessionProcessor, SessionContext

EVENTS = ("created", "paid", "packed", "shipped", "delivered")


async def main() -> None:
    run = run_id()
    session = f"fanout-{run}-order-42"
    handled: Counter[str] = Counter()
    async with AsyncClient(cluster_from_args(__doc__ or "")) as client:
        await client.append(session, *EVENTS)
        processors = []
        for name in ("billing", "shipping", "audit"):
            group = f"fanout-{run}-{name}"
            await client.consumer.create_group(group)

            async def handle(
                messages: list[ReceivedMessage], context: SessionContext, name: str = name
            ) -> None:
                handled[name] += len(messages)

            processors.append(AsyncSessionProcessor(
                client, group, handle, prefix=f"fanout-{run}-", max_sessions=1
            ))
        for processor in processors:
            processor.start()
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while sum(handled.values()) < 3 * len(EVENTS) and loop.time() < end:
            await asyncio.sleep(0.05)  # polling until every group is done, with a deadline
        for processor in processors:
            await processor.stop()
    assert handled == Counter({"billing": 5, "shipping": 5, "audit": 5}), handled
    print(f"fan-out: each of 3 groups processed all {len(EVENTS)} events: {dict(handled)}")


if __name__ == "__main__":
    asyncio.run(main())
