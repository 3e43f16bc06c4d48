"""A node's Prometheus endpoint (``--metrics-addr``) as the clients read it.

Owns: fetching one node's ``/metrics`` text over HTTP with a timeout, and summing its samples
by metric name (a counter's ``_total`` suffix dropped). Used by ``quorumlog bench`` (write-path
figures) and the web console (throughput and latency). Must never: retry, cache, or reach an
address that is not a bare ``HOST:PORT`` (the one a node reports for itself).
"""

from __future__ import annotations

import urllib.request

DEFAULT_TIMEOUT = 2.0


def fetch(address: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """The metrics text of the node at ``address``; OSError (URLError included) when it does
    not answer, ValueError for an address that is not ``HOST:PORT``."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or "/" in address:
        raise ValueError(f"not a HOST:PORT metrics address: {address!r}")
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as response:
        body: bytes = response.read()
    return body.decode("utf-8", errors="replace")


def totals(text: str) -> dict[str, float]:
    """{metric name: its samples summed over every label}; ``<name>_total`` is read as
    ``<name>`` (``quorumlog_raft_fsyncs_total`` as ``quorumlog_raft_fsyncs``)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value_part = line.rpartition(" ")
        name = name_part.split("{", 1)[0].strip().removesuffix("_total")
        try:
            value = float(value_part)
        except ValueError:
            continue
        values[name] = values.get(name, 0.0) + value
    return values
