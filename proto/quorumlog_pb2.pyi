from quorumlog.proto import envelope_pb2 as _envelope_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Consistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINEARIZABLE: _ClassVar[Consistency]
    FOLLOWER: _ClassVar[Consistency]
LINEARIZABLE: Consistency
FOLLOWER: Consistency

class AppendRequest(_message.Message):
    __slots__ = ("session", "messages", "producer_id", "sequence", "envelopes")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    session: str
    messages: _containers.RepeatedScalarFieldContainer[bytes]
    producer_id: str
    sequence: int
    envelopes: _containers.RepeatedCompositeFieldContainer[_envelope_pb2.Envelope]
    def __init__(self, session: _Optional[str] = ..., messages: _Optional[_Iterable[bytes]] = ..., producer_id: _Optional[str] = ..., sequence: _Optional[int] = ..., envelopes: _Optional[_Iterable[_Union[_envelope_pb2.Envelope, _Mapping]]] = ...) -> None: ...

class AppendResponse(_message.Message):
    __slots__ = ("session", "first_offset", "count", "commit_index", "duplicate", "offsets", "duplicate_positions")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    FIRST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    session: str
    first_offset: int
    count: int
    commit_index: int
    duplicate: bool
    offsets: _containers.RepeatedScalarFieldContainer[int]
    duplicate_positions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, session: _Optional[str] = ..., first_offset: _Optional[int] = ..., count: _Optional[int] = ..., commit_index: _Optional[int] = ..., duplicate: _Optional[bool] = ..., offsets: _Optional[_Iterable[int]] = ..., duplicate_positions: _Optional[_Iterable[int]] = ...) -> None: ...

class AppendBatchRequest(_message.Message):
    __slots__ = ("appends",)
    APPENDS_FIELD_NUMBER: _ClassVar[int]
    appends: _containers.RepeatedCompositeFieldContainer[AppendRequest]
    def __init__(self, appends: _Optional[_Iterable[_Union[AppendRequest, _Mapping]]] = ...) -> None: ...

class AppendOutcome(_message.Message):
    __slots__ = ("result", "code", "message", "leader_id", "leader_addr", "shard")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDR_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    result: AppendResponse
    code: int
    message: str
    leader_id: str
    leader_addr: str
    shard: int
    def __init__(self, result: _Optional[_Union[AppendResponse, _Mapping]] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., leader_id: _Optional[str] = ..., leader_addr: _Optional[str] = ..., shard: _Optional[int] = ...) -> None: ...

class AppendBatchResponse(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[AppendOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[AppendOutcome, _Mapping]]] = ...) -> None: ...

