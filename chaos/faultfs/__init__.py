"""A fault-injecting filesystem for the chaos harness (FUSE, libfuse 3 through mfusepy).

Owns: ``model.py`` (what a power cut keeps), ``fs.py`` (the pass-through mount and its
faults), ``control.py`` (the control socket). Must never: know about quorumlog's nodes; it is
a general storage-fault tool (``quorumlog faultfs``, docs/operations.md#fault-filesystem).
"""
