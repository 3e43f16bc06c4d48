"""Request-response over sessions: the requester's ``send_request`` appends a request whose
envelope names its reply session and carries a message id, and waits for the reply whose
correlation id is that id; the responder consumes requests (peek-lock), answers each with
``reply`` (to the request's reply_to session, correlated by its message id) and completes it.

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
        try:
            batch = await client.consumer.receive(requests, group, max_messages=10, wait_ms=1000)
        except errors.NotFound:  # no request yet: the session starts with the first
            await asyncio.sleep(0.05)
            continue
        for message in batch.messages:
            x = json.loads(message.data)["x"]
            await client.reply(message, json.dumps({"result": x**2}))
        await client.consumer.complete(batch.messages)
        answered += len(batch.messages)


async def main() -> None:
    requests, group = f"rr-{run_id()}-requests", "rr"
    async with AsyncClient(cluster_from_args(__doc__ or "")) as client:
        await client.consumer.create_group(group)
        serving = asyncio.create_task(responder(client, requests, group))
        answers = await asyncio.gather(*(
            client.send_request(requests, json.dumps({"x": x}), timeout=30)
            for x in range(REQUESTS)
        ))
        for x, answer in enumerate(answers):
            print(f"request x={x} -> {json.loads(answer.data)['result']}")
        await serving
        await client.delete_session(client.reply_session)  # the private reply session
    print(f"request-response: {REQUESTS} answers matched by correlation id")


if __name__ == "__main__":
    asyncio.run(main())
