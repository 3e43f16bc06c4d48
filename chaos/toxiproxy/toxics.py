"""Toxic types of the Toxiproxy-compatible server: attributes, validation and link behaviour.

Owns: the built-in toxic types (noop, latency, bandwidth, slow_close, timeout, reset_peer,
slicer, limit_data), their attributes and defaults, parsing a toxic from an API body (with
Toxiproxy's checks in Toxiproxy's order), merging updates, the toxic's JSON shape, and each
type's behaviour on one connection's one-way link, written against the ``ToxicStub`` protocol.
Must never: touch sockets, the event loop's tasks or the proxy's bookkeeping; a behaviour sees
only its stub. A behaviour that is interrupted while holding data hands it back with
``push_back`` (or forwards it), so adding, updating or removing a toxic loses nothing in flight.

Known differences from Toxiproxy 2.12 (deliberate, or where Go would crash):
- an interrupted ``latency`` hands its chunk back with its read time (Toxiproxy releases it at
  once), and adding a toxic does not interrupt the one before it;
- ``timeout`` closes ``timeout`` ms after it starts on a link, whatever data arrives;
- ``reset_peer`` resets both sockets of the connection, and its wait is interruptible (an
  update or removal during the wait hands the data back instead of resetting);
- ``bandwidth`` with a negative rate behaves like rate 0, and ``slicer`` with a non-positive
  ``average_size`` or negative ``size_variation`` still terminates (Toxiproxy panics);
- decoding errors follow Go's ``json: cannot unmarshal ...`` wording closely, not exactly.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from quorumlog.chaos.toxiproxy.api_json import BAD_REQUEST_BODY as _BAD_BODY
from quorumlog.chaos.toxiproxy.api_json import (
    INVALID_STREAM,
    INVALID_TOXIC_TYPE,
    TOXIC_ALREADY_EXISTS,
    GoType,
    JsonValue,
    decode_object,
    json_kind,
)

Direction = Literal["upstream", "downstream"]


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes moving along a link, stamped with the loop time they were read (or released)."""

    data: bytes
    read_at: float


class EndOfStream:
    """The source side of a link is done; whoever sees it last closes the destination."""

    def __repr__(self) -> str:
        return "END"


END = EndOfStream()
Item = Chunk | EndOfStream


class Signal(enum.Enum):
    """Why ``ToxicStub.receive`` returned without an item."""

    INTERRUPTED = "interrupted"
    TIMED_OUT = "timed out"


class ToxicStub(Protocol):
    """One toxic's place on one link: its input, its output and its per-link state."""

    @property
    def state(self) -> dict[str, int]: ...

    @property
    def random(self) -> random.Random: ...

    def now(self) -> float: ...

    async def receive(self, deadline: float | None = None) -> Item | Signal:
        """Next input item; ``INTERRUPTED`` when asked to stop, ``TIMED_OUT`` at ``deadline``."""
        ...

    async def sleep_until(self, deadline: float) -> bool:
        """Wait until loop time ``deadline`` (``math.inf``: forever); False if interrupted."""
        ...

    def send(self, chunk: Chunk) -> None: ...

    def push_back(self, item: Item) -> None:
        """Return an item to the front of the input (it is handled again or passed on)."""
        ...

    def drop(self, byte_count: int) -> None:
        """Account for bytes this toxic discards on purpose."""
        ...

    def close(self) -> None:
        """End the stream downstream of this toxic; the toxic must return after this."""
        ...

    def reset(self) -> None:
        """Reset the whole connection (TCP RST on both sockets)."""
        ...


Attributes = dict[str, int]
Behaviour = Callable[[ToxicStub, Attributes], Awaitable[None]]


async def _noop(stub: ToxicStub, attributes: Attributes) -> None:
    while True:
        item = await stub.receive()
        if isinstance(item, Signal):
            return
        if isinstance(item, EndOfStream):
            stub.close()
            return
        stub.send(item)


async def _latency(stub: ToxicStub, attributes: Attributes) -> None:
    latency, jitter = attributes["latency"], attributes["jitter"]
    while True:
        item = await stub.receive()
        if isinstance(item, Signal):
            return
        if isinstance(item, EndOfStream):
            stub.close()
            return
        delay_ms = latency + (stub.random.randrange(2 * jitter) - jitter if jitter > 0 else 0)
        # Relative to the read time, so chunks read together are released together.
        release = item.read_at + delay_ms / 1000
        if not await stub.sleep_until(release):
            stub.push_back(item)
            return
        stub.send(Chunk(item.data, max(release, item.read_at)))


