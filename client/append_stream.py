"""AppendBatch over one long-lived AppendStream call per node connection.

Owns: opening the bidirectional ``AppendStream`` call lazily, numbering requests, matching
responses to waiting callers by id, turning an in-band refusal into the same typed
:class:`~quorumlog.client.errors.QuorumLogError` (leader hint included) that the unary
``AppendBatch`` would raise, and dropping the call when it breaks so the next request opens a
fresh one. A sequential producer then pays one stream message each way per batch instead of a
whole unary call (about half the client round trip on loopback).

Errors: a broken call fails every request waiting on it with :class:`StreamFailed` carrying
the mapped status (the caller re-raises it; retryable ones are retried by ``leader.py`` like
any RPC, and producer dedup keeps that exactly-once). An in-band refusal raises the typed
error itself. A caller whose own timeout passes gets ``DeadlineExceeded``; its request may
still commit. A server without ``AppendStream`` answers ``UNIMPLEMENTED`` (grpc sometimes
reports that rejection as ``INTERNAL``): :attr:`supported` becomes False on UNIMPLEMENTED and
the caller falls back to unary ``AppendBatch``.

Must never: retry, pick a node, or reorder one caller's requests (each request is written
before its caller waits, in call order, under one write lock).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, cast

import grpc

from quorumlog.client import errors
from quorumlog.proto import quorumlog_pb2 as pb


class StreamFailed(Exception):
    """The AppendStream call itself failed (not an in-band answer); ``error`` says how."""

    def __init__(self, error: errors.QuorumLogError) -> None:
        super().__init__(str(error))
        self.error = error


class AppendStream:
    """The AppendStream call of one node connection, shared by every caller on its loop."""

    def __init__(
        self, stub: Any, address: str, map_error: Callable[[Any, str], errors.QuorumLogError]
    ) -> None:
        self._stub = stub
        self.address = address
        self._map_error = map_error  # a grpc AioRpcError -> our typed error
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[pb.AppendBatchResponse]] = {}
        self._next_id = 1
        self._write_lock = asyncio.Lock()
        self.supported = True
        self.opened = 0  # calls opened (for tests)

    async def append_batch(
        self, request: pb.AppendBatchRequest, timeout: float | None
    ) -> pb.AppendBatchResponse:
        """The batch's response; raises the typed error of an in-band refusal, or
        :class:`StreamFailed` when the call broke."""
        loop = asyncio.get_running_loop()
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[pb.AppendBatchResponse] = loop.create_future()
        self._waiting[request_id] = future
        timeout_ms = max(1, int(timeout * 1000)) if timeout is not None else 0
        message = pb.AppendStreamRequest(id=request_id, batch=request, timeout_ms=timeout_ms)
        try:
            async with self._write_lock:
                call = self._open()
                with contextlib.suppress(
                    grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError
                ):
                    # A failed write means the call has ended; its reader then fails every
                    # waiter with the call's real status (a write only sees "INTERNAL").
                    await call.write(message)
            try:
                return await asyncio.wait_for(asyncio.shield(future), timeout)
            except TimeoutError:
                raise errors.DeadlineExceeded(
                    "append batch: no answer before the deadline; outcome unknown",
                    address=self.address,
                ) from None
        finally:
            self._waiting.pop(request_id, None)
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # retrieved: a late failure is not "never retrieved"

    def _open(self) -> Any:
        if self._call is None:
            self._call = self._stub.AppendStream(wait_for_ready=False)
            self.opened += 1
            self._reader = asyncio.get_running_loop().create_task(
                self._read(self._call), name=f"quorumlog-append-stream-{self.address}"
            )
        return self._call

    async def _read(self, call: Any) -> None:
        try:
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    self._broken(call, None, "the node ended the append stream")
                    return
                self._answer(cast(pb.AppendStreamResponse, response))
        except grpc.aio.AioRpcError as error:
            self._broken(call, error)
        except grpc.aio.UsageError as error:
            self._broken(call, None, str(error))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # e.g. InvalidStateError from a call that finished under the reader: without this
            # the call stayed "open" with no reader, and every later request on this node
            # waited out its whole deadline ("no answer before the deadline").
            self._broken(call, None, f"reader failed: {error!r}")

    def _answer(self, response: pb.AppendStreamResponse) -> None:
        future = self._waiting.get(response.id)
        if future is None or future.done():
            return  # its caller gave up
        if response.code == 0:
            future.set_result(response.batch)
            return
        metadata: dict[str, str] = {}
        if response.leader_id:
            metadata[errors.LEADER_ID_KEY] = response.leader_id
        if response.leader_addr:
            metadata[errors.LEADER_ADDR_KEY] = response.leader_addr
        future.set_exception(
            errors.from_status_number(
                response.code, response.message, metadata, address=self.address
            )
        )

    def _broken(self, call: Any, error: Any, detail: str = "") -> None:
        """``call`` failed: forget it and fail every request still waiting on it."""
        if self._call is not call:
            return
        self._call = None
        failure: errors.QuorumLogError
        if error is not None:
            failure = self._map_error(error, self.address)
            if isinstance(failure, errors.Unimplemented):
                self.supported = False
        else:
            failure = errors.Unavailable(f"append stream: {detail}", address=self.address)
        waiting = list(self._waiting.values())
        self._waiting.clear()
        for future in waiting:
            if not future.done():
                future.set_exception(StreamFailed(failure))
        call.cancel()

    async def close(self) -> None:
        call, reader = self._call, self._reader
        self._call, self._reader = None, None
        if call is not None:
            call.cancel()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(errors.ClientClosed("the client was closed"))
        self._waiting.clear()
