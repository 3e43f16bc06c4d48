"""Access control lists: replicated rules, their evaluation, and producer-to-principal binding.

Owns: every key of the state machine's RocksDB under ``A/`` (written only while applying a
committed entry, through the state machine's write batch; exported and imported with the
rest of its state), validating and applying ``AclCommand``, answering "may principal P do
VERB on session name N", and binding each producer id to the principal that first appended
with it. Must never: read a clock or anything node-local while applying (every replica must
write the same bytes), or decide who the caller is (``quorumlog.node.api.auth`` does).

Rules are principal x verb x session-name prefix; ``*`` as principal means every caller
(the anonymous one too). Verbs: ``append``, ``read``, ``consume``, ``manage``. Until ACLs are
enabled (``quorumlog acl enable``) every call is allowed; once enabled, a call is allowed only
when some rule of its principal (or ``*``) for its verb has a prefix the name starts with
(the empty prefix covers every name). Deny by default.

Key layout (``A/`` in the map of ``quorumlog.node.state.keys``):

=====================================  ===============================================
``A/on``                               empty; present while ACLs are enforced
``A/r/<principal sid><verb u8><prefix>``  empty: one rule (``sid``: ``>H`` length + UTF-8)
``A/b/<producer UTF-8>``               the UTF-8 principal the producer id is bound to
=====================================  ===============================================
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import rocksdict

from quorumlog.node.common.limits import DEFAULT_LIMITS, ErrorCode, InvalidInput
from quorumlog.node.state.keys import ACL_PREFIX
from quorumlog.proto import commands_pb2

ENABLED_KEY = ACL_PREFIX + b"on"
RULE_PREFIX = ACL_PREFIX + b"r/"
BINDING_PREFIX = ACL_PREFIX + b"b/"

APPEND, READ, CONSUME, MANAGE = "append", "read", "consume", "manage"
VERBS: tuple[str, ...] = (APPEND, READ, CONSUME, MANAGE)
EVERYONE = "*"
MAX_PRINCIPAL_BYTES = 128

_U16 = struct.Struct(">H")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True, order=True)
class Rule:
    principal: str
    verb: str
    prefix: str

    def key(self) -> bytes:
        principal = self.principal.encode()
        return (
            RULE_PREFIX + _U16.pack(len(principal)) + principal
            + bytes([VERBS.index(self.verb)]) + self.prefix.encode()
        )

    @staticmethod
    def from_key(key: bytes) -> Rule:
        body = key[len(RULE_PREFIX) :]
        (length,) = _U16.unpack_from(body)
        principal = body[2 : 2 + length].decode()
        verb = VERBS[body[2 + length]]
        return Rule(principal, verb, body[3 + length :].decode())


@dataclass(frozen=True, slots=True)
class AclState:
    enabled: bool
    rules: tuple[Rule, ...]

    def allows(self, principal: str, verb: str, name: str) -> bool:
        if not self.enabled:
            return True
        return any(
            rule.verb == verb
            and rule.principal in (principal, EVERYONE)
            and name.startswith(rule.prefix)
            for rule in self.rules
        )


@dataclass(frozen=True, slots=True)
class AclResult:
    """An applied ACL change: ``changed`` is False when it was already so."""

    changed: bool


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(ErrorCode.INVALID_ARGUMENT, message)


def check_rule(rule: commands_pb2.AclRule) -> Rule:
    """The rule, after checking principal, verb and prefix (deterministic)."""
    if rule.verb not in VERBS:
        raise _invalid(f"verb {rule.verb!r} is not one of {', '.join(VERBS)}")
    principal = rule.principal
    if not principal or len(principal.encode()) > MAX_PRINCIPAL_BYTES:
        raise _invalid(f"principal must be 1..{MAX_PRINCIPAL_BYTES} bytes of UTF-8")
    if len(rule.prefix.encode()) > DEFAULT_LIMITS.max_session_id_bytes:
        raise _invalid(
            f"prefix is longer than a session id ({DEFAULT_LIMITS.max_session_id_bytes} bytes)"
        )
    for what, text in (("principal", principal), ("prefix", rule.prefix)):
        if _CONTROL.search(text):
            raise _invalid(f"{what} contains a control character")
    return Rule(principal, rule.verb, rule.prefix)


OWNER_CACHE = 4096  # producer bindings kept in memory (one point read saved per append)


class AclStore:
    """The ``A/`` keys of one RocksDB, with the rules cached until the next change."""

    def __init__(self, db: rocksdict.Rdict) -> None:
        self._db = db
        self._state: AclState | None = None
        # Producer bindings read from the applied state. A binding is never changed or
        # deleted once written, so a cached owner stays true until an import replaces the
        # whole state; bounded, so memory does not grow with the producers ever seen.
        self._owners: dict[bytes, bytes] = {}

    def invalidate(self) -> None:
        """Forget the cached rules and bindings (after an import replaced the state)."""
        self._state = None
        self._owners.clear()

    def state(self) -> AclState:
        state = self._state
        if state is None:
            options = rocksdict.ReadOptions()
            options.set_iterate_upper_bound(b"A/r0")  # RULE_PREFIX's successor
            iterator = self._db.iter(options)
            iterator.seek(RULE_PREFIX)
            rules: list[Rule] = []
            while iterator.valid():
                rules.append(Rule.from_key(iterator.key()))
                iterator.next()
            iterator.status()  # an iteration that stopped on damaged data raises here
            state = AclState(self._db.get(ENABLED_KEY) is not None, tuple(sorted(rules)))
            self._state = state
        return state

    def allows(self, principal: str, verb: str, name: str) -> bool:
        return self.state().allows(principal, verb, name)

    def apply(
        self, raw: rocksdict.WriteBatch, command: commands_pb2.AclCommand
    ) -> AclResult:
        """Queue one ACL change into the apply call's write batch; ``InvalidInput`` when it
        is malformed (nothing queued). The cached rules become the batch's view at once
        (apply and the service's reads run on one thread, and apply is not interrupted)."""
        kind = command.WhichOneof("change")
        state = self.state()
        if kind == "enabled":
            changed = state.enabled != command.enabled
            if command.enabled:
                raw.put(ENABLED_KEY, b"")
            else:
                raw.delete(ENABLED_KEY)
            new_state = AclState(command.enabled, state.rules)
        elif kind in ("grant", "revoke"):
            rule = check_rule(command.grant if kind == "grant" else command.revoke)
            present = rule in state.rules
            if kind == "grant":
                raw.put(rule.key(), b"")
                changed = not present
                rules = state.rules if present else tuple(sorted((*state.rules, rule)))
            else:
                raw.delete(rule.key())
                changed = present
                rules = tuple(r for r in state.rules if r != rule)
            new_state = AclState(state.enabled, rules)
        else:
            raise _invalid("empty ACL command")
        # Later commands of the same apply call must see this change (how many entries one
        # apply call covers differs between replicas), so the cache is the batch's view.
        self._state = new_state
        return AclResult(changed)

    def bind_producer(
        self,
        raw: rocksdict.WriteBatch,
        pending: dict[bytes, bytes],
        producer: bytes,
        principal: str,
    ) -> InvalidInput | None:
        """Bind ``producer`` to ``principal`` on first use; the refusal when another
        principal owns it. ``pending`` holds the bindings of this apply call."""
        owner = pending.get(producer)  # b"" is the anonymous principal: compare with None
        if owner is None:
            owner = self._owners.get(producer)
        if owner is None:
            owner = self._db.get(BINDING_PREFIX + producer)
            if owner is not None:
                if len(self._owners) >= OWNER_CACHE:
                    self._owners.clear()
                self._owners[producer] = owner
        wanted = principal.encode()
        if owner is None:
            raw.put(BINDING_PREFIX + producer, wanted)
            pending[producer] = wanted
            return None
        if owner != wanted:
            return InvalidInput(
                ErrorCode.PERMISSION_DENIED,
                f"producer id {producer.decode(errors='replace')!r} belongs to another "
                "principal",
            )
        return None

    def producer_owner(self, producer: str) -> str | None:
        value = self._db.get(BINDING_PREFIX + producer.encode())
        return None if value is None else bytes(value).decode()
