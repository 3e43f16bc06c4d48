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
from quorumlog.node.state import placement
from quorumlog.node.state.state_machine import SessionStateMachine
from quorumlog.node.storage.backup_file import BackupHeader, read_backup
from quorumlog.node.storage.engine import DB_DIR, StorageEngine, fsync_directory
from quorumlog.node.storage.raft_store import RocksStorage, log_options
from quorumlog.proto import backup_bundle
from quorumlog.raft.types import ConfState, HardState, Snapshot, SnapshotMetadata


class RestoreError(ValueError):
    """The restore cannot proceed; nothing was written at the target."""


@dataclass(frozen=True, slots=True)
class Restored:
    header: BackupHeader
    index: int  # the new cluster's founding snapshot index (the backup's applied index)
    voters: tuple[str, ...]


def restore_data_dir(backup: Path, data_dir: Path, peers: dict[str, str]) -> Restored:
    if backup_bundle.format_version(backup) == backup_bundle.BUNDLE_VERSION:
        return _restore_bundle(backup, data_dir, peers)
    header, chunks = read_backup(backup)
    staging = _staging(data_dir)
    try:
        voters = tuple(sorted(raft_id(name) for name in peers))
        with RocksStorage(staging / DB_DIR) as storage:
            state_machine = SessionStateMachine(storage)
            state_machine.import_state(chunks)
            state_machine.forget_incarnations()  # the old cluster's disks, not these
            state_machine.seed_members(records_from_peers(peers, voters))
            index = max(1, state_machine.applied_index())
            _found(storage, index, voters)
        if data_dir.exists():
            data_dir.rmdir()
        staging.rename(data_dir)
        fsync_directory(data_dir.parent)  # the restored directory's entry, durable
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Restored(header, index, tuple(sorted(peers)))


def _staging(data_dir: Path) -> Path:
    """An empty staging directory beside ``data_dir`` (renamed into place at the end);
    refuses a ``data_dir`` that holds data or whose parent does not exist."""
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise RestoreError(f"--data-dir {data_dir} already holds data; restore into a new one")
    if not data_dir.parent.is_dir():
        raise RestoreError(f"--data-dir {data_dir}: {data_dir.parent} does not exist")
    staging = data_dir.with_name(f".{data_dir.name}.restoring-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def _found(storage: RocksStorage, index: int, voters: tuple[int, ...]) -> None:
    """The founding snapshot of a restored group: at ``index``, term 1, ``voters``."""
    batch = storage.batch()
    batch.apply_snapshot(Snapshot(SnapshotMetadata(index, 1, ConfState(voters)), b""))
    batch.set_hard_state(HardState(term=1, vote=0, commit=index))
    storage.write(batch, sync=True)


def _restore_bundle(backup: Path, data_dir: Path, peers: dict[str, str]) -> Restored:
    """A sharded cluster's backup: the meta group's state with a new placement of the
    shards over ``--peers`` (the same on every member restored from the same file with the
    same ``--peers``; host tags are not known here: ``cluster balance`` and the placement
    rule's rotation spread leaders), and the state of every shard this node is placed on,
    each founded at its own backup index."""
    bundle = backup_bundle.read_bundle(backup)
    staging = _staging(data_dir)
    meta_header: BackupHeader | None = None
    try:
        voters = tuple(sorted(raft_id(name) for name in peers))
        placed = placement.place(bundle.shards, list(voters), {})
        staging.mkdir()
        section_file = staging / "section.qlbackup"
        engine = StorageEngine(staging / DB_DIR, log_options(staging / DB_DIR))
        try:
            for section in bundle.sections:
                header, chunks = read_backup(
                    backup_bundle.extract_section(backup, section, section_file))
                if section.section == "meta":
                    meta_header = header
                    storage = RocksStorage(engine.path, engine=engine, group=0)
                    state_machine = SessionStateMachine(storage)
                    state_machine.import_state(chunks)
                    state_machine.forget_incarnations()  # the old cluster's disks
                    state_machine.seed_members(records_from_peers(peers, voters))
                    state_machine.seed_placement(bundle.shards, placed)
                    index = max(1, state_machine.applied_index())
                    _found(storage, index, voters)
                    continue
                shard = placed[int(section.section.split()[1])]
                replicas = tuple(sorted(shard.replicas))
                storage = RocksStorage(engine.path, engine=engine, group=shard.group)
                state_machine = SessionStateMachine(storage)
                # Every shard is written (restore does not know which member this is); a
                # member opens only the shards the placement gives it.
                state_machine.import_state(chunks)
                state_machine.forget_incarnations()
                _found(storage, max(1, state_machine.applied_index()), replicas)
        finally:
            engine.close()
        section_file.unlink(missing_ok=True)
        if data_dir.exists():
            data_dir.rmdir()
        staging.rename(data_dir)
        fsync_directory(data_dir.parent)  # the restored directory's entry, durable
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    assert meta_header is not None  # read_bundle checked the meta section comes first
    return Restored(meta_header, max(1, meta_header.applied_index), tuple(sorted(peers)))
