"""The base every layer of a node may use: configuration, input limits, TLS material.

Owns: values and pure helpers shared by storage, replication, state, api and process
(``NodeConfig``, ``Limits`` and the errors of validating input, TLS credentials). Must never:
import any other layer of the node; nothing here knows about Raft, RocksDB or gRPC services.
"""
