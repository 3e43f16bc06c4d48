"""Reads and checks shared by the cluster tests, in-process (``inprocess_cluster``) and with node
processes (``cluster_harness``).

Owns: reading a whole session through the async SDK, the gapless-offsets check, waiting until
named nodes applied everything the leader committed, and one consumer session's status.
Must never: start or stop a cluster, or wait without a deadline.
"""

from __future__ import annotations

from typing import Protocol

from cluster_harness import wait_until

from quorumlog.client.sdk import AsyncClient, Client, Record
from quorumlog.proto import quorumlog_pb2

__all__ = ["assert_gapless", "read_all", "status_of", "wait_caught_up"]


class HasStatus(Protocol):
    """A cluster that reports one node's status (``LocalCluster``, ``InProcessCluster``)."""

    def status(self, name: str, timeout: float = 1.0) -> quorumlog_pb2.NodeStatus: ...


async def read_all(client: AsyncClient, session: str) -> list[Record]:
    records: list[Record] = []
    offset = 0
    while True:
        page = await client.read(session, offset)
        records.extend(page.records)
        if page.next_offset >= page.end_offset:
            return records
        offset = page.next_offset


def assert_gapless(records: list[Record], first: int = 0) -> None:
    assert [record.offset for record in records] == list(range(first, first + len(records)))


def wait_caught_up(cluster: HasStatus, names: list[str], leader: str,
                   timeout: float) -> None:
    def caught_up() -> bool:
        target = cluster.status(leader).commit_index
        return all(cluster.status(name).applied_index >= target for name in names)

    wait_until(caught_up, timeout, f"{names} to apply everything {leader} committed")


def status_of(client: Client, session: str) -> object:
    """The consumer status of ``session`` (exactly one row)."""
    (status,) = client.consumer.sessions(session=session)
    return status
