"""The chaos run's final snapshots: every node's records of every session, read locally.

Owns: reading, after the cluster has healed and converged, each node's own applied state
(follower reads on its *real* client port, so the node answers from its own data) of every
session the workload used plus any the node lists, page by page, and writing one ``final``
event per (node, session) to the history (``records``, ``first_offset``; ``leader`` on the
leader's). A session the node does not know becomes an empty snapshot, so a node that lost
everything still counts. Must never: write to the cluster, judge the records, or read through
a proxy.
"""

from __future__ import annotations

from quorumlog.chaos.run.history import HistoryWriter, Record
from quorumlog.client import errors
from quorumlog.client.sdk import AsyncClient, Consistency

PAGE = 1000
DEADLINE = 15.0


async def _read_from(client: AsyncClient, session: str, offset: int) -> list[Record]:
    records: list[Record] = []
    while True:
        page = await client.read(session, offset, PAGE, consistency=Consistency.FOLLOWER)
        records.extend((record.offset, record.data.decode("utf-8", "replace"))
                       for record in page.records)
        if not page.records or page.next_offset >= page.end_offset:
            return records
        offset = page.next_offset


async def node_records(address: str, sessions: list[str]) -> dict[str, tuple[int, list[Record]]]:
    """``session -> (first_offset, records)`` as one node holds them (follower reads)."""
    result: dict[str, tuple[int, list[Record]]] = {}
    async with AsyncClient(address, deadline=DEADLINE) as client:
        listed = await client.list_sessions(consistency=Consistency.FOLLOWER)
        for session in sorted(set(sessions) | {info.session for info in listed}):
            try:
                info = await client.describe_session(session, consistency=Consistency.FOLLOWER)
            except errors.NotFound:
                result[session] = (0, [])
                continue
            records = await _read_from(client, session, info.first_offset)
            result[session] = (info.first_offset, records)
    return result


async def write_finals(writer: HistoryWriter, time: float, addresses: dict[str, str],
                       leader: str | None, sessions: list[str]) -> list[str]:
    """Write every node's final snapshots; returns the nodes that could not be read."""
    unreadable: list[str] = []
    for node in sorted(addresses):
        try:
            held = await node_records(addresses[node], sessions)
        except errors.QuorumLogError as error:
            unreadable.append(f"{node}: {error}")
            continue
        for session, (first_offset, records) in sorted(held.items()):
            writer.final(node, session, time, records=records, leader=node == leader,
                         first_offset=first_offset or None)
    return unreadable
