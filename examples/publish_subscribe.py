"""Publish-subscribe: a publisher appends events to a topic session; every subscriber has its
own durable consumer group, so each receives every event, in order, at its own pace (and a
subscriber that restarts continues where its group's cursor stands).

    python examples/publish_subscribe.py [--cluster ADDRS]
"""

from __future__ import annotations

import asyncio

from _common import cluster_from_args, run_id

from quorumlog.client import AsyncClient

EVENTS = 10


async def subscriber(client: AsyncClient, topic: str, group: str) -> list[bytes]:
    await client.consumer.create_group(group)
    seen: list[bytes] = []
    while len(seen) < EVENTS:
        batch = await client.consumer.receive(topic, group, max_messages=4, wait_ms=1000)
        seen.extend(message.data for message in batch.messages)
        await client.consumer.complete(batch.messages)
    return seen


async def main() -> None:
    run = run_id()
    topic = f"pubsub-{run}-prices"
    async with AsyncClient(cluster_from_args(__doc__ or "")) as client:
        await client.append(topic, "opening")  # the topic exists once it has a message
        subscribers = [
            asyncio.create_task(subscriber(client, topic, f"pubsub-{run}-{name}"))
            for name in ("dashboard", "alerts")
        ]
        for price in range(EVENTS - 1):
            await client.append(topic, f"price {100 + price}")
        results = await asyncio.gather(*subscribers)
    assert results[0] == results[1]
    print(f"publish-subscribe: 2 subscribers each received all {EVENTS} events in order")


if __name__ == "__main__":
    asyncio.run(main())
