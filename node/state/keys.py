"""The key map of the state machine's RocksDB: every top-level prefix, its owner, and the
encodings the owners share.

Owns: the top-level prefixes below (their bytes are the on-disk format: never change one),
which of them a snapshot carries, and the shared encodings (``sid``, ``successor``, the
big-endian integers). Must never: encode a value, or import another state module (every
owner imports its prefix from here, so the whole layout is visible in one place).

Raw bytes; integers unsigned big-endian; ``<sid>`` is ``>H`` UTF-8 length then the session
id's UTF-8 bytes, so one session's keys form one contiguous range that no other session's
keys can fall into. The Raft storage owns ``m/`` and ``l/`` of the same database
(``quorumlog.node.storage.raft_store``).

======  ====================================================  ==============================
prefix  what                                                  owner (its docstring: values)
======  ====================================================  ==============================
``A/``  access rules, ACL switch, producer-to-principal        ``acl``
        bindings
``C/``  consumer groups, cursors, leases, dead letters,        ``consumer_records`` (the
        session state, session policies                        ``C/`` sub-key table)
``I/``  admitted incarnations (``I/<node id >Q>``)               ``incarnations``
``S/``  session metadata (``S/<session UTF-8>``)               ``session_records``
``a/``  the applied index, the import-in-progress marker       ``state_machine``
``P/``  shard placement (``P/count``, ``P/<shard >I>``)          ``placement``
``n/``  member records (``n/<node id >Q>``)                     ``members``
``p/``  idempotent producer rings (``p/<sid><producer>``)      ``dedup``
``s/``  messages (``s/<sid><offset >Q>``)                      ``session_records``
======  ====================================================  ==============================
"""

from __future__ import annotations

import struct

ACL_PREFIX = b"A/"
CONSUMER_PREFIX = b"C/"
INCARNATION_PREFIX = b"I/"
PLACEMENT_PREFIX = b"P/"
SESSION_PREFIX = b"S/"
APPLIED_PREFIX = b"a/"
MEMBER_PREFIX = b"n/"
PRODUCER_PREFIX = b"p/"
MESSAGE_PREFIX = b"s/"

APPLIED_KEY = b"a/applied"
IMPORTING_KEY = b"a/importing"

# Every prefix of the state machine, in key order.
STATE_PREFIXES = (
    ACL_PREFIX, CONSUMER_PREFIX, INCARNATION_PREFIX, PLACEMENT_PREFIX, SESSION_PREFIX,
    APPLIED_PREFIX, MEMBER_PREFIX, PRODUCER_PREFIX, MESSAGE_PREFIX,
)
# What a snapshot carries as key/value pairs, in this order (the applied index travels in
# its header, so ``a/`` is not among them).
EXPORTED_PREFIXES = (
    ACL_PREFIX, CONSUMER_PREFIX, INCARNATION_PREFIX, PLACEMENT_PREFIX, SESSION_PREFIX,
    MEMBER_PREFIX, PRODUCER_PREFIX, MESSAGE_PREFIX,
)

U16 = struct.Struct(">H")
U64 = struct.Struct(">Q")


def successor(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        raise ValueError("no key follows an all-0xff prefix")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def sid(session: bytes) -> bytes:
    """A session id as it appears inside a key: ``>H`` length, then the UTF-8 bytes."""
    return U16.pack(len(session)) + session
