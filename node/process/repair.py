"""Repair from the peers: what a node does when its stored data is found damaged.

Owns: the decision (a node with peers repairs; a cluster of one, or a node that repaired
``MAX_REPAIRS`` times in one run, stops instead: its data has no other copy, or something
keeps damaging it) and the one file operation: the damaged database is renamed aside
(``db.damaged-<unix time>``, kept for inspection, never read again) and the data directory
fsynced, so the node starts again on an empty database. It then has a new incarnation: its
peers count none of its votes until it has caught up from them and been admitted again
(``quorumlog.node.replication.incarnations``), so nothing it may have acknowledged or voted
for is lost. Must never: delete the damaged files, or repair a node that has no peer.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from quorumlog.node.common.config import NodeConfig
from quorumlog.node.storage.engine import DB_DIR, fsync_directory

log = logging.getLogger("quorumlog.repair")

MAX_REPAIRS = 3  # per process: more means something keeps damaging the disk


def can_repair(config: NodeConfig, repairs: int) -> str | None:
    """Why the node must stop instead of repairing (None: it may repair)."""
    if len([name for name in config.peers if name != config.name]) == 0 and not config.join:
        return "no peer holds another copy (a cluster of one)"
    if repairs >= MAX_REPAIRS:
        return f"the data was found damaged {repairs} times in this run"
    return None


def set_aside(data_dir: Path) -> Path:
    """Rename the damaged database out of the way (durably); the new path."""
    damaged = data_dir / f"{DB_DIR}.damaged-{int(time.time() * 1000)}"
    os.rename(data_dir / DB_DIR, damaged)
    fsync_directory(data_dir)
    return damaged
