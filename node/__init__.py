"""quorumlog node: one server process, in layers (docs/architecture.md, "Layers").

``process`` (wiring, metrics, settings) → ``api`` (gRPC services and interceptors) → ``state``
(the replicated state machine) → ``replication`` (Raft driver, transport, membership) →
``storage`` (RocksDB log store, backup file), all on ``common`` (config, limits, TLS). Imports
only go down that list (tests/test_layering.py).
"""
