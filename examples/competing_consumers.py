"""Competing consumers over many sessions: a pool of workers (session processors with their
own clients) shares one consumer group; the cluster hands each session to one owner at a time
(a lease with a fencing token), so every session is processed in order and never by two
workers at once, while the sessions are spread over the pool.

    python examples/competing_consumers.py [--cluster ADDRS]
"""

from __future__ import annotations

import asyncio
from collections import Counter

from _common import cluster_from_args, run_id

from quorumlog.client import AsyncClient
from quorumlog.client.consumer import ReceivedMessage
from quorumlog.client.processor import AsyncSessionProcessor, SessionContext

SESSIONS = 12
PER_SESSION = 10
WORKERS = 3


async def main() -> None:
    run = run_id()
    prefix = f"pool-{run}-"
    addresses = cluster_from_args(__doc__ or "")
    active: set[str] = set()
    by_worker: Counter[str] = Counter()
    order: dict[str, list[int]] = {}
    async with AsyncClient(addresses) as client:
        group = f"pool-{run}"
        await client.consumer.create_group(group)
        for i in range(SESSIONS):
            await client.append(f"{prefix}{i:02d}", *[f"job {j}" for j in range(PER_SESSION)])
        workers = []
        for w in range(WORKERS):
            name = f"worker-{w}"

            async def handle(
                messages: list[ReceivedMessage], context: SessionContext, name: str = name
            ) -> None:
                assert context.session not in active, "two workers on one session"
                active.add(context.session)
                await asyncio.sleep(0.01)  # the work
                order.setdefault(context.session, []).extend(m.offset for m in messages)
                by_worker[name] += len(messages)
                active.discard(context.session)

            worker_client = AsyncClient(addresses)
            workers.append((worker_client, AsyncSessionProcessor(
                worker_client, group, handle, name=name, prefix=prefix, max_sessions=2,
                max_messages=4,
            )))
        for _, processor in workers:
            processor.start()
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        while sum(by_worker.values()) < SESSIONS * PER_SESSION and loop.time() < end:
            await asyncio.sleep(0.05)  # polling until the pool is done, with a deadline
        for worker_client, processor in workers:
            await processor.stop()
            await worker_client.close()
    assert all(offsets == list(range(PER_SESSION)) for offsets in order.values())
    assert sum(by_worker.values()) == SESSIONS * PER_SESSION
    print(f"competing consumers: {SESSIONS} sessions x {PER_SESSION} jobs over {WORKERS} "
          f"workers {dict(sorted(by_worker.items()))}, in order, one owner per session")


if __name__ == "__main__":
    asyncio.run(main())
