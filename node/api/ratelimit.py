"""Per-principal request rate limiting on one node: a token bucket per principal.

Owns: the buckets (``rate`` requests per second, bursts up to ``rate``) and their bounded
memory (at most ``MAX_PRINCIPALS`` buckets; when full, the least recently used half is
dropped, which only ever forgives). Must never: block or sleep (a caller over its rate is
refused at once with ``RESOURCE_EXHAUSTED`` by ``quorumlog.node.api.guard``), or be replicated:
each node limits what it serves itself.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

MAX_PRINCIPALS = 10_000


class RateLimiter:
    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, principal: str) -> bool:
        """Spend one request of ``principal``'s budget; False when it has none left."""
        now = self._clock()
        tokens, at = self._buckets.pop(principal, (self.rate, now))
        tokens = min(self.rate, tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        if len(self._buckets) >= MAX_PRINCIPALS:
            for _ in range(MAX_PRINCIPALS // 2):
                self._buckets.popitem(last=False)
        self._buckets[principal] = (tokens, now)
        return allowed
