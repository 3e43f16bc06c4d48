"""Pending linearizable reads on the leader (ReadIndex, thesis §6.4).

Owns: the queue of read requests waiting for a heartbeat round to confirm leadership, and
the acknowledgements each has gathered. Must never: decide quorum (the caller does) or send.

Requests are released in the order they were queued: a quorum acknowledging a later
request's heartbeat also proves leadership for every earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quorumlog.raft.types import Message, NodeId


@dataclass
class _PendingRead:
    index: int
    request: Message
    acks: set[NodeId] = field(default_factory=set)


class ReadOnly:
    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: dict[bytes, _PendingRead] = {}

    def add(self, context: bytes, index: int, request: Message) -> bool:
        """Queue a read at commit ``index``; False if ``context`` is already pending."""
        if context in self._pending:
            return False
        self._pending[context] = _PendingRead(index, request)
        return True

    def ack(self, context: bytes, frm: NodeId) -> set[NodeId] | None:
        pending = self._pending.get(context)
        if pending is None:
            return None
        pending.acks.add(frm)
        return pending.acks

    def release_through(self, context: bytes) -> list[tuple[int, Message]]:
        """Remove and return every request queued up to and including ``context``."""
        if context not in self._pending:
            return []
        released: list[tuple[int, Message]] = []
        for key in list(self._pending):
            pending = self._pending.pop(key)
            released.append((pending.index, pending.request))
            if key == context:
                break
        return released

    def __len__(self) -> int:
        return len(self._pending)
