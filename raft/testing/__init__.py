"""Test kit of the pure Raft core: an in-memory cluster with a controllable network, the
deterministic simulators (``quorumlog sim``: one group in ``sim``; many groups sharing nodes,
disks and links in ``multisim``) and the golden-trace interpreter.

Owns: driving ``quorumlog.raft`` cores with seeded randomness and no I/O beyond printing.
Must never: import anything of quorumlog outside ``quorumlog.raft``.
"""
