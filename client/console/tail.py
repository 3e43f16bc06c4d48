"""The live tail of a session as server-sent events, resumable without gaps or duplicates.

Owns: where a tail starts (the browser's ``Last-Event-ID`` after a reconnect, else the page's
``from``, else the session's end) and the events: ``record`` per message, with the id the
offset after it, so a browser that reconnects — after the console restarted, or a stream
that ended because no node answered — asks for exactly the next one; ``trouble`` when the
stream ends on an error (the browser then reconnects by itself after ``RETRY_MS``). Node
failures in between are the SDK subscription's to ride out, which also never hands a record
out twice. Must never: send a record below the start, or one twice in a stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from sse_starlette import ServerSentEvent

from quorumlog.client import errors
from quorumlog.client.async_client import AsyncClient
from quorumlog.client.console import payload

RETRY_MS = 1000


def start_offset(last_event_id: str | None, from_text: str | None) -> int | None:
    """The offset to start at: Last-Event-ID wins (it is the next offset), then ``from``;
    None: the session's current end. InvalidArgument for a malformed number."""
    for name, text in (("Last-Event-ID", last_event_id), ("from", from_text)):
        if text is None or text == "":
            continue
        if not text.isdigit() or int(text) >= 2**63:
            raise errors.InvalidArgument(f"{name} must be an offset, got {text!r}")
        return int(text)
    return None


def record_event(session: str, offset: int, data: bytes, append_time_ms: int,
                 message_id: str) -> ServerSentEvent:
    body = {
        "session": session,
        "offset": offset,
        "size": len(data),
        "preview": payload.preview(data),
        "time": payload.iso_time(append_time_ms),
        "message_id": message_id,
    }
    return ServerSentEvent(json.dumps(body), event="record", id=str(offset + 1),
                           retry=RETRY_MS)


async def events(client: AsyncClient, session: str, start: int | None,
                 deadline: float) -> AsyncIterator[ServerSentEvent]:
    """The events of one stream; it ends (after a ``trouble`` event) when the cluster fails
    the subscription, and the browser's reconnect resumes it."""
    try:
        if start is None:
            start = (await client.describe_session(session, deadline=deadline)).next_offset
        yield ServerSentEvent(json.dumps({"session": session, "from": start}),
                              event="start", retry=RETRY_MS)
        async with client.subscribe(session, from_offset=start) as subscription:
            async for record in subscription:
                message_id = record.envelope.message_id if record.envelope else ""
                yield record_event(session, record.offset, record.data,
                                   record.append_time_ms, message_id)
    except errors.QuorumLogError as error:
        yield ServerSentEvent(json.dumps({"code": error.code, "message": str(error)}),
                              event="trouble", retry=RETRY_MS)
