"""How the console shows a message: its body as text, JSON or hex, and its envelope.

Owns: choosing a view for a body (``auto`` picks JSON for valid JSON, text for printable
UTF-8, hex otherwise), formatting each view, and the envelope's fields as label/value pairs.
Must never: escape HTML (the templates do, always) or cut a body without saying so.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass

from quorumlog.client.envelope import Envelope

VIEWS = ("auto", "text", "json", "hex")
#: the most bytes of one body a page shows (the rest is counted, not shown)
MAX_SHOWN = 16 * 1024
HEX_ROW = 16


@dataclass(frozen=True, slots=True)
class Shown:
    view: str  # the view used: text, json or hex
    text: str
    size: int  # the body's full size in bytes
    cut: bool  # only the first MAX_SHOWN bytes are shown


def _printable(text: str) -> bool:
    return all(char.isprintable() or char in "\n\r\t" for char in text)


def _as_json(data: bytes) -> str | None:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(value, dict | list):
        return None  # a bare number or string reads better as text
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def hex_dump(data: bytes) -> str:
    """Offset, hex bytes and printable ASCII, 16 bytes a row."""
    rows = []
    for start in range(0, len(data), HEX_ROW):
        chunk = data[start:start + HEX_ROW]
        hexes = " ".join(f"{byte:02x}" for byte in chunk)
        ascii_part = "".join(chr(byte) if 32 <= byte < 127 else "." for byte in chunk)
        rows.append(f"{start:08x}  {hexes:<{HEX_ROW * 3 - 1}}  {ascii_part}")
    return "\n".join(rows)


def show(data: bytes, view: str = "auto") -> Shown:
    """``data`` in ``view`` (one of VIEWS); a view that does not fit the body (text of
    binary, JSON of non-JSON) falls back to hex, and the answer says which view was used."""
    cut = len(data) > MAX_SHOWN
    head = data[:MAX_SHOWN]
    if view in ("auto", "json") and not cut:
        pretty = _as_json(head)
        if pretty is not None:
            return Shown("json", pretty, len(data), cut)
    if view in ("auto", "text", "json"):
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
            if cut:  # the cut may split a character: show what decodes
                text = head.decode("utf-8", errors="ignore")
        if text and (_printable(text) or view == "text"):
            return Shown("text", text, len(data), cut)
        if not data:
            return Shown("text", "", 0, False)
    return Shown("hex", hex_dump(head), len(data), cut)


def preview(data: bytes, limit: int = 120) -> str:
    """One line for lists and the live tail: printable text, else hex."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and _printable(text):
        flat = " ".join(text.split())
        return flat if len(flat) <= limit else flat[:limit - 1] + "…"
    shown = data[:limit // 3].hex(" ")
    return f"0x {shown}{' …' if len(data) > limit // 3 else ''}" if data else ""


def envelope_fields(envelope: Envelope | None) -> list[tuple[str, str]]:
    """The envelope's set properties and headers (binary headers as base64), in order."""
    if envelope is None:
        return []
    fields = [
        (name, str(getattr(envelope, name)))
        for name in ("message_id", "correlation_id", "reply_to", "content_type", "subject")
        if getattr(envelope, name)
    ]
    if envelope.time_to_live_ms:
        fields.append(("time_to_live", f"{envelope.time_to_live_ms} ms"))
    if envelope.deliver_at_ms:
        fields.append(("deliver_at", iso_time(envelope.deliver_at_ms)))
    for key, value in envelope.headers.items():
        shown = value if isinstance(value, str) else "b64:" + base64.b64encode(value).decode()
        fields.append((f"header {key}", shown))
    return fields


def iso_time(ms: int) -> str:
    """UTC time of a leader timestamp in ms, to the millisecond; "" for 0 (unknown)."""
    if not ms:
        return ""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def size_text(count: int) -> str:
    """Bytes in the largest unit that keeps a number of at least 1 (B, KiB, MiB, GiB)."""
    value = float(count)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
