"""Seeding a new node's data directory from a backup file (``quorumlog restore``).

Owns: turning a verified backup into a data directory a node starts from as a founding
member of a *new* cluster: the state machine imported from the backup, member records and
the Raft founding snapshot (at the backup's index, term 1, voters from ``--peers``) replacing
the old cluster's. Every member restored from the same file with the same ``--peers`` gets
the same bytes, so they agree from their first entry. Must never: write into a directory
that already holds anything, or leave a half-restored directory at the target path (it is
built next to it and renamed into place when complete).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from quorumlog.node.common.config import raft_id
from quorumlog.node.replication.membership import records_from_peers
from quorumlog.node.state.state_machine import SessionStateMachine
from quorumlog.node.storage.backup_file import BackupHeader, read_backup
from quorumlog.node.storage.raft_store import RocksStorage
from quorumlog.raft.types import ConfState, HardState, Snapshot, SnapshotMetadata

DB_DIR = "db"  # the node keeps its RocksDB in <data dir>/db (``NodeServer.start``)


class RestoreError(ValueError):
    """The restore cannot proceed; nothing was written at the target."""


@dataclass(frozen=True, slots=True)
class Restored:
    header: BackupHeader
    index: int  # the new cluster's founding snapshot index (the backup's applied index)
    voters: tuple[str, ...]


def restore_data_dir(backup: Path, data_dir: Path, peers: dict[str, str]) -> Restored:
    header, chunks = read_backup(backup)
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise RestoreError(f"--data-dir {data_dir} already holds data; restore into a new one")
    if not data_dir.parent.is_dir():
        raise RestoreError(f"--data-dir {data_dir}: {data_dir.parent} does not exist")
    staging = data_dir.with_name(f".{data_dir.name}.restoring-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        voters = tuple(sorted(raft_id(name) for name in peers))
        with RocksStorage(staging / DB_DIR) as storage:
            state_machine = SessionStateMachine(storage)
            state_machine.import_state(chunks)
            state_machine.seed_members(records_from_peers(peers, voters))
            index = max(1, state_machine.applied_index())
            batch = storage.batch()
            batch.apply_snapshot(
                Snapshot(SnapshotMetadata(index, 1, ConfState(voters)), b"")
            )
            batch.set_hard_state(HardState(term=1, vote=0, commit=index))
            storage.write(batch, sync=True)
        if data_dir.exists():
            data_dir.rmdir()
        staging.rename(data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Restored(header, index, tuple(sorted(peers)))
