"""Errors and request-body decoding of the Toxiproxy-compatible API, shaped like Toxiproxy's.

Owns: ``ApiError`` (message + HTTP status, rendered as ``{"error", "status"}``), the named
errors the API returns, and decoding JSON request bodies into known fields the way Go's
``encoding/json`` does (first JSON value only, unknown keys ignored, ``null`` leaves a field
alone, type mismatches reported as ``json: cannot unmarshal ...``). Must never: touch sockets,
proxies or the event loop; it is pure data handling used by the API and the toxic registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

GoType = Literal["string", "bool", "int", "int64", "float32"]
JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


@dataclass(frozen=True)
class ApiError(Exception):
    """An API failure: the message and status code a client receives."""

    message: str
    status: int

    def __str__(self) -> str:
        return self.message

    def joined(self, detail: str) -> ApiError:
        """``<message>: <detail>`` with the same status (Toxiproxy's ``joinError``)."""
        return ApiError(f"{self.message}: {detail}", self.status)

    def body(self) -> dict[str, JsonValue]:
        return {"error": self.message, "status": self.status}


BAD_REQUEST_BODY = ApiError("bad request body", 400)
MISSING_FIELD = ApiError("missing required field", 400)
PROXY_NOT_FOUND = ApiError("proxy not found", 404)
PROXY_ALREADY_EXISTS = ApiError("proxy already exists", 409)
INVALID_STREAM = ApiError("stream was invalid, can be either upstream or downstream", 400)
INVALID_TOXIC_TYPE = ApiError("invalid toxic type", 400)
TOXIC_ALREADY_EXISTS = ApiError("toxic already exists", 409)
TOXIC_NOT_FOUND = ApiError("toxic not found", 404)

_INT_RANGES: dict[str, tuple[int, int]] = {
    "int": (-(2**63), 2**63 - 1),
    "int64": (-(2**63), 2**63 - 1),
}


def parse_body(body: bytes) -> JsonValue:
    """The first JSON value of ``body``; ``bad request body: ...`` when there is none."""
    text = body.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        raise BAD_REQUEST_BODY.joined("EOF")
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as error:
        raise BAD_REQUEST_BODY.joined(_syntax_error(text, error)) from None
    return value  # type: ignore[no-any-return]


def _syntax_error(text: str, error: json.JSONDecodeError) -> str:
    """Go's wording for a malformed document, near enough to read the same."""
    if error.pos >= len(text):
        return "unexpected EOF"
    detail = "looking for beginning of value" if error.msg == "Expecting value" else error.msg
    return f"invalid character {text[error.pos]!r} {detail[0].lower()}{detail[1:]}"


def json_kind(value: JsonValue) -> str:
    """How Go's decoder names a JSON value in type errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {json.dumps(value)}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _mismatch(value: JsonValue, where: str, go_type: str) -> ApiError:
    return BAD_REQUEST_BODY.joined(
        f"json: cannot unmarshal {json_kind(value)} into Go struct field {where} of type {go_type}"
    )


def convert(value: JsonValue, go_type: GoType, where: str) -> str | bool | int | float:
    """``value`` as the Go type ``go_type``, or the decoder's error for field ``where``."""
    if go_type == "string":
        if isinstance(value, str):
            return value
    elif go_type == "bool":
        if isinstance(value, bool):
            return value
    elif go_type == "float32":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        low, high = _INT_RANGES[go_type]
        if low <= value <= high:
            return value
    raise _mismatch(value, where, go_type)


def decode_object(
    value: JsonValue, fields: dict[str, GoType], struct: str
) -> dict[str, str | bool | int | float]:
    """The known ``fields`` present (and not null) in JSON object ``value``.

    ``struct`` names the Go type for messages, e.g. ``Proxy`` or ``LatencyToxic.attributes``.
    A ``null`` document decodes to nothing, like Go's decoder into a struct.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        root = struct.split(".", 1)[0]
        raise BAD_REQUEST_BODY.joined(
            f"json: cannot unmarshal {json_kind(value)} into Go value of type toxiproxy.{root}"
        )
    decoded: dict[str, str | bool | int | float] = {}
    folded = {name.lower(): name for name in fields}
    for key, raw in value.items():
        # Go matches keys exactly first, then case-insensitively.
        name = key if key in fields else folded.get(key.lower())
        if name is None or raw is None:
            continue
        decoded[name] = convert(raw, fields[name], f"{struct}.{name}")
    return decoded