async def _bandwidth(stub: ToxicStub, attributes: Attributes) -> None:
    rate = attributes["rate"]  # KB/s, 1 KB = 1000 bytes
    wire_free_at = stub.now()
    while True:
        item = await stub.receive()
        if isinstance(item, Signal):
            return
        if isinstance(item, EndOfStream):
            stub.close()
            return
        if rate <= 0:
            # Nothing is ever delivered; hold the data until the toxic changes.
            await stub.sleep_until(math.inf)
            stub.push_back(item)
            return
        data, start = item.data, max(stub.now(), wire_free_at)
        piece_limit = rate * 100  # at most 100 ms worth per write
        while data:
            piece, rest = data[:piece_limit], data[piece_limit:]
            finish = start + len(piece) / (rate * 1000)
            if not await stub.sleep_until(finish):
                stub.push_back(Chunk(data, item.read_at))
                return
            stub.send(Chunk(piece, item.read_at))
            data, start = rest, finish
        wire_free_at = start


async def _slow_close(stub: ToxicStub, attributes: Attributes) -> None:
    while True:
        item = await stub.receive()
        if isinstance(item, Signal):
            return
        if isinstance(item, EndOfStream):
            if not await stub.sleep_until(stub.now() + attributes["delay"] / 1000):
                stub.push_back(item)
                return
            stub.close()
            return
        stub.send(item)


async def _timeout(stub: ToxicStub, attributes: Attributes) -> None:
    timeout = attributes["timeout"]
    deadline = stub.now() + timeout / 1000 if timeout > 0 else None
    ended = False
    while True:
        item = await stub.receive(deadline)
        if item is Signal.INTERRUPTED:
            if ended:
                stub.push_back(END)
            return
        if item is Signal.TIMED_OUT:
            stub.close()
            return
        if isinstance(item, Chunk):
            stub.drop(len(item.data))
        else:
            ended = True  # even the end of stream is held back until the timeout


async def _reset_peer(stub: ToxicStub, attributes: Attributes) -> None:
    item = await stub.receive()
    if isinstance(item, Signal):
        return
    if not await stub.sleep_until(stub.now() + attributes["timeout"] / 1000):
        stub.push_back(item)
        return
    if isinstance(item, Chunk):
        stub.drop(len(item.data))
    stub.reset()


