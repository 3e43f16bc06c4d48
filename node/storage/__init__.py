"""Storage layer of a node: the durable Raft log, hard state and snapshots in RocksDB, and
the backup file format.

Owns: bytes on disk and their layout (documented at the top of each module). Must never:
import replication, the state machine, the API or the process layer.
"""
