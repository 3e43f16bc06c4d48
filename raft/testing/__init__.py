"""Test kit of the pure Raft core: an in-memory cluster with a controllable network, the
deterministic simulator (``quorumlog sim``) and the golden-trace interpreter.

Owns: driving ``quorumlog.raft`` cores with seeded randomness and no I/O beyond printing.
Must never: import anything of quorumlog outside ``quorumlog.raft``.
"""
