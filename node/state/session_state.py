"""Session state: one opaque, versioned blob per session, written by compare-and-set.

Owns: ``C/x/<sid>`` (``>Q`` version, then the blob; see
``quorumlog.node.state.consumer_records``); applying ``set_state`` and the state write a
settle may carry (atomically with it: validated with the settle, written by it). Must never:
write a blob whose expected version is not the stored one, write one over
``MAX_STATE_BYTES``, or bypass the fencing check of a leased (session, group).
"""

from __future__ import annotations

import rocksdict

from quorumlog.node.common.limits import Limits
from quorumlog.node.state.consumer_overlay import (
    ConsumerBatch,
    SessionView,
    existing_group,
    existing_session,
)
from quorumlog.node.state.consumer_records import (
    STATE_PREFIX,
    Cursor,
    check_state_size,
    cursor_key,
    refuse,
)
from quorumlog.node.state.keys import U64, sid
from quorumlog.node.state.leases import check_token
from quorumlog.node.state.session_policies import touch
from quorumlog.proto import consumer_commands_pb2, consumer_pb2


def check_state_write(
    layer: ConsumerBatch, session: bytes, state: consumer_commands_pb2.StateWrite
) -> int:
    """The new version of a valid compare-and-set state write (refused otherwise)."""
    check_state_size(state.data)
    value = layer.raw_value(STATE_PREFIX + sid(session))
    version = 0 if value is None else U64.unpack_from(value)[0]
    if state.expected_version != version:
        raise refuse(
            f"session state is at version {version}, not {state.expected_version}; "
            "read it again"
        )
    return int(version) + 1


def write_state(layer: ConsumerBatch, session: bytes, version: int, data: bytes) -> None:
    """Store a state write ``check_state_write`` accepted."""
    layer.put(STATE_PREFIX + sid(session), U64.pack(version) + data)


def set_state(
    batch: SessionView,
    layer: ConsumerBatch,
    command: consumer_commands_pb2.SetStateCommand,
    now: int,
    limits: Limits,
) -> consumer_pb2.SessionState:
    session, _, _ = existing_session(batch, command.session, limits)
    existing_group(layer, command.group)
    cursor = layer.cursor(cursor_key(session, command.group.encode("utf-8"))) or Cursor()
    where = f"session {command.session!r} in group {command.group!r}"
    check_token(cursor, command.token, now, where)
    version = check_state_write(layer, session, command.state)
    write_state(layer, session, version, command.state.data)
    touch(layer, session, now)
    return consumer_pb2.SessionState(
        session=command.session, version=version, data=command.state.data
    )


# -- local reads (the applied state) ------------------------------------------------------------
def stored_state(db: rocksdict.Rdict, session: bytes) -> tuple[int, bytes]:
    """(version, blob) of the session's state; (0, b"") when it has none."""
    value = db.get(STATE_PREFIX + sid(session))
    if value is None:
        return 0, b""
    return int(U64.unpack_from(value)[0]), bytes(value[8:])
