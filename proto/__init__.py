"""quorumlog wire protocol: the standalone .proto files and their generated Python code.

Sources: ``quorumlog/v1/`` (the client API, package ``quorumlog.v1``), ``quorumlog/commands/v1/``
(replicated commands) and ``quorumlog/raft/v1/`` (the peer protocol), importing each other
relative to this folder, so ``protoc -Iproto`` compiles them anywhere. Generated modules sit
flat here as ``quorumlog.proto.<name>_pb2`` (``generate.py``).
"""
