"""Thin typed façade over grpc.aio for the QuorumLog service: a connection per address.

Owns: channel options, the generated stub, and turning every grpc error into a typed
:class:`~quorumlog.client.errors.QuorumLogError` at this boundary. The generated stub is
untyped (no ``_pb2_grpc.pyi``), so this is the only module that touches it; everything above
sees protobuf messages (typed by the ``.pyi`` files) and our exceptions, never grpc.
Must never: retry, pick a leader or hold session state (that is ``leader.py``/``producer.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc

from quorumlog.client import errors
from quorumlog.client.append_stream import AppendStream, StreamFailed
from quorumlog.client.tls import ClientSecurity, aio_channel
from quorumlog.proto import (
    acl_pb2_grpc,
    admin_pb2,
    admin_pb2_grpc,
    consumer_pb2_grpc,
    quorumlog_pb2_grpc,
)
from quorumlog.proto import quorumlog_pb2 as pb

# Reconnect quickly to a restarted node (grpc's default backoff grows to 120 s), and never
# route loopback cluster traffic through an HTTP proxy picked up from the environment.
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_http_proxy", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)


def _metadata_dict(metadata: Any) -> dict[str, str]:
    result: dict[str, str] = {}
    if not metadata:
        return result
    for key, value in metadata:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        result[str(key)] = str(text)
    return result


def error_from_rpc(error: Any, address: str) -> errors.QuorumLogError:
    """Map a grpc ``AioRpcError`` to our exception, keeping message and trailing metadata."""
    code = error.code()
    name = str(getattr(code, "name", code))
    details = error.details() or name
    return errors.from_status(
        name, str(details), _metadata_dict(error.trailing_metadata()), address=address
    )


class StreamReader:
    """One server-streaming Subscribe call; ``read()`` returns ``None`` at the stream's end."""

    def __init__(self, call: Any, address: str) -> None:
        self._call = call
        self.address = address
        self._cancelled = False

    async def read(self) -> pb.ReadResponse | None:
        try:
            response = await self._call.read()
        except asyncio.CancelledError:
            if self._cancelled:  # cancel() from another task, not our caller being cancelled
                raise errors.ClientClosed("subscription closed", address=self.address) from None
            raise
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error, self.address) from None
        except grpc.aio.UsageError as error:
            raise errors.ClientClosed(str(error), address=self.address) from None
        if response is grpc.aio.EOF:
            return None
        return cast(pb.ReadResponse, response)

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()


