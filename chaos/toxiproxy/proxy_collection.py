"""The set of named proxies a Toxiproxy-compatible server runs.

Owns: creating (name must be new; the proxy only joins the set once it could listen),
deleting, populating (an identical proxy is left alone, a differing one replaced) and
resetting (every proxy enabled, every toxic removed, none deleted) proxies, and stopping them
all at shutdown. Must never: parse requests or move bytes; callers serialise mutations.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from quorumlog.chaos.toxiproxy.api_json import PROXY_ALREADY_EXISTS, PROXY_NOT_FOUND, ApiError
from quorumlog.chaos.toxiproxy.proxy import Proxy

DEFAULT_LISTEN = "127.0.0.1:0"


@dataclass(frozen=True)
class ProxySpec:
    """What a client asks for when it creates or populates a proxy."""

    name: str
    listen: str
    upstream: str
    enabled: bool = True


class ProxyCollection:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.proxies: dict[str, Proxy] = {}
        self._random = rng if rng is not None else random.Random()

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise PROXY_NOT_FOUND
        return proxy

    def _new(self, spec: ProxySpec) -> Proxy:
        return Proxy(spec.name, spec.listen or DEFAULT_LISTEN, spec.upstream, self._random)

    async def add(self, spec: ProxySpec) -> Proxy:
        if spec.name in self.proxies:
            raise PROXY_ALREADY_EXISTS
        proxy = self._new(spec)
        if spec.enabled:
            await proxy.start()
        self.proxies[spec.name] = proxy
        return proxy

    async def remove(self, name: str) -> None:
        proxy = self.get(name)
        await proxy.stop()
        self.proxies.pop(name, None)

    async def populate(self, specs: list[ProxySpec]) -> tuple[list[Proxy], ApiError | None]:
        """Add or replace each proxy in turn; stops at the first failure and reports it."""
        done: list[Proxy] = []
        for spec in specs:
            existing = self.proxies.get(spec.name)
            listen = spec.listen or DEFAULT_LISTEN
            if existing is not None:
                if existing.listen == listen and existing.upstream == spec.upstream:
                    done.append(existing)
                    continue
                await existing.stop()
            proxy = self._new(spec)
            try:
                if spec.enabled:
                    await proxy.start()
            except ApiError as error:
                return done, error
            self.proxies[spec.name] = proxy
            done.append(proxy)
        return done, None

    async def reset(self) -> None:
        for proxy in list(self.proxies.values()):
            await proxy.start()
            await proxy.remove_all_toxics()

    async def close(self) -> None:
        for proxy in list(self.proxies.values()):
            await proxy.stop()
