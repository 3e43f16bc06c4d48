"""``quorumlog bench-consume``: end-to-end consume throughput with peek-lock and complete.

Usage: ``quorumlog bench-consume [--cluster ADDRS | --local N] [--sessions S] [--messages M]
[--batch B] [--size BYTES] [--json] [--tls-dir DIR]``.

Owns: filling S sessions (``bench-consume-<run>-<i>``) with M messages of SIZE bytes each,
then consuming them all with ONE consumer group: one worker per session accepts the session
(a lease and fencing token), receives up to B messages per call (peek-lock) and completes
them in one settle call, until the session is drained; the figure is messages completed per
second over the consume phase (fill excluded). With ``--local N`` (the default, 3 nodes,
fsync on) it starts the nodes on free loopback ports and stops them afterwards (the same
launcher as ``quorumlog bench``). Must never: leave a node behind, or run without a bound
(every call has a deadline; the whole run stops after ``--timeout``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid
from typing import Any

from quorumlog.client.cli import CliError
from quorumlog.client.cli import common as cli_common
from quorumlog.client.cli.bench import local_cluster
from quorumlog.client.sdk import AsyncClient
from quorumlog.client.tls import ClientSecurity

FILL_BATCH = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", metavar="ADDRS", default=None,
                        help="node client addresses of a running cluster (default: --local 3)")
    parser.add_argument("--local", metavar="N", default=None,
                        help="start N local nodes for the run (default 3)")
    parser.add_argument("--sessions", metavar="S", default=None, help="sessions (default 16)")
    parser.add_argument("--messages", metavar="M", default=None,
                        help="messages per session (default 2000)")
    parser.add_argument("--batch", metavar="B", default=None,
                        help="messages per receive and per settle (default 250)")
    parser.add_argument("--size", metavar="BYTES", default=None,
                        help="bytes per message (default 100)")
    parser.add_argument("--timeout", metavar="SECONDS", default=None,
                        help="give up after this long (default 300)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    cli_common.add_security_arguments(parser)  # with --local: the nodes use --tls-dir too


def run(args: argparse.Namespace) -> int:
    sessions = cli_common.integer("--sessions", args.sessions, minimum=1, default=16)
    messages = cli_common.integer("--messages", args.messages, minimum=1, default=2000)
    batch = cli_common.integer("--batch", args.batch, minimum=1, default=250)
    size = cli_common.integer("--size", args.size, minimum=1, default=100)
    timeout = cli_common.integer("--timeout", args.timeout, minimum=1, default=300)
    if args.cluster and args.local:
        raise CliError("give --cluster or --local, not both")
    security = cli_common.security_of(args)
    with contextlib.ExitStack() as stack:
        if args.cluster:
            addresses = args.cluster.split(",")
        else:
            nodes = cli_common.integer("--local", args.local, minimum=1, default=3)
            tls = ["--tls-dir", str(args.tls_dir)] if args.tls_dir else []
            local, _ = stack.enter_context(local_cluster(nodes, None, tls, ready_timeout=60.0,
                                                         security=security))
            addresses = local.client_addrs
        try:
            report = asyncio.run(asyncio.wait_for(
                consume(addresses, sessions, messages, batch, size, security=security), timeout
            ))
        except TimeoutError:
            raise CliError(f"bench-consume did not finish within {timeout} s", 1) from None
    report["nodes"] = len(addresses)
    if args.json:
        cli_common.print_json(report)
    else:
        cli_common.print_line(
            f"consume: {report['messages']} messages ({report['sessions']} sessions, one group, "
            f"peek-lock + complete, {report['batch']} per call) in {report['seconds']:.2f} s = "
            f"{report['messages_per_s']:.0f} messages/s"
        )
    return 0


async def consume(
    addresses: list[str], sessions: int, messages: int, batch: int, size: int,
    *, security: ClientSecurity | None = None,
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    names = [f"bench-consume-{run_id}-{i}" for i in range(sessions)]
    group = f"bench-{run_id}"
    payload = b"x" * size
    async with AsyncClient(addresses, deadline=60.0, security=security) as client:
        await client.consumer.create_group(group, lock_ms=60_000)

        async def fill(name: str) -> None:
            left = messages
            while left:
                count = min(FILL_BATCH, left)
                await client.append(name, *([payload] * count))
                left -= count

        await asyncio.gather(*(fill(name) for name in names))
        calls = [0, 0]  # receives, settles

        async def worker(name: str) -> int:
            lease = await client.consumer.accept(name, group, f"bench-{name}")
            done = 0
            while True:
                received = await client.consumer.receive(
                    name, group, max_messages=batch, token=lease.token
                )
                calls[0] += 1
                if not received.messages:
                    await client.consumer.release(lease)
                    return done
                result = await client.consumer.complete(received.messages)
                calls[1] += 1
                done += result.completed

        started = time.perf_counter()
        done = sum(await asyncio.gather(*(worker(name) for name in names)))
        seconds = time.perf_counter() - started
    if done != sessions * messages:
        raise CliError(f"completed {done} of {sessions * messages} messages", 1)
    return {
        "messages": done, "sessions": sessions, "batch": batch, "size": size,
        "seconds": round(seconds, 3), "messages_per_s": round(done / seconds, 1),
        "receives": calls[0], "settles": calls[1],
    }
