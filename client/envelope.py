"""A message's envelope in the SDK: headers and standard properties (docs/envelope.md).

Owns: the :class:`Envelope` dataclass users build and read, and its conversion to and from
``quorumlog.v1.Envelope``. Headers keep the order they were given in; a ``str`` value is a
text header, ``bytes`` a binary one. Must never: check limits or syntax (the server does, and
answers ``InvalidArgument`` naming the message and the field), or talk to the network.

Example::

    await client.append("orders", b'{"id": 7}', envelope=Envelope(
        message_id="order-7", content_type="application/json", headers={"tenant": "acme"}))
    for record in (await client.read("orders")).records:
        print(record.envelope.message_id if record.envelope else None, record.append_time_ms)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quorumlog.client import errors
from quorumlog.proto import envelope_pb2


@dataclass(frozen=True, slots=True)
class Envelope:
    message_id: str = ""
    correlation_id: str = ""
    reply_to: str = ""  # a session name
    content_type: str = ""  # a media type, e.g. "application/json"
    subject: str = ""
    headers: Mapping[str, str | bytes] = field(default_factory=dict)
    #: not delivered to consumer groups once this long past its append (0: never expires)
    time_to_live_ms: int = 0
    #: invisible to consumer groups until the leader's clock passes this (ms since the epoch)
    deliver_at_ms: int = 0

    def to_pb(self) -> envelope_pb2.Envelope:
        message = envelope_pb2.Envelope(
            message_id=self.message_id, correlation_id=self.correlation_id,
            reply_to=self.reply_to, content_type=self.content_type, subject=self.subject,
            time_to_live_ms=self.time_to_live_ms, deliver_at_ms=self.deliver_at_ms,
        )
        for key, value in self.headers.items():
            if isinstance(value, str):
                message.headers.add(key=key, text=value)
            elif isinstance(value, bytes | bytearray | memoryview):
                message.headers.add(key=key, binary=bytes(value))
            else:
                raise errors.InvalidArgument(
                    f"header {key!r}: a value is str (text) or bytes (binary), not "
                    f"{type(value).__name__}"
                )
        return message

    @classmethod
    def from_pb(cls, message: envelope_pb2.Envelope) -> Envelope:
        headers: dict[str, str | bytes] = {}
        for header in message.headers:
            headers[header.key] = (
                header.binary if header.WhichOneof("value") == "binary" else header.text
            )
        return cls(message.message_id, message.correlation_id, message.reply_to,
                   message.content_type, message.subject, headers, message.time_to_live_ms,
                   message.deliver_at_ms)


def envelope_of(holder: Any) -> Envelope | None:
    """The envelope of a ``Record`` / ``ReceivedMessage`` / ``DeadLetter`` message, None
    when it was appended without one."""
    if not holder.HasField("envelope"):
        return None
    return Envelope.from_pb(holder.envelope)


def envelopes_for(
    count: int, envelope: Envelope | None, envelopes: Sequence[Envelope | None] | None
) -> list[envelope_pb2.Envelope] | None:
    """The request's envelopes for an append of ``count`` messages: None when there are none;
    ``envelope`` applies to every message, ``envelopes`` gives one per message (None: none)."""
    if envelope is not None and envelopes is not None:
        raise errors.InvalidArgument("give envelope (for every message) or envelopes, not both")
    if envelope is not None:
        if envelope.message_id and count > 1:
            raise errors.InvalidArgument(
                f"one message_id for {count} messages: give envelopes, one per message"
            )
        converted = envelope.to_pb()
        return [converted] * count
    if envelopes is None:
        return None
    if len(envelopes) != count:
        raise errors.InvalidArgument(
            f"{len(envelopes)} envelopes for {count} messages (give one per message)"
        )
    if all(item is None for item in envelopes):
        return None
    return [envelope_pb2.Envelope() if item is None else item.to_pb() for item in envelopes]
