"""Cluster operations in the SDK: membership changes, leadership transfer, online backup.

Owns: building ``Admin`` requests, running each through the :class:`Router` (the leader is
found and followed; UNAVAILABLE is retried until the deadline; a refusal — ALREADY_EXISTS,
NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT — is raised at once), and writing a backup
stream to a file atomically (a temporary file renamed into place only once the stream's
final size and SHA-256 match what arrived). Must never: interpret the backup's content (the
node's ``quorumlog.node.storage.backup_file`` owns the format) or leave a partial file at the target
path.

One attempt may use all of the call's remaining deadline (not the per-attempt budget of data
calls): adding a node waits for it to catch up, a backup streams the whole state.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from quorumlog.client import errors
from quorumlog.client._grpc import NodeConnection
from quorumlog.client.leader import Router
from quorumlog.client.shards import META
from quorumlog.proto import admin_pb2, backup_bundle

T = TypeVar("T")
R = TypeVar("R")



def _fsync_directory(path: Path) -> None:
    """Make the entries of ``path`` (the backup renamed into place) durable."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

class OperationTimedOut(errors.DeadlineExceeded):
    """The operation used the call's whole deadline: not retried (nothing is left of it)."""

    retryable = False


async def _whole_deadline(call: Awaitable[T]) -> T:
    """Run one attempt that had the call's whole remaining deadline."""
    try:
        return await call
    except errors.DeadlineExceeded as error:
        raise OperationTimedOut(
            error.message, address=error.address, metadata=error.metadata
        ) from None


@dataclass(frozen=True, slots=True)
class AddNodeResult:
    id: str
    learner_index: int  # 0 when it already was a learner (this call only promoted it)
    voter_index: int
    catch_up_seconds: float


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    size: int
    applied_index: int
    sha256: str  # hex
    seconds: float


class Operations:
    """The admin calls of one client (shares its Router, hence its leader knowledge)."""

    def __init__(self, router: Router, end_of: Callable[[float | None], float]) -> None:
        self._router = router
        self._end_of = end_of

    async def _call(
        self,
        method: Callable[[NodeConnection, R, float], Awaitable[T]],
        request: R,
        deadline: float | None,
        what: str,
    ) -> T:
        """One admin RPC through the router, each attempt with the whole remaining deadline."""
        end = self._end_of(deadline)
        loop = asyncio.get_running_loop()

        async def attempt(node: NodeConnection, timeout: float) -> T:
            return await _whole_deadline(method(node, request, max(timeout, end - loop.time())))

        return await self._router.call(attempt, end=end, what=what)

    async def add_node(
        self, node_id: str, peer_address: str, client_address: str, deadline: float | None
    ) -> AddNodeResult:
        request = admin_pb2.AddNodeRequest(
            id=node_id, peer_address=peer_address, client_address=client_address
        )
        response = await self._call(
            NodeConnection.add_node, request, deadline, f"add-node {node_id}"
        )
        return AddNodeResult(
            response.id, response.learner_index, response.voter_index, response.catch_up_seconds
        )

    async def remove_node(self, node_id: str, deadline: float | None) -> int:
        request = admin_pb2.RemoveNodeRequest(id=node_id)
        response = await self._call(
            NodeConnection.remove_node, request, deadline, f"remove-node {node_id}"
        )
        return response.index

    async def transfer_leader(self, node_id: str, deadline: float | None) -> tuple[str, int]:
        request = admin_pb2.TransferLeaderRequest(id=node_id)
        response = await self._call(
            NodeConnection.transfer_leader, request, deadline, f"transfer-leader {node_id}"
        )
        return response.leader, response.term

    async def backup(self, path: Path, deadline: float | None) -> BackupResult:
        """The cluster's state into ``path``: one group's backup file from the leader, or on a
        sharded cluster a bundle of every group's (the meta group's, then each shard's, each
        from that group's leader at its own linearizable point)."""
        end = self._end_of(deadline)
        started = time.monotonic()
        await self._router.learn(end)
        shards = self._router.shards
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        try:
            if not shards.sharded:
                last = await self._backup_group(partial, admin_pb2.BackupRequest(), META, end)
                size, digest, applied = last.total_bytes, last.sha256, last.applied_index
            else:
                sections: list[tuple[str, Path, int]] = []
                requests = [("meta", admin_pb2.BackupRequest(meta=True), META)] + [
                    (f"shard {k}", admin_pb2.BackupRequest(shard=k), shards.key_of_shard(k))
                    for k in range(shards.count)
                ]
                for name, request, key in requests:
                    part = path.with_name(f".{path.name}.{name.replace(' ', '-')}-{os.getpid()}")
                    sections.append((name, part, 0))
                    chunk = await self._backup_group(part, request, key, end)
                    sections[-1] = (name, part, chunk.applied_index)
                with partial.open("wb") as out:
                    size, digest = await asyncio.to_thread(
                        backup_bundle.write_bundle, out, shards.count, 0, "quorumlog backup",
                        sections,
                    )
                    out.flush()
                    os.fsync(out.fileno())
                applied = sections[0][2]
            os.replace(partial, path)
            _fsync_directory(path.parent)  # the rename itself durable: a power cut keeps it
        finally:
            for leftover in path.parent.glob(f".{path.name}.*-{os.getpid()}"):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        return BackupResult(path, size, applied, digest.hex(), time.monotonic() - started)

    async def _backup_group(
        self, target: Path, request: admin_pb2.BackupRequest, key: int, end: float
    ) -> admin_pb2.BackupChunk:
        """One Backup stream from the leader of ``key``'s group into ``target`` (fsynced);
        the stream's last chunk (totals, checksum, applied index)."""
        loop = asyncio.get_running_loop()

        async def attempt(node: NodeConnection, timeout: float) -> admin_pb2.BackupChunk:
            return await _whole_deadline(write(node, timeout))

        async def write(node: NodeConnection, timeout: float) -> admin_pb2.BackupChunk:
            digest = hashlib.sha256()
            size = 0
            with target.open("wb") as out:
                async for chunk in node.backup(max(timeout, end - loop.time()), request):
                    if chunk.done:
                        if chunk.total_bytes != size or chunk.sha256 != digest.digest():
                            raise errors.QuorumLogError(
                                f"backup stream from {node.address} arrived damaged "
                                f"({size} of {chunk.total_bytes} bytes, checksum mismatch)"
                            )
                        out.flush()
                        os.fsync(out.fileno())
                        return chunk
                    await asyncio.to_thread(out.write, chunk.data)
                    digest.update(chunk.data)
                    size += len(chunk.data)
            raise errors.Unavailable(f"backup stream from {node.address} ended early")

        return await self._router.call(attempt, end=end, key=key, what="backup")
