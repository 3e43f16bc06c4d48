from quorumlog.proto import envelope_pb2 as _envelope_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReceiveMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PEEK_LOCK: _ClassVar[ReceiveMode]
    RECEIVE_AND_DELETE: _ClassVar[ReceiveMode]

class SettleAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPLETE: _ClassVar[SettleAction]
    ABANDON: _ClassVar[SettleAction]
    DEAD_LETTER: _ClassVar[SettleAction]
    DEFER: _ClassVar[SettleAction]
PEEK_LOCK: ReceiveMode
RECEIVE_AND_DELETE: ReceiveMode
COMPLETE: SettleAction
ABANDON: SettleAction
DEAD_LETTER: SettleAction
DEFER: SettleAction

class CreateGroupRequest(_message.Message):
    __slots__ = ("group", "lock_ms", "max_deliveries", "exist_ok")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    LOCK_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    EXIST_OK_FIELD_NUMBER: _ClassVar[int]
    group: str
    lock_ms: int
    max_deliveries: int
    exist_ok: bool
    def __init__(self, group: _Optional[str] = ..., lock_ms: _Optional[int] = ..., max_deliveries: _Optional[int] = ..., exist_ok: _Optional[bool] = ...) -> None: ...

class GroupInfo(_message.Message):
    __slots__ = ("group", "lock_ms", "max_deliveries", "created_ms", "created")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    LOCK_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    group: str
    lock_ms: int
    max_deliveries: int
    created_ms: int
    created: bool
    def __init__(self, group: _Optional[str] = ..., lock_ms: _Optional[int] = ..., max_deliveries: _Optional[int] = ..., created_ms: _Optional[int] = ..., created: _Optional[bool] = ...) -> None: ...

class ReceiveRequest(_message.Message):
    __slots__ = ("session", "group", "token", "max_messages", "max_bytes", "mode", "lock_ms", "wait_ms", "redeliver_in_flight", "deferred_offsets")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    LOCK_MS_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    REDELIVER_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_OFFSETS_FIELD_NUMBER: _ClassVar[int]
    session: str
    group: str
    token: int
    max_messages: int
    max_bytes: int
    mode: ReceiveMode
    lock_ms: int
    wait_ms: int
    redeliver_in_flight: bool
    deferred_offsets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, session: _Optional[str] = ..., group: _Optional[str] = ..., token: _Optional[int] = ..., max_messages: _Optional[int] = ..., max_bytes: _Optional[int] = ..., mode: _Optional[_Union[ReceiveMode, str]] = ..., lock_ms: _Optional[int] = ..., wait_ms: _Optional[int] = ..., redeliver_in_flight: _Optional[bool] = ..., deferred_offsets: _Optional[_Iterable[int]] = ...) -> None: ...

class ReceivedMessage(_message.Message):
    __slots__ = ("offset", "data", "delivery_count", "locked_until_ms", "envelope", "append_time_ms")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOCKED_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    APPEND_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    delivery_count: int
    locked_until_ms: int
    envelope: _envelope_pb2.Envelope
    append_time_ms: int
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., delivery_count: _Optional[int] = ..., locked_until_ms: _Optional[int] = ..., envelope: _Optional[_Union[_envelope_pb2.Envelope, _Mapping]] = ..., append_time_ms: _Optional[int] = ...) -> None: ...

class ReceiveResponse(_message.Message):
    __slots__ = ("session", "group", "messages", "token", "commit_index", "backlog")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    session: str
    group: str
    messages: _containers.RepeatedCompositeFieldContainer[ReceivedMessage]
    token: int
    commit_index: int
    backlog: int
    def __init__(self, session: _Optional[str] = ..., group: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ReceivedMessage, _Mapping]]] = ..., token: _Optional[int] = ..., commit_index: _Optional[int] = ..., backlog: _Optional[int] = ...) -> None: ...

