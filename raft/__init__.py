"""quorumlog's Raft consensus core: pure, synchronous and deterministic.

Owns: the protocol (``raft.py``), its log (``log.py``), follower progress (``progress.py``),
quorum math (``quorum.py``), pending reads (``read_only.py``), the storage protocol with an
in-memory twin (``storage.py``), the ``Ready`` contract (``rawnode.py``) and the invariant
checker (``invariants.py``). Must never: import asyncio, grpc, rocksdict, socket, threading or
time, or draw randomness other than from the injected ``random.Random``.
"""

from quorumlog.raft.errors import (
    Compacted,
    ConfChangeRefused,
    ProposalDropped,
    RaftError,
    SnapshotTemporarilyUnavailable,
    Unavailable,
)
from quorumlog.raft.raft import Config, Raft
from quorumlog.raft.rawnode import RawNode, Ready, Status
from quorumlog.raft.storage import (
    MemoryStorage,
    Storage,
    bootstrap_memory_storage,
    bootstrap_snapshot,
)
from quorumlog.raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    NodeId,
    ReadState,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    StateRole,
)

__all__ = [
    "NONE",
    "Compacted",
    "ConfChange",
    "ConfChangeRefused",
    "ConfChangeType",
    "ConfState",
    "Config",
    "Entry",
    "EntryType",
    "HardState",
    "MemoryStorage",
    "Message",
    "MessageType",
    "NodeId",
    "ProposalDropped",
    "Raft",
    "RaftError",
    "RawNode",
    "ReadState",
    "Ready",
    "Snapshot",
    "SnapshotMetadata",
    "SnapshotTemporarilyUnavailable",
    "SoftState",
    "StateRole",
    "Status",
    "Storage",
    "Unavailable",
    "bootstrap_memory_storage",
    "bootstrap_snapshot",
]
