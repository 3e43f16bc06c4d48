"""Input limits and their validation, shared by the client service and the state machine.

Owns: the ``Limits`` a node is configured with, the ``ErrorCode`` names the client API answers
with, and the checks of every client-supplied id and payload, each failing with one precise,
deterministic message. The service runs the checks before proposing (so bad input never
reaches the log) and the state machine runs them again while applying (so an entry proposed
by an older or misbehaving leader still changes nothing). Must never: depend on grpc, the
clock or node-local state, because the apply-time checks must give the same answer on every
replica. The append limits are therefore part of the replicated contract: every node of a
cluster must run with the same ``max_*`` append values (read limits and the AppendBatch
limits, checked by the service only, are node-local).

Error codes follow the client API (``proto/quorumlog/v1/quorumlog.proto``): malformed ids and empty
appends are ``INVALID_ARGUMENT``; sizes over a limit are ``RESOURCE_EXHAUSTED``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

U64_MAX = (1 << 64) - 1


class ErrorCode(enum.Enum):
    """A gRPC status name; the service maps it with ``grpc.StatusCode[code.value]``."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    ALREADY_EXISTS = "ALREADY_EXISTS"  # membership: the id or an address is taken
    FAILED_PRECONDITION = "FAILED_PRECONDITION"  # membership: not allowed in this configuration
    PERMISSION_DENIED = "PERMISSION_DENIED"  # acl: the principal may not (quorumlog.node.state.acl)
    UNAVAILABLE = "UNAVAILABLE"  # an append of a multi-shard call whose shard failed here
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"  # likewise, its shard did not commit in time


class InvalidInput(Exception):
    """A client-supplied value breaks a limit; ``code`` and ``message`` are the answer."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits; defaults fit gRPC's default 4 MiB message size."""

    max_session_id_bytes: int = 256
    max_producer_id_bytes: int = 128
    max_message_bytes: int = 1 << 20
    max_messages_per_append: int = 10_000
    max_append_bytes: int = 4 << 20
    # AppendBatch (checked by the service only, so node-local): appends per call and the
    # total message bytes of all its appends.
    max_appends_per_batch: int = 1_000
    max_batch_bytes: int = 4 << 20
    # Reads are local and need not agree across nodes.
    default_read_count: int = 1_000
    max_read_count: int = 10_000
    default_read_bytes: int = 1 << 20
    max_read_bytes: int = 3 << 20  # leaves room for framing under a 4 MiB response
    default_list_limit: int = 100
    max_list_limit: int = 1_000


DEFAULT_LIMITS = Limits()

# Unicode category Cc: C0 controls (NUL included), DEL and the C1 controls.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def check_name(what: str, name: str, min_bytes: int, max_bytes: int) -> bytes:
    if not name and min_bytes == 0:
        return b""
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(ErrorCode.INVALID_ARGUMENT, f"{what} is not valid UTF-8") from None
    if len(encoded) < min_bytes:
        raise InvalidInput(ErrorCode.INVALID_ARGUMENT, f"{what} is empty")
    if len(encoded) > max_bytes:
        raise InvalidInput(
            ErrorCode.INVALID_ARGUMENT,
            f"{what} is {len(encoded)} bytes of UTF-8; the limit is {max_bytes}",
        )
    control = _CONTROL.search(name)
    if control is not None:
        raise InvalidInput(
            ErrorCode.INVALID_ARGUMENT,
            f"{what} contains control character U+{ord(control.group()):04X} "
            f"at position {control.start()}",
        )
    return encoded


def check_session_id(session: str, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The session id's UTF-8 bytes: 1..``max_session_id_bytes``, no control characters."""
    return check_name("session id", session, 1, limits.max_session_id_bytes)


def check_producer_id(producer_id: str, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The producer id's UTF-8 bytes: 0..``max_producer_id_bytes`` (empty: no dedup)."""
    return check_name("producer id", producer_id, 0, limits.max_producer_id_bytes)


def check_messages(messages: Sequence[bytes], limits: Limits = DEFAULT_LIMITS) -> int:
    """The append's total payload bytes, after checking count and sizes."""
    count = len(messages)
    if count == 0:
        raise InvalidInput(ErrorCode.INVALID_ARGUMENT, "append carries no messages")
    if count > limits.max_messages_per_append:
        raise InvalidInput(
            ErrorCode.RESOURCE_EXHAUSTED,
            f"append carries {count} messages; the limit is {limits.max_messages_per_append}",
        )
    sizes = list(map(len, messages))
    largest = max(sizes)
    if largest > limits.max_message_bytes:
        position = sizes.index(largest)
        raise InvalidInput(
            ErrorCode.RESOURCE_EXHAUSTED,
            f"message {position} is {largest} bytes; the limit is {limits.max_message_bytes}",
        )
    total = sum(sizes)
    if total > limits.max_append_bytes:
        raise InvalidInput(
            ErrorCode.RESOURCE_EXHAUSTED,
            f"append carries {total} bytes; the limit is {limits.max_append_bytes}",
        )
    return total


def check_sequence(sequence: int, count: int) -> None:
    """Message ``i`` gets sequence ``sequence + i``; the last one must fit in 64 bits."""
    if sequence + count - 1 > U64_MAX:
        raise InvalidInput(
            ErrorCode.INVALID_ARGUMENT,
            f"sequence {sequence} + {count} messages overflows 64 bits",
        )


def check_append(
    session: str,
    messages: Sequence[bytes],
    producer_id: str,
    sequence: int,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[bytes, bytes, int]:
    """Every check of one append: ``(session bytes, producer bytes, total payload bytes)``."""
    session_bytes = check_session_id(session, limits)
    producer_bytes = check_producer_id(producer_id, limits)
    total = check_messages(messages, limits)
    check_sequence(sequence, len(messages))
    return session_bytes, producer_bytes, total


def check_batch(appends: int, total_bytes: int, limits: Limits = DEFAULT_LIMITS) -> None:
    """An AppendBatch as a whole: 1..``max_appends_per_batch`` appends carrying at most
    ``max_batch_bytes`` message bytes in all (each append is then checked on its own)."""
    if appends == 0:
        raise InvalidInput(ErrorCode.INVALID_ARGUMENT, "append batch carries no appends")
    if appends > limits.max_appends_per_batch:
        raise InvalidInput(
            ErrorCode.RESOURCE_EXHAUSTED,
            f"append batch carries {appends} appends; the limit is {limits.max_appends_per_batch}",
        )
    if total_bytes > limits.max_batch_bytes:
        raise InvalidInput(
            ErrorCode.RESOURCE_EXHAUSTED,
            f"append batch carries {total_bytes} message bytes; the limit is "
            f"{limits.max_batch_bytes}",
        )


def read_bounds(max_count: int, max_bytes: int, limits: Limits = DEFAULT_LIMITS) -> tuple[int, int]:
    """A read's ``(max_count, max_bytes)``: 0 means the default, anything above the cap is
    capped (a read is never refused for asking too much; it gets a page)."""
    count = limits.default_read_count if max_count <= 0 else min(max_count, limits.max_read_count)
    size = limits.default_read_bytes if max_bytes <= 0 else min(max_bytes, limits.max_read_bytes)
    return count, size


def list_limit(limit: int, limits: Limits = DEFAULT_LIMITS) -> int:
    """A listing's page size: 0 means the default; capped at ``max_list_limit``."""
    return limits.default_list_limit if limit <= 0 else min(limit, limits.max_list_limit)
