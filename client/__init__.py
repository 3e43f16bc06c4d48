"""quorumlog client SDK and command-line tool.

``from quorumlog.client import Client, AsyncClient`` (see ``quorumlog.client.sdk``); typed
exceptions live in ``quorumlog.client.errors``. Exports load lazily so the CLI's other
commands do not pay for importing grpc.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quorumlog.client.envelope import Envelope
    from quorumlog.client.errors import QuorumLogError
    from quorumlog.client.retry import RetryPolicy
    from quorumlog.client.sdk import (
        AppendResult,
        AsyncClient,
        Client,
        ClusterStatus,
        Consistency,
        NodeStatus,
        ReadResult,
        Record,
        SessionInfo,
    )
    from quorumlog.client.tls import ClientSecurity

_EXPORTS = {
    "AppendResult": "quorumlog.client.sdk",
    "AsyncClient": "quorumlog.client.sdk",
    "Client": "quorumlog.client.sdk",
    "ClusterStatus": "quorumlog.client.sdk",
    "Consistency": "quorumlog.client.sdk",
    "Envelope": "quorumlog.client.envelope",
    "NodeStatus": "quorumlog.client.sdk",
    "ReadResult": "quorumlog.client.sdk",
    "Record": "quorumlog.client.sdk",
    "SessionInfo": "quorumlog.client.sdk",
    "QuorumLogError": "quorumlog.client.errors",
    "RetryPolicy": "quorumlog.client.retry",
    "ClientSecurity": "quorumlog.client.tls",
}

__all__ = [
    "AppendResult",
    "AsyncClient",
    "Client",
    "ClientSecurity",
    "ClusterStatus",
    "Consistency",
    "Envelope",
    "NodeStatus",
    "QuorumLogError",
    "ReadResult",
    "Record",
    "RetryPolicy",
    "SessionInfo",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'quorumlog.client' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