class Settlement(_message.Message):
    __slots__ = ("offset", "delivery_count", "action", "delay_ms", "reason")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    offset: int
    delivery_count: int
    action: SettleAction
    delay_ms: int
    reason: str
    def __init__(self, offset: _Optional[int] = ..., delivery_count: _Optional[int] = ..., action: _Optional[_Union[SettleAction, str]] = ..., delay_ms: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class StateWrite(_message.Message):
    __slots__ = ("expected_version", "data")
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    expected_version: int
    data: bytes
    def __init__(self, expected_version: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class SettleRequest(_message.Message):
    __slots__ = ("session", "group", "token", "settlements", "state")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENTS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    session: str
    group: str
    token: int
    settlements: _containers.RepeatedCompositeFieldContainer[Settlement]
    state: StateWrite
    def __init__(self, session: _Optional[str] = ..., group: _Optional[str] = ..., token: _Optional[int] = ..., settlements: _Optional[_Iterable[_Union[Settlement, _Mapping]]] = ..., state: _Optional[_Union[StateWrite, _Mapping]] = ...) -> None: ...

class MessageLock(_message.Message):
    __slots__ = ("offset", "delivery_count")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    offset: int
    delivery_count: int
    def __init__(self, offset: _Optional[int] = ..., delivery_count: _Optional[int] = ...) -> None: ...

class RenewMessageLockRequest(_message.Message):
    __slots__ = ("session", "group", "token", "locks", "lock_ms")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LOCKS_FIELD_NUMBER: _ClassVar[int]
    LOCK_MS_FIELD_NUMBER: _ClassVar[int]
    session: str
    group: str
    token: int
    locks: _containers.RepeatedCompositeFieldContainer[MessageLock]
    lock_ms: int
    def __init__(self, session: _Optional[str] = ..., group: _Optional[str] = ..., token: _Optional[int] = ..., locks: _Optional[_Iterable[_Union[MessageLock, _Mapping]]] = ..., lock_ms: _Optional[int] = ...) -> None: ...

class RenewMessageLockResponse(_message.Message):
    __slots__ = ("locked_until_ms", "commit_index")
    LOCKED_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    locked_until_ms: _containers.RepeatedScalarFieldContainer[int]
    commit_index: int
    def __init__(self, locked_until_ms: _Optional[_Iterable[int]] = ..., commit_index: _Optional[int] = ...) -> None: ...

class ScheduledMessage(_message.Message):
    __slots__ = ("offset", "deliver_at_ms", "canceled")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DELIVER_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    offset: int
    deliver_at_ms: int
    canceled: bool
    def __init__(self, offset: _Optional[int] = ..., deliver_at_ms: _Optional[int] = ..., canceled: _Optional[bool] = ...) -> None: ...

class ListScheduledRequest(_message.Message):
    __slots__ = ("session", "include_due")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DUE_FIELD_NUMBER: _ClassVar[int]
    session: str
    include_due: bool
    def __init__(self, session: _Optional[str] = ..., include_due: _Optional[bool] = ...) -> None: ...

class ListScheduledResponse(_message.Message):
    __slots__ = ("scheduled", "now_ms")
    SCHEDULED_FIELD_NUMBER: _ClassVar[int]
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    scheduled: _containers.RepeatedCompositeFieldContainer[ScheduledMessage]
    now_ms: int
    def __init__(self, scheduled: _Optional[_Iterable[_Union[ScheduledMessage, _Mapping]]] = ..., now_ms: _Optional[int] = ...) -> None: ...

class CancelScheduledRequest(_message.Message):
    __slots__ = ("session", "offsets")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    session: str
    offsets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, session: _Optional[str] = ..., offsets: _Optional[_Iterable[int]] = ...) -> None: ...

class CancelScheduledResponse(_message.Message):
    __slots__ = ("commit_index",)
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    commit_index: int
    def __init__(self, commit_index: _Optional[int] = ...) -> None: ...

class SettleResponse(_message.Message):
    __slots__ = ("completed", "abandoned", "dead_lettered", "state_version", "commit_index", "deferred")
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    ABANDONED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    completed: int
    abandoned: int
    dead_lettered: int
    state_version: int
    commit_index: int
    deferred: int
    def __init__(self, completed: _Optional[int] = ..., abandoned: _Optional[int] = ..., dead_lettered: _Optional[int] = ..., state_version: _Optional[int] = ..., commit_index: _Optional[int] = ..., deferred: _Optional[int] = ...) -> None: ...

class AcceptSessionRequest(_message.Message):
    __slots__ = ("session", "group", "consumer", "lease_ms", "prefix", "shard")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    session: str
    group: str
    consumer: str
    lease_ms: int
    prefix: str
    shard: int
    def __init__(self, session: _Optional[str] = ..., group: _Optional[str] = ..., consumer: _Optional[str] = ..., lease_ms: _Optional[int] = ..., prefix: _Optional[str] = ..., shard: _Optional[int] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("session", "group", "consumer", "token", "expires_ms", "commit_index")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    session: str
    group: str
    consumer: str
    token: int
    expires_ms: int
    commit_index: int
    def __init__(self, session: _Optional[str] = ..., group: _Optional[str] = ..., consumer: _Optional[str] = ..., token: _Optional[int] = ..., expires_ms: _Optional[int] = ..., commit_index: _Optional[int] = ...) -> None: ...

class RenewLeaseRequest(_message.Message):
    __slots__ = ("session", "group", "token", "lease_ms")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    session: str
    group: str
    token: int
    lease_ms: int
    def __init__(self, session: _Optional[str] = ..., group: _Optional[str] = ..., token: _Optional[int] = ..., lease_ms: _Optional[int] = ...) -> None: ...

class ReleaseSessionRequest(_message.Message):
    __slots__ = ("session", "group", "token")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    session: str
    group: str
    token: int
    def __init__(self, session: _Optional[str] = ..., group: _Optional[str] = ..., token: _Optional[int] = ...) -> None: ...

class ReleaseSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: str
    def __init__(self, session: _Optional[str] = ...) -> None: ...

class SessionState(_message.Message):
    __slots__ = ("session", "version", "data")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    session: str
    version: int
    data: bytes
    def __init__(self, session: _Optional[str] = ..., version: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class SetStateRequest(_message.Message):
    __slots__ = ("session", "group", "token", "state")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    session: str
    group: str
    token: int
    state: StateWrite
    def __init__(self, session: _Optional[str] = ..., group: _Optional[str] = ..., token: _Optional[int] = ..., state: _Optional[_Union[StateWrite, _Mapping]] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("sequence", "offset", "group", "reason", "delivery_count", "dead_lettered_ms", "data", "envelope", "append_time_ms")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_MS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    APPEND_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    offset: int
    group: str
    reason: str
    delivery_count: int
    dead_lettered_ms: int
    data: bytes
    envelope: _envelope_pb2.Envelope
    append_time_ms: int
    def __init__(self, sequence: _Optional[int] = ..., offset: _Optional[int] = ..., group: _Optional[str] = ..., reason: _Optional[str] = ..., delivery_count: _Optional[int] = ..., dead_lettered_ms: _Optional[int] = ..., data: _Optional[bytes] = ..., envelope: _Optional[_Union[_envelope_pb2.Envelope, _Mapping]] = ..., append_time_ms: _Optional[int] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("session", "from_sequence", "limit")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    session: str
    from_sequence: int
    limit: int
    def __init__(self, session: _Optional[str] = ..., from_sequence: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters", "truncated")
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    truncated: bool
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class ResubmitDeadLettersRequest(_message.Message):
    __slots__ = ("session", "sequences")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    session: str
    sequences: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, session: _Optional[str] = ..., sequences: _Optional[_Iterable[int]] = ...) -> None: ...

class ResubmitDeadLettersResponse(_message.Message):
    __slots__ = ("offsets", "remaining")
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    offsets: _containers.RepeatedScalarFieldContainer[int]
    remaining: int
    def __init__(self, offsets: _Optional[_Iterable[int]] = ..., remaining: _Optional[int] = ...) -> None: ...

class PurgeDeadLettersRequest(_message.Message):
    __slots__ = ("session", "sequences")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    session: str
    sequences: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, session: _Optional[str] = ..., sequences: _Optional[_Iterable[int]] = ...) -> None: ...

class PurgeDeadLettersResponse(_message.Message):
    __slots__ = ("purged", "remaining", "commit_index")
    PURGED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    purged: int
    remaining: int
    commit_index: int
    def __init__(self, purged: _Optional[int] = ..., remaining: _Optional[int] = ..., commit_index: _Optional[int] = ...) -> None: ...

class ConfigureSessionRequest(_message.Message):
    __slots__ = ("session", "session_ttl_ms", "message_ttl_ms", "retention_ms", "retention_bytes", "duplicate_window_ms", "dead_letter_expired")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    RETENTION_MS_FIELD_NUMBER: _ClassVar[int]
    RETENTION_BYTES_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    session: str
    session_ttl_ms: int
    message_ttl_ms: int
    retention_ms: int
    retention_bytes: int
    duplicate_window_ms: int
    dead_letter_expired: bool
    def __init__(self, session: _Optional[str] = ..., session_ttl_ms: _Optional[int] = ..., message_ttl_ms: _Optional[int] = ..., retention_ms: _Optional[int] = ..., retention_bytes: _Optional[int] = ..., duplicate_window_ms: _Optional[int] = ..., dead_letter_expired: _Optional[bool] = ...) -> None: ...

class ConfigureSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: str
    def __init__(self, session: _Optional[str] = ...) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GroupStatus(_message.Message):
    __slots__ = ("group", "owner", "lease_expires_ms", "token", "backlog", "in_flight", "next_offset", "first_unsettled")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    FIRST_UNSETTLED_FIELD_NUMBER: _ClassVar[int]
    group: str
    owner: str
    lease_expires_ms: int
    token: int
    backlog: int
    in_flight: int
    next_offset: int
    first_unsettled: int
    def __init__(self, group: _Optional[str] = ..., owner: _Optional[str] = ..., lease_expires_ms: _Optional[int] = ..., token: _Optional[int] = ..., backlog: _Optional[int] = ..., in_flight: _Optional[int] = ..., next_offset: _Optional[int] = ..., first_unsettled: _Optional[int] = ...) -> None: ...

class ConsumerSessionStatus(_message.Message):
    __slots__ = ("session", "groups", "dead_letters", "closed", "session_ttl_ms", "message_ttl_ms", "retention_ms", "retention_bytes", "messages_expired", "duplicate_window_ms", "dead_letter_expired")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    SESSION_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    RETENTION_MS_FIELD_NUMBER: _ClassVar[int]
    RETENTION_BYTES_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    session: str
    groups: _containers.RepeatedCompositeFieldContainer[GroupStatus]
    dead_letters: int
    closed: bool
    session_ttl_ms: int
    message_ttl_ms: int
    retention_ms: int
    retention_bytes: int
    messages_expired: int
    duplicate_window_ms: int
    dead_letter_expired: bool
    def __init__(self, session: _Optional[str] = ..., groups: _Optional[_Iterable[_Union[GroupStatus, _Mapping]]] = ..., dead_letters: _Optional[int] = ..., closed: _Optional[bool] = ..., session_ttl_ms: _Optional[int] = ..., message_ttl_ms: _Optional[int] = ..., retention_ms: _Optional[int] = ..., retention_bytes: _Optional[int] = ..., messages_expired: _Optional[int] = ..., duplicate_window_ms: _Optional[int] = ..., dead_letter_expired: _Optional[bool] = ...) -> None: ...

class ListConsumerSessionsRequest(_message.Message):
    __slots__ = ("prefix", "limit", "start_after", "session", "shard")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    limit: int
    start_after: str
    session: str
    shard: int
    def __init__(self, prefix: _Optional[str] = ..., limit: _Optional[int] = ..., start_after: _Optional[str] = ..., session: _Optional[str] = ..., shard: _Optional[int] = ...) -> None: ...

class ListConsumerSessionsResponse(_message.Message):
    __slots__ = ("sessions", "truncated", "now_ms")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[ConsumerSessionStatus]
    truncated: bool
    now_ms: int
    def __init__(self, sessions: _Optional[_Iterable[_Union[ConsumerSessionStatus, _Mapping]]] = ..., truncated: _Optional[bool] = ..., now_ms: _Optional[int] = ...) -> None: ...
