"""The chaos run's final snapshots: every node's records of every session, read locally.

Owns: reading, after the cluster has healed and converged, each node's own applied state
(follower reads on its *real* client port, so the node answers from its own data) of every
session the workload used plus any the node lists, page by page, and writing one ``final``
event per (node, session) to the history (``records``, ``first_offset``; ``leader`` on the
leader's). A session the node does not know becomes an empty snapshot, so a node that lost
everything still counts. In a sharded cluster the reads go to that node alone through its own
connection (the SDK would route a shard's reads to the shard's replicas, so another node could
answer) and the listing asks one shard at a time (``ListSessionsRequest.shard``). Must never:
write to the cluster, judge the records, or read through a proxy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from quorumlog.chaos.run.envelopes import observed, observed_record
from quorumlog.chaos.run.history import HistoryWriter, Record
from quorumlog.client import errors
from quorumlog.client._grpc import NodeConnection
from quorumlog.client.sdk import AsyncClient, Consistency
from quorumlog.proto import quorumlog_pb2 as pb

PAGE = 1000
DEADLINE = 15.0


async def _read_from(client: AsyncClient, session: str, offset: int) -> list[Record]:
    records: list[Record] = []
    while True:
        page = await client.read(session, offset, PAGE, consistency=Consistency.FOLLOWER)
        records.extend(
            (record.offset, observed(record.data, record.envelope.to_pb() if record.envelope
                                     else None))
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


async def node_shard_records(address: str, sessions: list[str], shards: int,
                             ) -> dict[str, tuple[int, list[Record]]]:
    """``node_records`` in a sharded cluster: every call answered by this node itself."""
    connection = NodeConnection(address)
    end = asyncio.get_running_loop().time() + DEADLINE

    def left() -> float:
        remaining = end - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise errors.DeadlineExceeded(f"final reads on {address}: deadline passed")
        return remaining

    result: dict[str, tuple[int, list[Record]]] = {}
    try:
        listed: set[str] = set()
        for shard in range(shards):
            after = ""
            while True:
                page = await connection.list_sessions(pb.ListSessionsRequest(
                    start_after=after, consistency=pb.FOLLOWER, shard=shard), left())
                listed.update(info.session for info in page.sessions)
                if not page.truncated or not page.sessions:
                    break
                after = page.sessions[-1].session
        for session in sorted(set(sessions) | listed):
            try:
                info = await connection.describe_session(pb.DescribeSessionRequest(
                    session=session, consistency=pb.FOLLOWER), left())
            except errors.NotFound:
                result[session] = (0, [])
                continue
            records: list[Record] = []
            offset = info.first_offset
            while True:
                response = await connection.read(pb.ReadRequest(
                    session=session, from_offset=offset, max_count=PAGE,
                    consistency=pb.FOLLOWER), left())
                records.extend((record.offset, observed_record(record))
                               for record in response.records)
                if not response.records or response.next_offset >= response.end_offset:
                    break
                offset = response.next_offset
            result[session] = (info.first_offset, records)
    finally:
        await connection.close()
    return result


async def write_finals(writer: HistoryWriter, time: float, addresses: dict[str, str],
                       leader: str | None, sessions: list[str], *, shards: int = 1,
                       session_leaders: Mapping[str, str] | None = None) -> list[str]:
    """Write every node's final snapshots; returns the nodes that could not be read. The
    snapshot marked ``leader`` is ``leader``'s, or, for a session in ``session_leaders``
    (sharded: its shard's leader), that node's."""
    unreadable: list[str] = []
    for node in sorted(addresses):
        try:
            held = (await node_shard_records(addresses[node], sessions, shards) if shards > 1
                    else await node_records(addresses[node], sessions))
        except errors.QuorumLogError as error:
            unreadable.append(f"{node}: {error}")
            continue
        for session, (first_offset, records) in sorted(held.items()):
            reference = (session_leaders or {}).get(session, leader)
            writer.final(node, session, time, records=records, leader=node == reference,
                         first_offset=first_offset or None)
    return unreadable
