"""The state layer's named errors.

Owns: the exceptions a read, an import or a corrupt database raises out of the state layer
(``StateMachineError`` and its subclasses carry the client's answer: code and message).
Must never: be raised for a refused command while applying (a refused command is a
``CommandError`` result: it changed nothing and every replica answers it the same way).
"""

from __future__ import annotations

from quorumlog.node.common.limits import ErrorCode


class StateMachineError(Exception):
    """A read that cannot be answered; ``code`` and ``message`` are the client's answer."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SessionNotFound(StateMachineError):
    def __init__(self, session: str) -> None:
        super().__init__(ErrorCode.NOT_FOUND, f"session {session!r} not found")


class OffsetTrimmed(StateMachineError):
    def __init__(self, session: str, offset: int, first_offset: int) -> None:
        super().__init__(
            ErrorCode.OUT_OF_RANGE,
            f"offset {offset} of session {session!r} was trimmed; "
            f"the first retained offset is {first_offset}",
        )
        self.first_offset = first_offset


class StateCorrupted(Exception):
    """What is on disk breaks the layout's invariants."""


class IncompleteImport(Exception):
    """A snapshot import was interrupted; the state is partial until one completes."""


class SnapshotFormatError(ValueError):
    """A snapshot stream is malformed, of another version, or truncated."""
