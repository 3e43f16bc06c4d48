"""The audit log of manage operations (and of the consumer calls that change a dead-letter
log for good: resubmit, purge): who asked what, from where, and how it ended.

Owns: one JSON line per audited call (``ts``, ``node``, ``principal``, ``method``, ``peer``,
``request`` — the request in protobuf text form, cut at ``MAX_REQUEST_CHARS`` — and
``outcome``: ``OK`` or the gRPC status name), written to the logger ``quorumlog.audit`` (the
node's JSON log) and, with ``--audit-log FILE``, appended to that file as well. Must never:
write message payloads beyond the cut, tokens or key material, or fail the call it records
(a write error is reported once on the node log and otherwise ignored).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from google.protobuf import text_format

MAX_REQUEST_CHARS = 512

log = logging.getLogger("quorumlog.audit")


class AuditLog:
    def __init__(self, node: str, path: Path | None = None) -> None:
        self.node = node
        self.path = path
        self._lock = threading.Lock()
        self._failed = False

    def record(
        self, *, principal: str, method: str, peer: str, request: Any, outcome: str
    ) -> dict[str, Any]:
        try:
            text = text_format.MessageToString(request, as_one_line=True) if request else ""
        except Exception:  # not a message (a streaming request): no body to show
            text = ""
        entry: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "node": self.node,
            "principal": principal,
            "method": method,
            "peer": peer,
            "request": text[:MAX_REQUEST_CHARS],
            "outcome": outcome,
        }
        line = json.dumps(entry, ensure_ascii=False)
        log.info("audit %s", line)
        if self.path is not None:
            try:
                with self._lock, self.path.open("a", encoding="utf-8") as out:
                    out.write(line + "\n")
                    out.flush()
                    os.fsync(out.fileno())  # manage operations are rare: each one durable
            except OSError as error:
                if not self._failed:
                    self._failed = True
                    log.error("cannot write audit log %s: %s", self.path, error)
        return entry