class NodeConnection:
    """A channel to one node's client port with typed QuorumLog methods.

    Channels connect lazily, so constructing one needs no running event loop; every method
    must be awaited on the same loop.
    """

    def __init__(self, address: str, security: ClientSecurity | None = None) -> None:
        self.address = address
        self._channel: Any = aio_channel(address, security, CHANNEL_OPTIONS)
        self._stub: Any = quorumlog_pb2_grpc.QuorumLogStub(  # type: ignore[no-untyped-call]
            self._channel
        )
        self._admin: Any = admin_pb2_grpc.AdminStub(  # type: ignore[no-untyped-call]
            self._channel
        )
        self._append_stream = AppendStream(self._stub, address, error_from_rpc)
        self._acl: Any = acl_pb2_grpc.AclStub(self._channel)  # type: ignore[no-untyped-call]
        self._consumer: Any = consumer_pb2_grpc.ConsumerStub(  # type: ignore[no-untyped-call]
            self._channel
        )

    async def _unary(self, method: Any, request: object, timeout: float | None) -> object:
        try:
            return cast(object, await method(request, timeout=timeout, wait_for_ready=False))
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error, self.address) from None
        except grpc.aio.UsageError as error:
            raise errors.ClientClosed(str(error), address=self.address) from None

    async def append(self, request: pb.AppendRequest, timeout: float | None) -> pb.AppendResponse:
        return cast(pb.AppendResponse, await self._unary(self._stub.Append, request, timeout))

    async def append_batch(
        self, request: pb.AppendBatchRequest, timeout: float | None
    ) -> pb.AppendBatchResponse:
        """On the node's AppendStream (falls back to unary AppendBatch on older servers)."""
        stream = self._append_stream
        fell_back = False
        if stream.supported:
            try:
                return await stream.append_batch(request, timeout)
            except StreamFailed as failure:
                if not isinstance(failure.error, errors.Unimplemented | errors.Internal):
                    raise failure.error from None
                # no AppendStream on this server (grpc may report that as INTERNAL): unary
                fell_back = True
        response = await self._unary(self._stub.AppendBatch, request, timeout)
        if fell_back:
            # The stream failed where unary AppendBatch works: a server without the stream,
            # even when grpc said INTERNAL rather than UNIMPLEMENTED (it did under load).
            stream.supported = False
        return cast(pb.AppendBatchResponse, response)

    async def read(self, request: pb.ReadRequest, timeout: float | None) -> pb.ReadResponse:
        return cast(pb.ReadResponse, await self._unary(self._stub.Read, request, timeout))

    async def list_sessions(
        self, request: pb.ListSessionsRequest, timeout: float | None
    ) -> pb.ListSessionsResponse:
        response = await self._unary(self._stub.ListSessions, request, timeout)
        return cast(pb.ListSessionsResponse, response)

    async def describe_session(
        self, request: pb.DescribeSessionRequest, timeout: float | None
    ) -> pb.SessionInfo:
        response = await self._unary(self._stub.DescribeSession, request, timeout)
        return cast(pb.SessionInfo, response)

    async def trim_session(
        self, request: pb.TrimSessionRequest, timeout: float | None
    ) -> pb.TrimSessionResponse:
        response = await self._unary(self._stub.TrimSession, request, timeout)
        return cast(pb.TrimSessionResponse, response)

    async def delete_session(
        self, request: pb.DeleteSessionRequest, timeout: float | None
    ) -> pb.DeleteSessionResponse:
        response = await self._unary(self._stub.DeleteSession, request, timeout)
        return cast(pb.DeleteSessionResponse, response)

    async def cluster_status(self, timeout: float | None) -> pb.NodeStatus:
        response = await self._unary(
            self._stub.ClusterStatus, pb.ClusterStatusRequest(), timeout
        )
        return cast(pb.NodeStatus, response)

    async def add_node(
        self, request: admin_pb2.AddNodeRequest, timeout: float | None
    ) -> admin_pb2.AddNodeResponse:
        response = await self._unary(self._admin.AddNode, request, timeout)
        return cast(admin_pb2.AddNodeResponse, response)

    async def remove_node(
        self, request: admin_pb2.RemoveNodeRequest, timeout: float | None
    ) -> admin_pb2.RemoveNodeResponse:
        response = await self._unary(self._admin.RemoveNode, request, timeout)
        return cast(admin_pb2.RemoveNodeResponse, response)

    async def transfer_leader(
        self, request: admin_pb2.TransferLeaderRequest, timeout: float | None
    ) -> admin_pb2.TransferLeaderResponse:
        response = await self._unary(self._admin.TransferLeader, request, timeout)
        return cast(admin_pb2.TransferLeaderResponse, response)

    async def backup(
        self, timeout: float, request: admin_pb2.BackupRequest | None = None
    ) -> AsyncIterator[admin_pb2.BackupChunk]:
        """The Backup stream's chunks, in order (errors mapped like every other call)."""
        call = self._admin.Backup(request or admin_pb2.BackupRequest(), timeout=timeout)
        try:
            async for chunk in call:
                yield cast(admin_pb2.BackupChunk, chunk)
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error, self.address) from None
        finally:
            call.cancel()

    async def acl(self, method: str, request: object, timeout: float | None) -> object:
        """One ``quorumlog.v1.Acl`` call by method name (``Grant``, ``Revoke``, ...)."""
        return await self._unary(getattr(self._acl, method), request, timeout)

    async def consumer(self, method: str, request: object, timeout: float | None) -> object:
        """One ``quorumlog.v1.Consumer`` call by method name (``Receive``, ``Settle``, ...)."""
        return await self._unary(getattr(self._consumer, method), request, timeout)

    def subscribe(self, request: pb.SubscribeRequest) -> StreamReader:
        """Start a Subscribe stream (no deadline: it follows the tail until cancelled)."""
        return StreamReader(self._stub.Subscribe(request, wait_for_ready=False), self.address)

    async def close(self) -> None:
        await self._append_stream.close()
        await self._channel.close()
