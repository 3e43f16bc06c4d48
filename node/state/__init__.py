"""The replicated state machine: committed entries in, sessions, consumer groups, leases,
session state, dead letters and ACL rules out.

Owns: every key of the node's RocksDB outside the Raft log, and the determinism promise
(the same entries give the same bytes on every node). Must never: do network I/O, read a
clock (time comes stamped in the entries), or import the API or process layers.
"""
