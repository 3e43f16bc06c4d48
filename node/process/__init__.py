"""The process layer of a node: wiring storage, replication, state and services into one
server process, with its security settings, metrics, memory and CPU settings, housekeeping
and data-directory restore.

Owns: start-up and shutdown order. Everything below it is importable without it.
"""
