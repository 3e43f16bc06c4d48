from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AclRuleSpec(_message.Message):
    __slots__ = ("principal", "verb", "prefix")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    VERB_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    principal: str
    verb: str
    prefix: str
    def __init__(self, principal: _Optional[str] = ..., verb: _Optional[str] = ..., prefix: _Optional[str] = ...) -> None: ...

class AclGrantRequest(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: AclRuleSpec
    def __init__(self, rule: _Optional[_Union[AclRuleSpec, _Mapping]] = ...) -> None: ...

class AclRevokeRequest(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: AclRuleSpec
    def __init__(self, rule: _Optional[_Union[AclRuleSpec, _Mapping]] = ...) -> None: ...

class AclSetEnabledRequest(_message.Message):
    __slots__ = ("enabled",)
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    def __init__(self, enabled: _Optional[bool] = ...) -> None: ...

class AclChangeResponse(_message.Message):
    __slots__ = ("changed", "index")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    index: int
    def __init__(self, changed: _Optional[bool] = ..., index: _Optional[int] = ...) -> None: ...

class AclListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AclListResponse(_message.Message):
    __slots__ = ("enabled", "rules", "caller")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    rules: _containers.RepeatedCompositeFieldContainer[AclRuleSpec]
    caller: str
    def __init__(self, enabled: _Optional[bool] = ..., rules: _Optional[_Iterable[_Union[AclRuleSpec, _Mapping]]] = ..., caller: _Optional[str] = ...) -> None: ...
