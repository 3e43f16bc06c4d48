"""The public SDK: :class:`AsyncClient` (asyncio) and :class:`Client` (blocking).

Owns: the names applications import (``from quorumlog.client.sdk import Client``): the
asyncio client (``quorumlog.client.async_client``), its blocking twin, which runs it on a
private event loop in a background thread (``quorumlog.client.blocking``), and the result
dataclasses (``quorumlog.client.results``). Must never: hold code of its own beyond these
exports (one concern per module).

Example::

    async with AsyncClient("127.0.0.1:7001,127.0.0.1:7002") as client:
        result = await client.append("orders/42", b"created", b"paid")
        page = await client.read("orders/42", from_offset=result.first_offset)
        async for record in client.subscribe("orders/42"):
            ...

What an append and a subscription guarantee: ``quorumlog.client.async_client``.
"""

from __future__ import annotations

from quorumlog.client.admin import AddNodeResult, BackupResult
from quorumlog.client.async_client import AsyncClient
from quorumlog.client.blocking import Client, SyncSubscription
from quorumlog.client.envelope import Envelope
from quorumlog.client.producer import AppendResult
from quorumlog.client.results import (
    ClusterStatus,
    Consistency,
    FollowerProgress,
    Member,
    NodeReport,
    NodeStatus,
    ReadResult,
    Record,
    SessionInfo,
    ShardStatus,
)
from quorumlog.client.subscription import Subscription

__all__ = [
    "AddNodeResult",
    "AppendResult",
    "AsyncClient",
    "BackupResult",
    "Client",
    "ClusterStatus",
    "Consistency",
    "Envelope",
    "FollowerProgress",
    "Member",
    "NodeReport",
    "NodeStatus",
    "ReadResult",
    "Record",
    "SessionInfo",
    "ShardStatus",
    "Subscription",
    "SyncSubscription",
]