class AppendStreamRequest(_message.Message):
    __slots__ = ("id", "batch", "timeout_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    id: int
    batch: AppendBatchRequest
    timeout_ms: int
    def __init__(self, id: _Optional[int] = ..., batch: _Optional[_Union[AppendBatchRequest, _Mapping]] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class AppendStreamResponse(_message.Message):
    __slots__ = ("id", "batch", "code", "message", "leader_id", "leader_addr")
    ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDR_FIELD_NUMBER: _ClassVar[int]
    id: int
    batch: AppendBatchResponse
    code: int
    message: str
    leader_id: str
    leader_addr: str
    def __init__(self, id: _Optional[int] = ..., batch: _Optional[_Union[AppendBatchResponse, _Mapping]] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., leader_id: _Optional[str] = ..., leader_addr: _Optional[str] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("session", "from_offset", "max_count", "max_bytes", "consistency")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    FROM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    MAX_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    session: str
    from_offset: int
    max_count: int
    max_bytes: int
    consistency: Consistency
    def __init__(self, session: _Optional[str] = ..., from_offset: _Optional[int] = ..., max_count: _Optional[int] = ..., max_bytes: _Optional[int] = ..., consistency: _Optional[_Union[Consistency, str]] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("offset", "data", "envelope", "append_time_ms")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    APPEND_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    envelope: _envelope_pb2.Envelope
    append_time_ms: int
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., envelope: _Optional[_Union[_envelope_pb2.Envelope, _Mapping]] = ..., append_time_ms: _Optional[int] = ...) -> None: ...

class ReadResponse(_message.Message):
    __slots__ = ("session", "records", "next_offset", "first_offset", "end_offset")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    FIRST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    END_OFFSET_FIELD_NUMBER: _ClassVar[int]
    session: str
    records: _containers.RepeatedCompositeFieldContainer[Record]
    next_offset: int
    first_offset: int
    end_offset: int
    def __init__(self, session: _Optional[str] = ..., records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ..., next_offset: _Optional[int] = ..., first_offset: _Optional[int] = ..., end_offset: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("session", "from_offset", "max_batch")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    FROM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    session: str
    from_offset: int
    max_batch: int
    def __init__(self, session: _Optional[str] = ..., from_offset: _Optional[int] = ..., max_batch: _Optional[int] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("session", "first_offset", "next_offset", "count", "bytes", "created_ms", "last_append_ms")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    FIRST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_APPEND_MS_FIELD_NUMBER: _ClassVar[int]
    session: str
    first_offset: int
    next_offset: int
    count: int
    bytes: int
    created_ms: int
    last_append_ms: int
    def __init__(self, session: _Optional[str] = ..., first_offset: _Optional[int] = ..., next_offset: _Optional[int] = ..., count: _Optional[int] = ..., bytes: _Optional[int] = ..., created_ms: _Optional[int] = ..., last_append_ms: _Optional[int] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("prefix", "limit", "start_after", "consistency", "shard")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    limit: int
    start_after: str
    consistency: Consistency
    shard: int
    def __init__(self, prefix: _Optional[str] = ..., limit: _Optional[int] = ..., start_after: _Optional[str] = ..., consistency: _Optional[_Union[Consistency, str]] = ..., shard: _Optional[int] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "truncated")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[SessionInfo]
    truncated: bool
    def __init__(self, sessions: _Optional[_Iterable[_Union[SessionInfo, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class DescribeSessionRequest(_message.Message):
    __slots__ = ("session", "consistency")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    session: str
    consistency: Consistency
    def __init__(self, session: _Optional[str] = ..., consistency: _Optional[_Union[Consistency, str]] = ...) -> None: ...

class TrimSessionRequest(_message.Message):
    __slots__ = ("session", "before_offset")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    BEFORE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    session: str
    before_offset: int
    def __init__(self, session: _Optional[str] = ..., before_offset: _Optional[int] = ...) -> None: ...

class TrimSessionResponse(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: SessionInfo
    def __init__(self, info: _Optional[_Union[SessionInfo, _Mapping]] = ...) -> None: ...

class DeleteSessionRequest(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: str
    def __init__(self, session: _Optional[str] = ...) -> None: ...

class DeleteSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Member(_message.Message):
    __slots__ = ("id", "client_address", "peer_address", "voter", "learner")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VOTER_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    id: str
    client_address: str
    peer_address: str
    voter: bool
    learner: bool
    def __init__(self, id: _Optional[str] = ..., client_address: _Optional[str] = ..., peer_address: _Optional[str] = ..., voter: _Optional[bool] = ..., learner: _Optional[bool] = ...) -> None: ...

class FollowerProgress(_message.Message):
    __slots__ = ("id", "match_index", "next_index", "state", "learner", "lag", "last_contact_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    MATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    NEXT_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    LAST_CONTACT_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    match_index: int
    next_index: int
    state: str
    learner: bool
    lag: int
    last_contact_ms: int
    def __init__(self, id: _Optional[str] = ..., match_index: _Optional[int] = ..., next_index: _Optional[int] = ..., state: _Optional[str] = ..., learner: _Optional[bool] = ..., lag: _Optional[int] = ..., last_contact_ms: _Optional[int] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("id", "address", "role", "term", "leader", "commit_index", "applied_index", "last_index", "pid", "members", "first_index", "snapshot_index", "followers", "shard_count", "shards", "host_tag", "metrics_address")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    FIRST_INDEX_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    FOLLOWERS_FIELD_NUMBER: _ClassVar[int]
    SHARD_COUNT_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    HOST_TAG_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    role: str
    term: int
    leader: str
    commit_index: int
    applied_index: int
    last_index: int
    pid: int
    members: _containers.RepeatedCompositeFieldContainer[Member]
    first_index: int
    snapshot_index: int
    followers: _containers.RepeatedCompositeFieldContainer[FollowerProgress]
    shard_count: int
    shards: _containers.RepeatedCompositeFieldContainer[ShardStatus]
    host_tag: str
    metrics_address: str
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., role: _Optional[str] = ..., term: _Optional[int] = ..., leader: _Optional[str] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., last_index: _Optional[int] = ..., pid: _Optional[int] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., first_index: _Optional[int] = ..., snapshot_index: _Optional[int] = ..., followers: _Optional[_Iterable[_Union[FollowerProgress, _Mapping]]] = ..., shard_count: _Optional[int] = ..., shards: _Optional[_Iterable[_Union[ShardStatus, _Mapping]]] = ..., host_tag: _Optional[str] = ..., metrics_address: _Optional[str] = ...) -> None: ...

class ShardStatus(_message.Message):
    __slots__ = ("shard", "group", "replicas", "leader", "leader_address", "role", "term", "commit_index", "applied_index", "last_index", "max_lag", "sessions", "followers")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    MAX_LAG_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    FOLLOWERS_FIELD_NUMBER: _ClassVar[int]
    shard: int
    group: int
    replicas: _containers.RepeatedScalarFieldContainer[str]
    leader: str
    leader_address: str
    role: str
    term: int
    commit_index: int
    applied_index: int
    last_index: int
    max_lag: int
    sessions: int
    followers: _containers.RepeatedCompositeFieldContainer[FollowerProgress]
    def __init__(self, shard: _Optional[int] = ..., group: _Optional[int] = ..., replicas: _Optional[_Iterable[str]] = ..., leader: _Optional[str] = ..., leader_address: _Optional[str] = ..., role: _Optional[str] = ..., term: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., last_index: _Optional[int] = ..., max_lag: _Optional[int] = ..., sessions: _Optional[int] = ..., followers: _Optional[_Iterable[_Union[FollowerProgress, _Mapping]]] = ...) -> None: ...
