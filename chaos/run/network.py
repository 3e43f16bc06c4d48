"""The chaos run's network: one Toxiproxy proxy per client port and per directed peer link.

Owns: naming and creating the proxies (``client-n1`` in front of n1's client port;
``peer-n1-n2`` carries everything n1 sends to n2, so n1's ``--peer-route`` names it for n2),
their listen addresses, and the network faults as Toxiproxy calls: cutting a directed link
(proxy disabled: connections refused), blackholing it (``timeout`` toxic: bytes vanish),
toxics on every peer link or on client links, and healing everything (``POST /reset``).
Must never: start or signal node processes, read a clock, or decide *when* a fault happens
(that is ``quorumlog.chaos.run.nemesis``). Every call blocks on HTTP (with the client's timeout);
asyncio callers run them in a thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from quorumlog.chaos.toxiproxy.client import ToxiproxyClient

STREAMS = ("upstream", "downstream")


def client_proxy(node: str) -> str:
    return f"client-{node}"


def peer_proxy(source: str, target: str) -> str:
    return f"peer-{source}-{target}"


class ChaosNetwork:
    """Proxies between a fixed set of nodes; ``setup`` creates them before any node starts."""

    def __init__(self, toxiproxy: ToxiproxyClient, client_addrs: dict[str, str],
                 peer_addrs: dict[str, str]) -> None:
        self.toxiproxy = toxiproxy
        self.nodes = sorted(client_addrs)
        self.real_client = dict(client_addrs)
        self.real_peer = dict(peer_addrs)
        self.listen: dict[str, str] = {}  # proxy name -> resolved listen address
        self._toxic_count = 0

    def setup(self, listen: Callable[[], str] = lambda: "127.0.0.1:0") -> None:
        """Create every proxy; ``listen`` gives each one's listen address (port 0: any)."""
        for node in self.nodes:
            self._create(client_proxy(node), self.real_client[node], listen())
        for source, target in self.links():
            self._create(peer_proxy(source, target), self.real_peer[target], listen())

    def _create(self, name: str, upstream: str, listen: str) -> None:
        proxy = self.toxiproxy.create_proxy(name, upstream, listen=listen)
        self.listen[name] = str(proxy["listen"])

    def links(self) -> list[tuple[str, str]]:
        return [(a, b) for a in self.nodes for b in self.nodes if a != b]

    def client_address(self, node: str) -> str:
        """Where workers reach ``node``'s client port (through its proxy)."""
        return self.listen[client_proxy(node)]

    def routes_for(self, node: str) -> dict[str, str]:
        """``node``'s ``--peer-route`` map: every other member through ``node``'s proxy."""
        return {other: self.listen[peer_proxy(node, other)]
                for other in self.nodes if other != node}

    # -- faults ------------------------------------------------------------------------------
    def links_of(self, node: str) -> list[tuple[str, str]]:
        return [(a, b) for a, b in self.links() if node in (a, b)]

    def cut(self, links: Iterable[tuple[str, str]]) -> None:
        """Disable the proxies of ``links``: live connections close, new ones are refused."""
        for source, target in links:
            self.toxiproxy.update_proxy(peer_proxy(source, target), enabled=False)

    def blackhole(self, links: Iterable[tuple[str, str]]) -> None:
        """Bytes on ``links`` vanish (both directions of each connection); nothing closes."""
        for source, target in links:
            for stream in STREAMS:
                self._toxic(peer_proxy(source, target), "timeout", stream, {"timeout": 0})

    def peer_toxic(self, toxic_type: str, attributes: dict[str, int],
                   streams: Sequence[str] = STREAMS) -> None:
        for source, target in self.links():
            for stream in streams:
                self._toxic(peer_proxy(source, target), toxic_type, stream, attributes)

    def client_toxic(self, nodes: Iterable[str], toxic_type: str, attributes: dict[str, int],
                     stream: str, toxicity: float = 1.0) -> None:
        for node in nodes:
            self._toxic(client_proxy(node), toxic_type, stream, attributes, toxicity)

    def _toxic(self, proxy: str, toxic_type: str, stream: str, attributes: dict[str, int],
               toxicity: float = 1.0) -> None:
        self._toxic_count += 1
        self.toxiproxy.add_toxic(proxy, toxic_type, stream=stream, toxicity=toxicity,
                                 attributes=attributes,
                                 name=f"{toxic_type}-{stream}-{self._toxic_count}")

    def heal(self) -> None:
        """Every proxy enabled, every toxic removed (Toxiproxy's ``POST /reset``)."""
        result = self.toxiproxy.request("POST", "/reset")
        if result.status >= 300:
            raise RuntimeError(f"toxiproxy reset failed: {result.status} {result.text}")
