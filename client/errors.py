"""Typed exceptions of the quorumlog SDK, one per gRPC status code the API uses.

Owns: the mapping from a gRPC status (code name, message, trailing metadata) to an exception
class, keeping the server's message verbatim. Must never import grpc: the transport façade
(``quorumlog.client._grpc``) turns a grpc error into a status and calls :func:`from_status`.

Catch :class:`QuorumLogError` for everything the SDK raises on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

LEADER_ADDR_KEY = "quorumlog-leader-addr"
LEADER_ID_KEY = "quorumlog-leader-id"
# Optional trailing metadata on OUT_OF_RANGE: the session's first retained offset.
FIRST_OFFSET_KEY = "quorumlog-first-offset"

_FIRST_OFFSET_IN_MESSAGE = re.compile(r"first (?:retained )?offset\D{0,8}(\d+)", re.IGNORECASE)


class QuorumLogError(Exception):
    """Base class: ``code`` is the gRPC status name, ``message`` the server's message."""

    code: str = "UNKNOWN"
    #: transient: the SDK retries these (with the same producer id and sequence for appends)
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        address: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        #: the node that answered (or failed to), when known
        self.address = address
        self.metadata: dict[str, str] = dict(metadata or {})

    @property
    def leader_address(self) -> str | None:
        """The leader's client address a non-leader named in its answer, if any."""
        return self.metadata.get(LEADER_ADDR_KEY) or None

    @property
    def leader_id(self) -> str | None:
        return self.metadata.get(LEADER_ID_KEY) or None

    def __str__(self) -> str:
        return self.message


class InvalidArgument(QuorumLogError):
    """Malformed id, empty append, bad offset: the request changed nothing."""

    code = "INVALID_ARGUMENT"


class NotFound(QuorumLogError):
    """Unknown session."""

    code = "NOT_FOUND"


class AlreadyExists(QuorumLogError):
    code = "ALREADY_EXISTS"


class OutOfRange(QuorumLogError):
    """Offset below the session's first retained offset (the session was trimmed)."""

    code = "OUT_OF_RANGE"

    @property
    def first_offset(self) -> int | None:
        """The session's first retained offset, when the server said which it is."""
        value = self.metadata.get(FIRST_OFFSET_KEY)
        if value is not None and value.isdigit():
            return int(value)
        match = _FIRST_OFFSET_IN_MESSAGE.search(self.message)
        return int(match.group(1)) if match else None


class ResourceExhausted(QuorumLogError):
    """A size limit (message, batch, session id) was exceeded."""

    code = "RESOURCE_EXHAUSTED"


class FailedPrecondition(QuorumLogError):
    code = "FAILED_PRECONDITION"


class PermissionDenied(QuorumLogError):
    code = "PERMISSION_DENIED"


class Unauthenticated(QuorumLogError):
    code = "UNAUTHENTICATED"


class Unimplemented(QuorumLogError):
    code = "UNIMPLEMENTED"


class Internal(QuorumLogError):
    code = "INTERNAL"


class Cancelled(QuorumLogError):
    code = "CANCELLED"


class Aborted(QuorumLogError):
    """The request raced a leadership change; retrying is safe."""

    code = "ABORTED"
    retryable = True


class Unavailable(QuorumLogError):
    """No node could serve the request (down, unreachable, or not the leader)."""

    code = "UNAVAILABLE"
    retryable = True


class DeadlineExceeded(QuorumLogError):
    """The call's deadline passed; for an append the outcome is unknown."""

    code = "DEADLINE_EXCEEDED"
    retryable = True


class ClientClosed(QuorumLogError):
    """The client was closed while the call was pending."""

    code = "CANCELLED"


_BY_CODE: dict[str, type[QuorumLogError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        OutOfRange,
        ResourceExhausted,
        FailedPrecondition,
        PermissionDenied,
        Unauthenticated,
        Unimplemented,
        Internal,
        Cancelled,
        Aborted,
        Unavailable,
        DeadlineExceeded,
    )
}


# gRPC status code numbers (the wire values), for answers that carry a code as a number
# (AppendBatch outcomes).
STATUS_NAMES: dict[int, str] = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}


def from_status_number(
    number: int,
    message: str,
    metadata: Mapping[str, str] | None = None,
    *,
    address: str | None = None,
) -> QuorumLogError:
    """The exception for gRPC status code ``number`` (e.g. 5 -> :class:`NotFound`)."""
    return from_status(
        STATUS_NAMES.get(number, f"STATUS_{number}"), message, metadata, address=address
    )


def from_status(
    code: str,
    message: str,
    metadata: Mapping[str, str] | None = None,
    *,
    address: str | None = None,
) -> QuorumLogError:
    """The exception for gRPC status ``code`` (a name such as ``"NOT_FOUND"``)."""
    cls = _BY_CODE.get(code, QuorumLogError)
    error = cls(message or code, address=address, metadata=metadata)
    if cls is QuorumLogError:
        error.code = code
    return error