def slice_sizes(length: int, average: int, variation: int, rng: random.Random) -> list[int]:
    """Piece sizes (summing to ``length``) for a slicer: halve until within average+variation."""
    sizes: list[int] = []
    pending = [length]  # a stack, left piece on top, so sizes come out in order
    spread = max(variation, 0)
    while pending:
        segment = pending.pop()
        if segment <= 1 or segment - average <= variation:
            if segment > 0:
                sizes.append(segment)
            continue
        offset = rng.randint(-spread, spread) if spread else 0
        left = min(max(segment // 2 + offset, 1), segment - 1)
        pending.append(segment - left)
        pending.append(left)
    return sizes


async def _slicer(stub: ToxicStub, attributes: Attributes) -> None:
    average, variation = attributes["average_size"], attributes["size_variation"]
    delay = attributes["delay"] / 1_000_000  # microseconds
    while True:
        item = await stub.receive()
        if isinstance(item, Signal):
            return
        if isinstance(item, EndOfStream):
            stub.close()
            return
        offset = 0
        for size in slice_sizes(len(item.data), average, variation, stub.random):
            stub.send(Chunk(item.data[offset : offset + size], item.read_at))
            offset += size
            if not await stub.sleep_until(stub.now() + delay):
                if offset < len(item.data):
                    stub.push_back(Chunk(item.data[offset:], item.read_at))
                return


async def _limit_data(stub: ToxicStub, attributes: Attributes) -> None:
    limit = attributes["bytes"]
    state = stub.state  # survives restarts: the count is per connection, not per update
    while True:
        item = await stub.receive()
        if isinstance(item, Signal):
            return
        if isinstance(item, EndOfStream):
            stub.close()
            return
        sent = state.get("bytes_transmitted", 0)
        remaining = max(limit - sent, 0)
        data = item.data
        if remaining < len(data):
            stub.drop(len(data) - remaining)
            data = data[:remaining]
        if data:
            stub.send(Chunk(data, item.read_at))
            sent += len(data)
            state["bytes_transmitted"] = sent
        if limit - sent <= 0:
            stub.close()
            return


@dataclass(frozen=True)
class ToxicType:
    """A toxic type: its attributes (all integers) and how it treats a link."""

    name: str
    struct: str  # Toxiproxy's Go type name, used in decoding error messages
    attributes: tuple[str, ...]
    behaviour: Behaviour
    closes_on_removal: bool = False
    go_types: dict[str, GoType] = field(default_factory=dict)

    def defaults(self) -> Attributes:
        return dict.fromkeys(self.attributes, 0)

    def decode_attributes(self, value: JsonValue, base: Attributes) -> Attributes:
        """``base`` with the attributes given in ``value`` merged in; unknown keys ignored."""
        if value is None:
            return dict(base)
        if not isinstance(value, dict):
            raise _BAD_BODY.joined(
                f"json: cannot unmarshal {json_kind(value)} into Go struct field "
                f"ToxicWrapper.attributes of type toxics.{self.struct}"
            )
        types: dict[str, GoType] = {
            name: self.go_types.get(name, "int64") for name in self.attributes
        }
        merged = dict(base)
        for name, decoded in decode_object(value, types, self.struct).items():
            assert isinstance(decoded, int)
            merged[name] = decoded
        return merged


TOXIC_TYPES: dict[str, ToxicType] = {
    toxic_type.name: toxic_type
    for toxic_type in (
        ToxicType("noop", "NoopToxic", (), _noop),
        ToxicType("latency", "LatencyToxic", ("latency", "jitter"), _latency),
        ToxicType("bandwidth", "BandwidthToxic", ("rate",), _bandwidth),
        ToxicType("slow_close", "SlowCloseToxic", ("delay",), _slow_close),
        ToxicType("timeout", "TimeoutToxic", ("timeout",), _timeout, closes_on_removal=True),
        ToxicType("reset_peer", "ResetToxic", ("timeout",), _reset_peer),
        ToxicType(
            "slicer",
            "SlicerToxic",
            ("average_size", "size_variation", "delay"),
            _slicer,
            go_types={"average_size": "int", "size_variation": "int", "delay": "int"},
        ),
        ToxicType("limit_data", "LimitDataToxic", ("bytes",), _limit_data),
    )
}

NOOP_BEHAVIOUR: Behaviour = _noop


@dataclass(frozen=True)
class Toxic:
    """One configured toxic of a proxy."""

    name: str
    type: str
    stream: str  # as the client spelled it; ``direction`` is the normalised form
    toxicity: float
    attributes: Attributes

    @property
    def direction(self) -> Direction:
        return "upstream" if self.stream.lower() == "upstream" else "downstream"

    @property
    def toxic_type(self) -> ToxicType:
        return TOXIC_TYPES[self.type]

    def to_json(self) -> dict[str, JsonValue]:
        attributes: dict[str, JsonValue] = dict(self.attributes)
        return {
            "attributes": attributes,
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
        }


_WRAPPER_FIELDS: dict[str, GoType] = {
    "name": "string",
    "type": "string",
    "stream": "string",
    "toxicity": "float32",
}


def parse_new_toxic(body: JsonValue, name_taken: Callable[[str], bool]) -> Toxic:
    """A toxic from a ``POST /proxies/{p}/toxics`` body, checked in Toxiproxy's order."""
    fields = decode_object(body, _WRAPPER_FIELDS, "ToxicWrapper")
    stream = str(fields.get("stream", "downstream"))
    if stream.lower() not in ("upstream", "downstream"):
        raise INVALID_STREAM
    type_name = str(fields.get("type", ""))
    name = str(fields.get("name", "")) or f"{type_name}_{stream}"
    toxic_type = TOXIC_TYPES.get(type_name)
    if toxic_type is None:
        raise INVALID_TOXIC_TYPE
    if name_taken(name):
        raise TOXIC_ALREADY_EXISTS
    raw_attributes = body.get("attributes") if isinstance(body, dict) else None
    attributes = toxic_type.decode_attributes(raw_attributes, toxic_type.defaults())
    toxicity = fields.get("toxicity", 1.0)
    assert isinstance(toxicity, float)
    return Toxic(name, type_name, stream, toxicity, attributes)


def parse_toxic_update(toxic: Toxic, body: JsonValue) -> Toxic:
    """``toxic`` with a ``POST /proxies/{p}/toxics/{t}`` body merged in."""
    fields = decode_object(body, {"toxicity": "float32"}, "ToxicWrapper")
    raw_attributes = body.get("attributes") if isinstance(body, dict) else None
    attributes = toxic.toxic_type.decode_attributes(raw_attributes, toxic.attributes)
    toxicity = fields.get("toxicity", toxic.toxicity)
    assert isinstance(toxicity, float)
    return replace(toxic, attributes=attributes, toxicity=toxicity)
