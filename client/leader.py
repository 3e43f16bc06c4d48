"""Leader tracking and the retry loop every SDK call goes through.

Owns: one :class:`~quorumlog.client._grpc.NodeConnection` per known address, the remembered
leader, following ``quorumlog-leader-addr`` hints, and retrying transient failures with
backoff until an absolute deadline. Must never build requests or interpret responses: the
caller passes a function that performs one attempt against one node, so a retried append
resends the very same request (same producer id and sequence) and dedup makes it exactly-once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from quorumlog.client import errors
from quorumlog.client._grpc import NodeConnection
from quorumlog.client.retry import RetryPolicy, is_retryable

T = TypeVar("T")

Attempt = Callable[[NodeConnection, float], Awaitable[T]]


def parse_addresses(addresses: str | Sequence[str]) -> list[str]:
    """``"h1:p1,h2:p2"`` or a list of ``host:port`` -> a de-duplicated list, order kept."""
    items = addresses.split(",") if isinstance(addresses, str) else list(addresses)
    result: list[str] = []
    for raw in items:
        address = raw.strip()
        if not address:
            continue
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise errors.InvalidArgument(f"invalid node address {address!r}: expected HOST:PORT")
        if address not in result:
            result.append(address)
    if not result:
        raise errors.InvalidArgument("no node addresses given")
    return result


class Router:
    """Routes calls to the leader, learning it from answers; retries within a deadline."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        policy: RetryPolicy,
        rng: random.Random,
        connect: Callable[[str], NodeConnection] = NodeConnection,
    ) -> None:
        self.addresses: list[str] = list(addresses)
        self.leader: str | None = None
        self.policy = policy
        self.rng = rng
        self._connect = connect
        self._connections: dict[str, NodeConnection] = {}
        self._cursor = 0
        self._closed = False

    def connection(self, address: str) -> NodeConnection:
        if self._closed:
            raise errors.ClientClosed("the client is closed")
        connection = self._connections.get(address)
        if connection is None:
            connection = self._connect(address)
            self._connections[address] = connection
        return connection

    def first_target(self) -> str:
        """The remembered leader, else the next address round-robin."""
        if self.leader is not None:
            return self.leader
        address = self.addresses[self._cursor % len(self.addresses)]
        return address

    def next_target(self, failed: str, error: errors.QuorumLogError) -> tuple[str, bool]:
        """Where to try after ``failed`` answered ``error``; True if it is a fresh leader hint."""
        hint = error.leader_address
        if isinstance(error, errors.Unavailable) and hint and hint != failed:
            if hint not in self.addresses:
                self.addresses.append(hint)
            fresh = self.leader != hint
            self.leader = hint
            return hint, fresh
        if self.leader == failed:
            self.leader = None
        index = self.addresses.index(failed) if failed in self.addresses else self._cursor
        self._cursor = (index + 1) % len(self.addresses)
        return self.addresses[self._cursor], False

    async def call(
        self,
        attempt: Attempt[T],
        *,
        end: float,
        target: str | None = None,
        follow_leader: bool = True,
        pinned: bool = False,
        what: str = "call",
    ) -> T:
        """Run ``attempt`` until it succeeds, fails permanently, or ``end`` (loop time) passes.

        ``target`` pins the first try to one node; ``follow_leader`` False means success on
        any node does not mark it as leader (follower reads). ``pinned`` retries ``target``
        only and never follows hints (status of one node).
        """
        loop = asyncio.get_running_loop()
        address = target or self.first_target()
        retries = 0
        hinted: set[str] = set()  # leader hints followed at once during this call
        tried: set[str] = set()  # nodes that failed since the last backoff
        last_error: errors.QuorumLogError | None = None
        while True:
            remaining = end - loop.time()
            definite = isinstance(last_error, errors.Unavailable)
            if remaining <= 0 or (definite and remaining < self.policy.min_retry_budget):
                raise self.gave_up(what, last_error)
            try:
                budget = self.policy.attempt_budget(remaining)
                result = await attempt(self.connection(address), budget)
            except errors.QuorumLogError as error:
                if not is_retryable(error):
                    raise
                last_error = error
                tried.add(address)
                if not pinned:
                    address, fresh_hint = self.next_target(address, error)
                    # A hint to a leader not yet followed in this call is followed at once
                    # (once per address, so a follower that still names a dead leader costs
                    # nothing more); otherwise every node is tried once before backing off,
                    # so after a leader change one dead node does not delay finding the new one.
                    if fresh_hint and address not in hinted:
                        hinted.add(address)
                        continue
                    untried = [node for node in self.addresses if node not in tried]
                    if untried:
                        address = address if address in untried else untried[0]
                        continue
                tried.clear()
                delay = min(self.policy.backoff(retries, self.rng), max(0.0, end - loop.time()))
                retries += 1
                await asyncio.sleep(delay)
                continue
            if follow_leader and not pinned:
                self.leader = address
            return result

    def gave_up(
        self, what: str, last_error: errors.QuorumLogError | None
    ) -> errors.QuorumLogError:
        nodes = ",".join(self.addresses)
        if last_error is None:
            return errors.DeadlineExceeded(f"{what}: deadline passed before any attempt")
        detail = f"{last_error.code}: {last_error.message}"
        if isinstance(last_error, errors.Unavailable):
            return errors.Unavailable(
                f"{what}: no node of {nodes} could serve it in time (last error {detail})",
                address=last_error.address,
                metadata=last_error.metadata,
            )
        return errors.DeadlineExceeded(
            f"{what}: deadline exceeded; outcome unknown (last error {detail})",
            address=last_error.address,
            metadata=last_error.metadata,
        )

    async def close(self) -> None:
        self._closed = True
        connections = list(self._connections.values())
        self._connections.clear()
        for connection in connections:
            await connection.close()
