"""Request-response over sessions: a requester appends requests carrying a reply-to session
and a correlation id; a responder consumes them (peek-lock) and appends each answer to the
reply-to session; the requester consumes its reply session and matches answers by id.

    python examples/request_response.py [--cluster ADDRS]
"""

from __future__ import annotations

import asyncio
import json

from _common import cluster_from_args, run_id

from quorumlog.client import AsyncClient, errors

REQUESTS = 5


async def responder(client: AsyncClient, requests: str, group: str) -> None:
    answered = 0
    while answered < REQUESTS:
        batch = await client.consumer.receive(requests, group, max_messages=10, wait_ms=1000)
        for message in batch.messages:
            request = json.loads(message.data)
            answer = {"correlation_id": request["correlation_id"], "result": request["x"] ** 2}
            await client.append(request["reply_to"], json.dumps(answer))
        await client.consumer.complete(batch.messages)
        answered += len(batch.messages)


async def main() -> None:
    run = run_id()
    requests, replies, group = f"rr-{run}-requests", f"rr-{run}-replies", "rr"
    async with AsyncClient(cluster_from_args(__doc__ or "")) as client:
        await client.consumer.create_group(group)
        pending = {}
        for x in range(REQUESTS):
            correlation_id = f"{run}-{x}"
            pending[correlation_id] = x
            await client.append(requests, json.dumps(
                {"correlation_id": correlation_id, "reply_to": replies, "x": x}
            ))
        serving = asyncio.create_task(responder(client, requests, group))
        while pending:
            try:
                batch = await client.consumer.receive(
                    replies, group, max_messages=10, wait_ms=1000
                )
            except errors.NotFound:  # no reply yet: the reply session starts with the first
                await asyncio.sleep(0.1)
                continue
            for message in batch.messages:
                answer = json.loads(message.data)
                x = pending.pop(answer["correlation_id"])
                print(f"request x={x} -> {answer['result']}")
            await client.consumer.complete(batch.messages)
        await serving
    print(f"request-response: {REQUESTS} answers matched by correlation id")


if __name__ == "__main__":
    asyncio.run(main())
