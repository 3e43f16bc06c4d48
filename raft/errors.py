"""Named errors of the Raft core.

Owns: every exception the core raises to its caller. Must never: carry I/O state.
"""

from __future__ import annotations


class RaftError(Exception):
    """Base of every error the core raises."""


class Compacted(RaftError):
    """The requested index is older than the storage's first retained entry."""


class Unavailable(RaftError):
    """The requested index is newer than anything the storage holds."""


class SnapshotTemporarilyUnavailable(RaftError):
    """The application is still preparing a snapshot; try again later."""


class ProposalDropped(RaftError):
    """The proposal was not appended: this node is not the leader, or a transfer is running."""


class ConfChangeRefused(RaftError):
    """A membership change is not allowed now (one is pending, or it would be unsafe)."""
