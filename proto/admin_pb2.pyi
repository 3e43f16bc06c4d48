from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AddNodeRequest(_message.Message):
    __slots__ = ("id", "peer_address", "client_address")
    ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    peer_address: str
    client_address: str
    def __init__(self, id: _Optional[str] = ..., peer_address: _Optional[str] = ..., client_address: _Optional[str] = ...) -> None: ...

class AddNodeResponse(_message.Message):
    __slots__ = ("id", "learner_index", "voter_index", "catch_up_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    LEARNER_INDEX_FIELD_NUMBER: _ClassVar[int]
    VOTER_INDEX_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    learner_index: int
    voter_index: int
    catch_up_seconds: float
    def __init__(self, id: _Optional[str] = ..., learner_index: _Optional[int] = ..., voter_index: _Optional[int] = ..., catch_up_seconds: _Optional[float] = ...) -> None: ...

class RemoveNodeRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RemoveNodeResponse(_message.Message):
    __slots__ = ("index",)
    INDEX_FIELD_NUMBER: _ClassVar[int]
    index: int
    def __init__(self, index: _Optional[int] = ...) -> None: ...

class TransferLeaderRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class TransferLeaderResponse(_message.Message):
    __slots__ = ("leader", "term")
    LEADER_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    leader: str
    term: int
    def __init__(self, leader: _Optional[str] = ..., term: _Optional[int] = ...) -> None: ...

class BalanceLeadersRequest(_message.Message):
    __slots__ = ("local_only",)
    LOCAL_ONLY_FIELD_NUMBER: _ClassVar[int]
    local_only: bool
    def __init__(self, local_only: _Optional[bool] = ...) -> None: ...

class LeaderMove(_message.Message):
    __slots__ = ("shard", "to")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    shard: int
    to: str
    def __init__(self, shard: _Optional[int] = ..., to: _Optional[str] = ..., **kwargs) -> None: ...

class BalanceLeadersResponse(_message.Message):
    __slots__ = ("moves", "leaders")
    class LeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    MOVES_FIELD_NUMBER: _ClassVar[int]
    LEADERS_FIELD_NUMBER: _ClassVar[int]
    moves: _containers.RepeatedCompositeFieldContainer[LeaderMove]
    leaders: _containers.ScalarMap[str, int]
    def __init__(self, moves: _Optional[_Iterable[_Union[LeaderMove, _Mapping]]] = ..., leaders: _Optional[_Mapping[str, int]] = ...) -> None: ...

class BackupRequest(_message.Message):
    __slots__ = ("shard", "meta")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    shard: int
    meta: bool
    def __init__(self, shard: _Optional[int] = ..., meta: _Optional[bool] = ...) -> None: ...

class BackupChunk(_message.Message):
    __slots__ = ("data", "done", "total_bytes", "sha256", "applied_index")
    DATA_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    done: bool
    total_bytes: int
    sha256: bytes
    applied_index: int
    def __init__(self, data: _Optional[bytes] = ..., done: _Optional[bool] = ..., total_bytes: _Optional[int] = ..., sha256: _Optional[bytes] = ..., applied_index: _Optional[int] = ...) -> None: ...
