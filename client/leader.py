"""Leader tracking and the retry loop every SDK call goes through.

Owns: one :class:`~quorumlog.client._grpc.NodeConnection` per known address, the shard map
(learned once from any node's ``ClusterStatus``, refreshed in the background when routing
fails on a sharded cluster), one remembered leader per routing key (a shard, or
:data:`~quorumlog.client.shards.META` for cluster-wide calls and for every call of a one-shard
cluster), following ``quorumlog-leader-addr`` hints per key, abandoning a try on a node that
went silent (a status probe it does not answer), and retrying transient failures with backoff
until an absolute deadline. Must never build requests or interpret responses: the caller
passes a function that performs one attempt against one node, so a retried append resends the
very same request (same producer id and sequence) and dedup makes it exactly-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from quorumlog.client import errors
from quorumlog.client._grpc import NodeConnection
from quorumlog.client.retry import RetryPolicy, is_retryable
from quorumlog.client.shards import META, ShardMap

T = TypeVar("T")

Attempt = Callable[[NodeConnection, float], Awaitable[T]]

#: one try at learning the shard map from one node
LEARN_TIMEOUT = 1.0
#: after every node failed to say the shard map, routing goes on without it this long
LEARN_AGAIN_AFTER = 1.0
#: a sharded map is refreshed at most this often (on leader hints and routing failures)
REFRESH_INTERVAL = 0.5
#: a node abandoned as silent is not followed by hints for this long (unless a probe of it
#: answers first), so a follower still naming a frozen leader costs nothing more
SUSPECT_FOR = 1.0
#: how often waiting attempts are looked at for a probe (a silent node is given up within
#: probe_after + WATCH_TICK + probe_timeout)
WATCH_TICK = 0.1


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
    """Routes calls to the leader of their routing key, learning leaders from answers and
    the shard map from ``ClusterStatus``; retries within a deadline."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        policy: RetryPolicy,
        rng: random.Random,
        connect: Callable[[str], NodeConnection] = NodeConnection,
    ) -> None:
        self.addresses: list[str] = list(addresses)
        self.policy = policy
        self.rng = rng
        #: the cluster's shards as last learned (one shard until then)
        self.shards = ShardMap()
        self._leaders: dict[int, str] = {}
        self._connect = connect
        self._connections: dict[str, NodeConnection] = {}
        self._cursor = 0
        self._closed = False
        self._learned = False
        self._learning: asyncio.Task[None] | None = None
        self._learn_again_at = 0.0  # loop time
        self._probes: dict[str, asyncio.Task[bool]] = {}
        self._suspects: dict[str, float] = {}  # silent node -> loop time it is trusted again
        self._watches: set[_Watch] = set()  # attempts waiting for an answer
        self._alive_at: dict[str, float] = {}  # node -> loop time of its latest answer
        self._ticker: asyncio.TimerHandle | None = None

    # -- leaders per routing key -------------------------------------------------------------

    @property
    def leader(self) -> str | None:
        """The leader of cluster-wide calls (of every call when the cluster has one shard)."""
        return self._leaders.get(META)

    @leader.setter
    def leader(self, address: str | None) -> None:
        self.set_leader(META, address)

    def leader_of(self, key: int) -> str | None:
        return self._leaders.get(key)

    def set_leader(self, key: int, address: str | None) -> None:
        if address is None:
            self._leaders.pop(key, None)
            return
        if address not in self.addresses:
            self.addresses.append(address)
        self._leaders[key] = address

    @property
    def learned(self) -> bool:
        """Whether a node has told the shard map (until then: one shard assumed)."""
        return self._learned

    def key_of(self, session: str) -> int:
        """``session``'s routing key under the current map (:data:`META` with one shard)."""
        return self.shards.key_of(session)

    def connection(self, address: str) -> NodeConnection:
        if self._closed:
            raise errors.ClientClosed("the client is closed")
        connection = self._connections.get(address)
        if connection is None:
            connection = self._connect(address)
            self._connections[address] = connection
        return connection

    def _candidates(self, key: int) -> list[str]:
        """Nodes to try for ``key``: the shard's replicas first (when known), then the rest."""
        replicas = self.shards.replicas.get(key, ()) if key != META else ()
        if not replicas:
            return self.addresses
        return list(replicas) + [a for a in self.addresses if a not in replicas]

    def first_target(self, key: int = META) -> str:
        """The remembered leader of ``key``, else the next candidate round-robin."""
        leader = self._leaders.get(key)
        if leader is not None:
            return leader
        candidates = self._candidates(key)
        return candidates[self._cursor % len(candidates)]

    def next_target(
        self, failed: str, error: errors.QuorumLogError, key: int = META
    ) -> tuple[str, bool]:
        """Where to try after ``failed`` answered ``error``; True if it is a fresh leader hint."""
        hint = error.leader_address
        if self.shards.sharded or not self._learned:
            self.refresh_soon()
        usable = hint and hint != failed and not self._suspected(hint)
        if isinstance(error, errors.Unavailable) and hint and usable:
            fresh = self._leaders.get(key) != hint
            self.set_leader(key, hint)
            return hint, fresh
        if self._leaders.get(key) == failed:
            del self._leaders[key]
        candidates = self._candidates(key)
        index = candidates.index(failed) if failed in candidates else self._cursor
        self._cursor = (index + 1) % len(candidates)
        return candidates[self._cursor], False

    # -- the shard map -----------------------------------------------------------------------

    async def learn(self, end: float) -> None:
        """Learn the shard map before the first routed call (later calls return at once).

        Waits at most until ``end``; when no node says, routing goes on as with one shard
        (hints still lead to each shard's leader) and the map is asked for again later.
        """
        if self._learned:
            return
        loop = asyncio.get_running_loop()
        task = self._learning
        if task is None or task.done():
            if loop.time() < self._learn_again_at or self._closed:
                return
            task = self._learning = loop.create_task(self._fetch_map(), name="quorumlog-shards")
        remaining = end - loop.time()
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), remaining)

    def refresh_soon(self) -> None:
        """Ask for the map again in the background (sharded or not yet learned; rate-limited)."""
        if self._closed or (self._learned and not self.shards.sharded):
            return
        if self._learning is not None and not self._learning.done():
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._learn_again_at:
            return
        self._learn_again_at = loop.time() + REFRESH_INTERVAL
        self._learning = loop.create_task(self._fetch_map(), name="quorumlog-shards")

    async def _fetch_map(self) -> None:
        loop = asyncio.get_running_loop()
        meta = self._leaders.get(META)
        order = [meta] if meta is not None else []
        order += [a for a in self.addresses if a != meta and not self._suspected(a)]
        for address in order:
            try:
                status = await self.connection(address).cluster_status(LEARN_TIMEOUT)
            except errors.ClientClosed:
                return
            except errors.QuorumLogError:
                continue
            self._apply(ShardMap.from_status(status))
            return
        self._learn_again_at = loop.time() + LEARN_AGAIN_AFTER

    def _apply(self, learned: ShardMap) -> None:
        """Take a node's map: leaders it names fill only keys with no leader known here
        (an answer's hint is fresher than a status); one shard changes nothing (as before)."""
        first = not self._learned
        self._learned = True
        self.shards = learned
        if not learned.sharded:
            return
        for shard, leader in learned.leaders.items():
            if first or shard not in self._leaders:
                self.set_leader(shard, leader)
        if learned.meta_leader and (first or META not in self._leaders):
            self.set_leader(META, learned.meta_leader)

    # -- silent nodes ------------------------------------------------------------------------

    def _suspected(self, address: str) -> bool:
        until = self._suspects.get(address)
        if until is None:
            return False
        if asyncio.get_running_loop().time() >= until:
            del self._suspects[address]
            return False
        self._probe(address)  # an answer clears the suspicion before its time
        return True

    def _probe(self, address: str) -> asyncio.Task[bool]:
        """Whether ``address`` answers a status call in time (one probe per node at once)."""
        task = self._probes.get(address)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(
                self._answers(address), name=f"quorumlog-probe-{address}"
            )
            self._probes[address] = task
        return task

    async def _answers(self, address: str) -> bool:
        try:
            await self.connection(address).cluster_status(self.policy.probe_timeout)
        except (errors.Unavailable, errors.DeadlineExceeded, errors.ClientClosed):
            return False
        except errors.QuorumLogError:
            pass  # refused, but it answered
        self._suspects.pop(address, None)
        self._alive_at[address] = asyncio.get_running_loop().time()
        return True

    async def _try(self, attempt: Attempt[T], address: str, budget: float) -> T:
        """One attempt, given up when its node goes silent (see :meth:`watched`)."""
        connection = self.connection(address)
        probe_after = self.policy.probe_after
        if probe_after is None or budget <= probe_after:
            return await attempt(connection, budget)
        return await self.watched(address, attempt(connection, budget))

    async def watched(self, address: str, waiting: Awaitable[T]) -> T:
        """``waiting`` (a call on ``address``), abandoned with DeadlineExceeded (outcome
        unknown) when ``address`` goes silent: after ``probe_after`` without an answer the
        node is asked for its status and does not answer that within ``probe_timeout``.
        Anything ``address`` answered meanwhile (a probe, another call) counts as alive, so a
        node is probed at most once per ``probe_after`` however many calls wait on it."""
        if self.policy.probe_after is None:
            return await waiting
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as timeout:
                watch = _Watch(address, loop.time(), timeout)
                self._watches.add(watch)
                if self._ticker is None:
                    self._ticker = loop.call_later(WATCH_TICK, self._tick)
                try:
                    result = await waiting
                finally:
                    watch.done = True
                    self._watches.discard(watch)
                self._alive_at[address] = loop.time()
                return result
        except TimeoutError:
            self._suspects[address] = loop.time() + SUSPECT_FOR
            raise errors.DeadlineExceeded(
                f"{address} went silent (no answer to a status probe within "
                f"{self.policy.probe_timeout:g} s); outcome unknown",
                address=address,
            ) from None

    def _tick(self) -> None:
        """Every :data:`WATCH_TICK` while attempts wait: probe the nodes of those waiting
        longer than ``probe_after`` (one shared timer, not one per attempt: cheaper)."""
        self._ticker = None
        if not self._watches or self._closed:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        probe_after = self.policy.probe_after or 0.0
        for watch in list(self._watches):
            alive_at = self._alive_at.get(watch.address, 0.0)
            watch.since = max(watch.since, alive_at)
            if watch.probing or now - watch.since < probe_after:
                continue
            watch.probing = True
            watch.timeout.reschedule(now + self.policy.probe_timeout)
            self._probe(watch.address).add_done_callback(functools.partial(self._probed, watch))
        self._ticker = loop.call_later(WATCH_TICK, self._tick)

    @staticmethod
    def _probed(watch: _Watch, task: asyncio.Task[bool]) -> None:
        if watch.done or watch.timeout.expired():
            return
        watch.probing = False
        now = asyncio.get_running_loop().time()
        if not task.cancelled() and task.exception() is None and task.result():
            watch.timeout.reschedule(None)  # alive: wait on, probe again after probe_after
            watch.since = now
        else:
            watch.timeout.reschedule(now)  # silent: expire the attempt now

    # -- the retry loop ----------------------------------------------------------------------

    async def call(
        self,
        attempt: Attempt[T],
        *,
        end: float,
        key: int = META,
        target: str | None = None,
        follow_leader: bool = True,
        pinned: bool = False,
        what: str = "call",
    ) -> T:
        """Run ``attempt`` until it succeeds, fails permanently, or ``end`` (loop time) passes.

        ``key`` is the routing key (:meth:`key_of` a session; :data:`META` for cluster-wide
        calls). ``target`` pins the first try to one node; ``follow_leader`` False means
        success on any node does not mark it as leader (follower reads). ``pinned`` retries
        ``target`` only and never follows hints (status of one node).
        """
        loop = asyncio.get_running_loop()
        address = target or self.first_target(key)
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
                result = await self._try(attempt, address, budget)
            except errors.QuorumLogError as error:
                if not is_retryable(error):
                    raise
                last_error = error
                tried.add(address)
                if not pinned:
                    address, fresh_hint = self.next_target(address, error, key)
                    # A hint to a leader not yet followed in this call is followed at once
                    # (once per address, so a follower that still names a dead leader costs
                    # nothing more); otherwise every node is tried once before backing off,
                    # so after a leader change one dead node does not delay finding the new one.
                    if fresh_hint and address not in hinted:
                        hinted.add(address)
                        continue
                    untried = [
                        node for node in self._candidates(key)
                        if node not in tried and not self._suspected(node)
                    ]
                    if untried:
                        address = address if address in untried else untried[0]
                        continue
                tried.clear()
                delay = min(self.policy.backoff(retries, self.rng), max(0.0, end - loop.time()))
                retries += 1
                await asyncio.sleep(delay)
                continue
            if follow_leader and not pinned and self._leaders.get(key) != address:
                self.set_leader(key, address)
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
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        tasks = [task for task in (self._learning, *self._probes.values()) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._probes.clear()
        connections = list(self._connections.values())
        self._connections.clear()
        for connection in connections:
            await connection.close()


@dataclass(eq=False, slots=True)
class _Watch:
    """One waiting attempt: its node, since when it waits unprobed, its timeout to expire."""

    address: str
    since: float
    timeout: asyncio.Timeout
    probing: bool = False
    done: bool = False
