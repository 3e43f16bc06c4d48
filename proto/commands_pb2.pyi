from quorumlog.proto import consumer_commands_pb2 as _consumer_commands_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AppendCommand(_message.Message):
    __slots__ = ("session", "messages", "producer_id", "sequence", "principal", "envelopes")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    session: str
    messages: _containers.RepeatedScalarFieldContainer[bytes]
    producer_id: str
    sequence: int
    principal: str
    envelopes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, session: _Optional[str] = ..., messages: _Optional[_Iterable[bytes]] = ..., producer_id: _Optional[str] = ..., sequence: _Optional[int] = ..., principal: _Optional[str] = ..., envelopes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class TrimCommand(_message.Message):
    __slots__ = ("session", "before_offset")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    BEFORE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    session: str
    before_offset: int
    def __init__(self, session: _Optional[str] = ..., before_offset: _Optional[int] = ...) -> None: ...

class DeleteSessionCommand(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: str
    def __init__(self, session: _Optional[str] = ...) -> None: ...

class AclRule(_message.Message):
    __slots__ = ("principal", "verb", "prefix")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    VERB_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    principal: str
    verb: str
    prefix: str
    def __init__(self, principal: _Optional[str] = ..., verb: _Optional[str] = ..., prefix: _Optional[str] = ...) -> None: ...

class AclCommand(_message.Message):
    __slots__ = ("grant", "revoke", "enabled", "by")
    GRANT_FIELD_NUMBER: _ClassVar[int]
    REVOKE_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    grant: AclRule
    revoke: AclRule
    enabled: bool
    by: str
    def __init__(self, grant: _Optional[_Union[AclRule, _Mapping]] = ..., revoke: _Optional[_Union[AclRule, _Mapping]] = ..., enabled: _Optional[bool] = ..., by: _Optional[str] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("append", "trim", "delete_session", "acl", "consumer", "placement", "shard_replicas", "admit_incarnation")
    APPEND_FIELD_NUMBER: _ClassVar[int]
    TRIM_FIELD_NUMBER: _ClassVar[int]
    DELETE_SESSION_FIELD_NUMBER: _ClassVar[int]
    ACL_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    SHARD_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ADMIT_INCARNATION_FIELD_NUMBER: _ClassVar[int]
    append: AppendCommand
    trim: TrimCommand
    delete_session: DeleteSessionCommand
    acl: AclCommand
    consumer: _consumer_commands_pb2.ConsumerCommand
    placement: PlacementCommand
    shard_replicas: ShardReplicasCommand
    admit_incarnation: AdmitIncarnationCommand
    def __init__(self, append: _Optional[_Union[AppendCommand, _Mapping]] = ..., trim: _Optional[_Union[TrimCommand, _Mapping]] = ..., delete_session: _Optional[_Union[DeleteSessionCommand, _Mapping]] = ..., acl: _Optional[_Union[AclCommand, _Mapping]] = ..., consumer: _Optional[_Union[_consumer_commands_pb2.ConsumerCommand, _Mapping]] = ..., placement: _Optional[_Union[PlacementCommand, _Mapping]] = ..., shard_replicas: _Optional[_Union[ShardReplicasCommand, _Mapping]] = ..., admit_incarnation: _Optional[_Union[AdmitIncarnationCommand, _Mapping]] = ...) -> None: ...

class AdmitIncarnationCommand(_message.Message):
    __slots__ = ("node_id", "incarnation")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    incarnation: int
    def __init__(self, node_id: _Optional[int] = ..., incarnation: _Optional[int] = ...) -> None: ...

class ShardPlacement(_message.Message):
    __slots__ = ("shard", "group", "replicas", "founders")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    FOUNDERS_FIELD_NUMBER: _ClassVar[int]
    shard: int
    group: int
    replicas: _containers.RepeatedScalarFieldContainer[int]
    founders: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, shard: _Optional[int] = ..., group: _Optional[int] = ..., replicas: _Optional[_Iterable[int]] = ..., founders: _Optional[_Iterable[int]] = ...) -> None: ...

class ShardReplicasCommand(_message.Message):
    __slots__ = ("shard", "replicas")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    shard: int
    replicas: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, shard: _Optional[int] = ..., replicas: _Optional[_Iterable[int]] = ...) -> None: ...

class PlacementCommand(_message.Message):
    __slots__ = ("shard_count", "shards", "host_tags")
    class HostTagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    SHARD_COUNT_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    HOST_TAGS_FIELD_NUMBER: _ClassVar[int]
    shard_count: int
    shards: _containers.RepeatedCompositeFieldContainer[ShardPlacement]
    host_tags: _containers.ScalarMap[int, str]
    def __init__(self, shard_count: _Optional[int] = ..., shards: _Optional[_Iterable[_Union[ShardPlacement, _Mapping]]] = ..., host_tags: _Optional[_Mapping[int, str]] = ...) -> None: ...

class CommandBatch(_message.Message):
    __slots__ = ("leader_time_ms", "commands")
    LEADER_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    leader_time_ms: int
    commands: _containers.RepeatedCompositeFieldContainer[Command]
    def __init__(self, leader_time_ms: _Optional[int] = ..., commands: _Optional[_Iterable[_Union[Command, _Mapping]]] = ...) -> None: ...

class MemberAddress(_message.Message):
    __slots__ = ("name", "peer_address", "client_address", "learner")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    name: str
    peer_address: str
    client_address: str
    learner: bool
    def __init__(self, name: _Optional[str] = ..., peer_address: _Optional[str] = ..., client_address: _Optional[str] = ..., learner: _Optional[bool] = ...) -> None: ...
