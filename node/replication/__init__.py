"""Replication layer of a node: the asyncio Raft driver around the pure core, the peer
transport, the peer codec and membership.

Owns: turning the core's ``Ready`` into fsynced writes, sent messages and applied entries,
in the order the core's contract gives. Must never: import the state machine's modules (it
applies entries through the ``StateMachine`` protocol it defines), the API or the process.
"""
