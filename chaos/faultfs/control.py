"""The fault filesystem's control socket: one JSON object per line each way, over a Unix socket.

Owns: serving the commands of ``Faults.command`` (``power_cut`` with ``torn``, ``fsync_error``
with ``path``, ``disk_full`` with ``on``, ``bitrot`` with ``path``, ``status``) on a thread of
the mount's process, and :func:`send`, the client the chaos run and ``quorumlog faultfs`` use.
Must never: act on a malformed line (it answers ``{"error": ...}``) or listen beyond its
socket file.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any, Protocol


class Commands(Protocol):
    def command(self, request: dict[str, Any]) -> dict[str, Any]: ...


def serve(path: Path, target: Commands) -> threading.Thread:
    """Answer commands on ``path`` (a Unix socket) from a daemon thread."""
    if path.exists():
        path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def answer(connection: socket.socket) -> None:
        with connection, connection.makefile("rwb") as stream:
            for line in stream:
                try:
                    request = json.loads(line)
                    reply = (target.command(request) if isinstance(request, dict)
                             else {"error": "a command is a JSON object"})
                except (ValueError, OSError) as error:
                    reply = {"error": f"{type(error).__name__}: {error}"}
                stream.write(json.dumps(reply).encode() + b"\n")
                stream.flush()

    def run() -> None:
        while True:
            connection, _ = server.accept()
            answer(connection)

    thread = threading.Thread(target=run, name="faultfs-control", daemon=True)
    thread.start()
    return thread


def send(path: Path, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """One command's answer (``OSError`` when the mount's process does not answer)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(str(path))
        with client.makefile("rwb") as stream:
            stream.write(json.dumps(request).encode() + b"\n")
            stream.flush()
            line = stream.readline()
    if not line:
        raise OSError(f"no answer on {path}")
    reply: dict[str, Any] = json.loads(line)
    return reply
