from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateGroupCommand(_message.Message):
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

class ReceiveCommand(_message.Message):
    __slots__ = ("session", "group", "token", "max_messages", "max_bytes", "receive_and_delete", "lock_ms", "redeliver_own", "deferred")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_AND_DELETE_FIELD_NUMBER: _ClassVar[int]
    LOCK_MS_FIELD_NUMBER: _ClassVar[int]
    REDELIVER_OWN_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    session: str
    group: str
    token: int
    max_messages: int
    max_bytes: int
    receive_and_delete: bool
    lock_ms: int
    redeliver_own: bool
    deferred: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, session: _Optional[str] = ..., group: _Optional[str] = ..., token: _Optional[int] = ..., max_messages: _Optional[int] = ..., max_bytes: _Optional[int] = ..., receive_and_delete: _Optional[bool] = ..., lock_ms: _Optional[int] = ..., redeliver_own: _Optional[bool] = ..., deferred: _Optional[_Iterable[int]] = ...) -> None: ...

class Settlement(_message.Message):
    __slots__ = ("offset", "delivery_count", "action", "delay_ms", "reason")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    offset: int
    delivery_count: int
    action: int
    delay_ms: int
    reason: str
    def __init__(self, offset: _Optional[int] = ..., delivery_count: _Optional[int] = ..., action: _Optional[int] = ..., delay_ms: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class LockRenewal(_message.Message):
    __slots__ = ("offset", "delivery_count")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    offset: int
    delivery_count: int
    def __init__(self, offset: _Optional[int] = ..., delivery_count: _Optional[int] = ...) -> None: ...

class RenewLocksCommand(_message.Message):
    __slots__ = ("session", "group", "token", "locks", "lock_ms")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LOCKS_FIELD_NUMBER: _ClassVar[int]
    LOCK_MS_FIELD_NUMBER: _ClassVar[int]
    session: str
    group: str
    token: int
    locks: _containers.RepeatedCompositeFieldContainer[LockRenewal]
    lock_ms: int
    def __init__(self, session: _Optional[str] = ..., group: _Optional[str] = ..., token: _Optional[int] = ..., locks: _Optional[_Iterable[_Union[LockRenewal, _Mapping]]] = ..., lock_ms: _Optional[int] = ...) -> None: ...

class StateWrite(_message.Message):
    __slots__ = ("expected_version", "data")
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    expected_version: int
    data: bytes
    def __init__(self, expected_version: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class SettleCommand(_message.Message):
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

class AcceptCommand(_message.Message):
    __slots__ = ("session", "group", "consumer", "lease_ms", "prefix")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    session: str
    group: str
    consumer: str
    lease_ms: int
    prefix: str
    def __init__(self, session: _Optional[str] = ..., group: _Optional[str] = ..., consumer: _Optional[str] = ..., lease_ms: _Optional[int] = ..., prefix: _Optional[str] = ...) -> None: ...

class RenewCommand(_message.Message):
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

class ReleaseCommand(_message.Message):
    __slots__ = ("session", "group", "token")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    session: str
    group: str
    token: int
    def __init__(self, session: _Optional[str] = ..., group: _Optional[str] = ..., token: _Optional[int] = ...) -> None: ...

class SetStateCommand(_message.Message):
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

class ResubmitCommand(_message.Message):
    __slots__ = ("session", "sequences", "principal")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    session: str
    sequences: _containers.RepeatedScalarFieldContainer[int]
    principal: str
    def __init__(self, session: _Optional[str] = ..., sequences: _Optional[_Iterable[int]] = ..., principal: _Optional[str] = ...) -> None: ...

class PurgeCommand(_message.Message):
    __slots__ = ("session", "sequences")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    session: str
    sequences: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, session: _Optional[str] = ..., sequences: _Optional[_Iterable[int]] = ...) -> None: ...

class ConfigureSessionCommand(_message.Message):
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

class CloseSessionCommand(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: str
    def __init__(self, session: _Optional[str] = ...) -> None: ...

class SweepCommand(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConsumerCommand(_message.Message):
    __slots__ = ("create_group", "receive", "settle", "accept", "renew", "release", "set_state", "resubmit", "configure", "close", "sweep", "renew_locks", "cancel_scheduled", "purge")
    CREATE_GROUP_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_FIELD_NUMBER: _ClassVar[int]
    SETTLE_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    RENEW_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    SET_STATE_FIELD_NUMBER: _ClassVar[int]
    RESUBMIT_FIELD_NUMBER: _ClassVar[int]
    CONFIGURE_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    RENEW_LOCKS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_SCHEDULED_FIELD_NUMBER: _ClassVar[int]
    PURGE_FIELD_NUMBER: _ClassVar[int]
    create_group: CreateGroupCommand
    receive: ReceiveCommand
    settle: SettleCommand
    accept: AcceptCommand
    renew: RenewCommand
    release: ReleaseCommand
    set_state: SetStateCommand
    resubmit: ResubmitCommand
    configure: ConfigureSessionCommand
    close: CloseSessionCommand
    sweep: SweepCommand
    renew_locks: RenewLocksCommand
    cancel_scheduled: CancelScheduledCommand
    purge: PurgeCommand
    def __init__(self, create_group: _Optional[_Union[CreateGroupCommand, _Mapping]] = ..., receive: _Optional[_Union[ReceiveCommand, _Mapping]] = ..., settle: _Optional[_Union[SettleCommand, _Mapping]] = ..., accept: _Optional[_Union[AcceptCommand, _Mapping]] = ..., renew: _Optional[_Union[RenewCommand, _Mapping]] = ..., release: _Optional[_Union[ReleaseCommand, _Mapping]] = ..., set_state: _Optional[_Union[SetStateCommand, _Mapping]] = ..., resubmit: _Optional[_Union[ResubmitCommand, _Mapping]] = ..., configure: _Optional[_Union[ConfigureSessionCommand, _Mapping]] = ..., close: _Optional[_Union[CloseSessionCommand, _Mapping]] = ..., sweep: _Optional[_Union[SweepCommand, _Mapping]] = ..., renew_locks: _Optional[_Union[RenewLocksCommand, _Mapping]] = ..., cancel_scheduled: _Optional[_Union[CancelScheduledCommand, _Mapping]] = ..., purge: _Optional[_Union[PurgeCommand, _Mapping]] = ...) -> None: ...

class GroupRecord(_message.Message):
    __slots__ = ("group", "lock_ms", "max_deliveries", "created_ms")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    LOCK_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    group: str
    lock_ms: int
    max_deliveries: int
    created_ms: int
    def __init__(self, group: _Optional[str] = ..., lock_ms: _Optional[int] = ..., max_deliveries: _Optional[int] = ..., created_ms: _Optional[int] = ...) -> None: ...

class SessionPolicy(_message.Message):
    __slots__ = ("session_ttl_ms", "message_ttl_ms", "retention_ms", "retention_bytes", "closed", "next_dead_letter", "dead_letters", "last_activity_ms", "duplicate_window_ms", "dead_letter_expired", "messages_expired", "timed")
    SESSION_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    RETENTION_MS_FIELD_NUMBER: _ClassVar[int]
    RETENTION_BYTES_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    NEXT_DEAD_LETTER_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_MS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    TIMED_FIELD_NUMBER: _ClassVar[int]
    session_ttl_ms: int
    message_ttl_ms: int
    retention_ms: int
    retention_bytes: int
    closed: bool
    next_dead_letter: int
    dead_letters: int
    last_activity_ms: int
    duplicate_window_ms: int
    dead_letter_expired: bool
    messages_expired: int
    timed: bool
    def __init__(self, session_ttl_ms: _Optional[int] = ..., message_ttl_ms: _Optional[int] = ..., retention_ms: _Optional[int] = ..., retention_bytes: _Optional[int] = ..., closed: _Optional[bool] = ..., next_dead_letter: _Optional[int] = ..., dead_letters: _Optional[int] = ..., last_activity_ms: _Optional[int] = ..., duplicate_window_ms: _Optional[int] = ..., dead_letter_expired: _Optional[bool] = ..., messages_expired: _Optional[int] = ..., timed: _Optional[bool] = ...) -> None: ...

class CancelScheduledCommand(_message.Message):
    __slots__ = ("session", "offsets")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    session: str
    offsets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, session: _Optional[str] = ..., offsets: _Optional[_Iterable[int]] = ...) -> None: ...

class DeadLetterRecord(_message.Message):
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
    envelope: bytes
    append_time_ms: int
    def __init__(self, sequence: _Optional[int] = ..., offset: _Optional[int] = ..., group: _Optional[str] = ..., reason: _Optional[str] = ..., delivery_count: _Optional[int] = ..., dead_lettered_ms: _Optional[int] = ..., data: _Optional[bytes] = ..., envelope: _Optional[bytes] = ..., append_time_ms: _Optional[int] = ...) -> None: ...
