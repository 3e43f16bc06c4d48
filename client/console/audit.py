"""The console's audit log: one JSON line per action a user asked for, and how it ended.

Owns: the line (``ts``, ``principal`` — the login's subject, or ``console`` when the console
acts with its own identity — ``remote``, ``action``, ``session``, ``details``, ``outcome``:
``OK`` or the error's gRPC status name) written to the logger ``quorumlog.console.audit`` and,
with ``--audit-log FILE``, appended to that file and fsynced. The cluster audits its own manage
calls as well (the node's ``--audit-log``). Must never: write message bodies or tokens, or fail
the action it records (a write error is logged once and otherwise ignored).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("quorumlog.console.audit")


class ActionAudit:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._write_failed = False

    def record(self, *, principal: str, remote: str, action: str, session: str,
               details: dict[str, Any], outcome: str) -> dict[str, Any]:
        line = {
            "ts": round(time.time(), 3),
            "principal": principal or "console",
            "remote": remote,
            "action": action,
            "session": session,
            "details": details,
            "outcome": outcome,
        }
        text = json.dumps(line, sort_keys=True)
        log.info("%s", text)
        if self.path is not None:
            self._append(text)
        return line

    def _append(self, text: str) -> None:
        assert self.path is not None
        try:
            with self._lock, open(self.path, "a", encoding="utf-8") as file:
                file.write(text + "\n")
                file.flush()
                os.fsync(file.fileno())
        except OSError as error:
            if not self._write_failed:
                self._write_failed = True
                log.error("cannot write the audit log %s: %s", self.path, error)
