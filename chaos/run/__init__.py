"""The chaos run: nodes behind proxies, a seeded nemesis, a recorded workload, a checker and
an HTML report (``quorumlog chaos run`` / ``quorumlog chaos check``).

Owns: the run's sequence, its history format and its verdict. Must never: import the node's
internals; it talks to nodes only through the SDK, the proxies and the local-cluster launcher.
"""
