"""The gRPC side of every service: deadlines, status mapping and leader hints, in one place.

Owns: the call's deadline (``context.time_remaining()`` or a default), turning a refused
input (anything with an ``ErrorCode`` and a message) or the node port's ``NodeError`` into the
exact status clients see — UNAVAILABLE naming the leader in the message and in trailing
metadata (``quorumlog-leader-id`` / ``quorumlog-leader-addr``) when this node cannot serve —
and the read point of a request (``consistency``). Every service aborts through these
helpers, so a client sees the same answer from each. Must never: decide anything about the
request (the services validate, the port executes).
"""

from __future__ import annotations

import time
from typing import Any, NoReturn, Protocol

import grpc

from quorumlog.node.api.node_port import (
    ChangeRefused,
    CommandRefused,
    DeadlineError,
    NodeError,
    NodePort,
    NotLeaderError,
)
from quorumlog.node.common.limits import ErrorCode
from quorumlog.proto import commands_pb2, quorumlog_pb2

LEADER_ID_KEY = "quorumlog-leader-id"
LEADER_ADDR_KEY = "quorumlog-leader-addr"
DEFAULT_TIMEOUT = 10.0  # seconds, when the caller sets no deadline

Context = grpc.aio.ServicerContext[Any, Any]
Metadata = tuple[tuple[str, str], ...]


class Invalid(Protocol):
    """A refusal before or at apply time that changed nothing: ``InvalidInput`` (and
    ``MembershipError``), ``CommandError``, ``StateMachineError``."""

    @property
    def code(self) -> ErrorCode: ...
    @property
    def message(self) -> str: ...


class Refusal(Exception):
    """A failed call as the client sees it: status code, message, leader hint metadata.
    Raised where a whole call fails but is answered in-band (AppendStream)."""

    def __init__(self, code: grpc.StatusCode, message: str, metadata: Metadata = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.metadata = metadata


def remaining(context: Context, default: float = DEFAULT_TIMEOUT) -> float:
    """Seconds until the caller's deadline (``default`` when it set none)."""
    left: float | None = context.time_remaining()
    return default if left is None else max(0.0, float(left))


def deadline(context: Context, default: float = DEFAULT_TIMEOUT) -> float:
    """The caller's deadline as a ``time.monotonic()`` instant, for the node port."""
    return time.monotonic() + remaining(context, default)


def status_code(error: Invalid) -> grpc.StatusCode:
    return grpc.StatusCode[error.code.value]


def leader_metadata(error: NotLeaderError) -> Metadata:
    leader = error.leader
    if leader is None:
        return ()
    if not leader.client_address:
        return ((LEADER_ID_KEY, leader.name),)
    return ((LEADER_ID_KEY, leader.name), (LEADER_ADDR_KEY, leader.client_address))


def refusal(error: NodeError) -> Refusal:
    """The answer to a call the node could not serve."""
    if isinstance(error, NotLeaderError):
        return Refusal(grpc.StatusCode.UNAVAILABLE, error.message, leader_metadata(error))
    if isinstance(error, CommandRefused):
        return Refusal(status_code(error.error), error.message)
    if isinstance(error, DeadlineError):
        return Refusal(grpc.StatusCode.DEADLINE_EXCEEDED, error.message)
    if isinstance(error, ChangeRefused):
        return Refusal(grpc.StatusCode.FAILED_PRECONDITION, error.message)
    return Refusal(grpc.StatusCode.UNAVAILABLE, error.message)  # OutcomeUnknownError


async def abort(context: Context, answer: Refusal) -> NoReturn:
    if answer.metadata:
        context.set_trailing_metadata(answer.metadata)
    await context.abort(answer.code, answer.message)


async def abort_invalid(context: Context, error: Invalid) -> NoReturn:
    await context.abort(status_code(error), error.message)


async def abort_node_error(context: Context, error: NodeError) -> NoReturn:
    await abort(context, refusal(error))


async def abort_not_leader(context: Context, port: NodePort, detail: str) -> NoReturn:
    """UNAVAILABLE naming the leader (message and metadata) when this node knows it."""
    await abort_node_error(context, port.not_leader(detail))


async def propose(
    context: Context, port: NodePort, command: commands_pb2.Command, size: int
) -> tuple[int, Any]:
    """Replicate one command by the call's deadline: (Raft index, apply result); any
    failure aborts the call with its status."""
    try:
        return await port.propose(command, size, deadline(context))
    except NodeError as error:
        await abort_node_error(context, error)


async def linearizable(context: Context, port: NodePort) -> None:
    """A linearizable read point (ReadIndex on the leader) by the call's deadline."""
    try:
        await port.linearizable(deadline(context))
    except NodeError as error:
        await abort_node_error(context, error)


async def read_point(context: Context, port: NodePort, consistency: int) -> None:
    """The read point ``consistency`` asks for: LINEARIZABLE waits for one; FOLLOWER reads
    this node's applied state as it is."""
    if consistency == quorumlog_pb2.LINEARIZABLE:
        await linearizable(context, port)
    elif consistency != quorumlog_pb2.FOLLOWER:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown consistency {consistency}")
