"""ACLs: rule evaluation, the replicated ACL state, producer binding, the authorization table,
and a live 3-node cluster where an unauthorised append is denied and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from security_harness import client_security, running_tls_cluster, tls_dir
from waiting import wait_until

from quorumlog.client import Client, errors
from quorumlog.client.sdk import Consistency
from quorumlog.client.tls import sync_channel
from quorumlog.node.api import authz
from quorumlog.node.common.limits import ErrorCode
from quorumlog.node.state.acl import APPEND, CONSUME, MANAGE, READ, AclResult, AclState, Rule
from quorumlog.node.state.state_machine import (
    AppendResult,
    CommandError,
    SessionStateMachine,
)
from quorumlog.node.storage.raft_store import RocksStorage
from quorumlog.proto import (
    acl_pb2,
    admin_pb2,
    commands_pb2,
    consumer_pb2,
    quorumlog_pb2,
    quorumlog_pb2_grpc,
)
from quorumlog.raft.types import Entry

pytestmark = pytest.mark.cluster


# -- rule evaluation -------------------------------------------------------------------------
def test_rules_deny_by_default_once_enabled_and_match_by_prefix() -> None:
    rules = (Rule("bob", APPEND, "orders/"), Rule("*", READ, "public/"), Rule("ops", MANAGE, ""))
    assert AclState(False, ()).allows("anyone", MANAGE, "x")  # not enforced: all allowed
    state = AclState(True, rules)
    assert state.allows("bob", APPEND, "orders/42")
    assert not state.allows("bob", APPEND, "order")  # not under the prefix
    assert not state.allows("bob", READ, "orders/42")  # another verb
    assert not state.allows("carol", APPEND, "orders/42")  # another principal
    assert state.allows("carol", READ, "public/x") and state.allows("", READ, "public/")
    assert state.allows("ops", MANAGE, "") and not state.allows("bob", MANAGE, "")
    assert not AclState(True, ()).allows("bob", APPEND, "orders/1")


def test_rule_keys_round_trip() -> None:
    for rule in (Rule("bob", APPEND, "orders/"), Rule("é*", CONSUME, ""), Rule("x", MANAGE, "a")):
        assert Rule.from_key(rule.key()) == rule


# -- the replicated state ----------------------------------------------------------------------
def _acl(**change: object) -> commands_pb2.Command:
    return commands_pb2.Command(acl=commands_pb2.AclCommand(**change))  # type: ignore[arg-type]


def _rule(principal: str, verb: str, prefix: str = "") -> commands_pb2.AclRule:
    return commands_pb2.AclRule(principal=principal, verb=verb, prefix=prefix)


def _append(session: str, value: bytes, principal: str, producer: str = "",
            sequence: int = 0) -> commands_pb2.Command:
    return commands_pb2.Command(append=commands_pb2.AppendCommand(
        session=session, messages=[value], producer_id=producer, sequence=sequence,
        principal=principal,
    ))


def _entry(index: int, *commands: commands_pb2.Command) -> Entry:
    batch = commands_pb2.CommandBatch(leader_time_ms=1000, commands=list(commands))
    return Entry(1, index, batch.SerializeToString())


class _Machine:
    def __init__(self, path: Path) -> None:
        self.storage = RocksStorage(path)
        self.sm = SessionStateMachine(self.storage)

    def apply(self, entries: list[Entry]) -> list[object]:
        return [r for result in self.sm.apply(entries) for r in result.results]

    def close(self) -> None:
        self.storage.close()


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[tuple[_Machine, _Machine]]:
    first, second = _Machine(tmp_path / "a"), _Machine(tmp_path / "b")
    yield first, second
    first.close()
    second.close()


def _history() -> list[Entry]:
    """Grants, enable, an allowed and a denied append, a revoke in the middle of an entry,
    producer spoofing: every outcome depends on the commands before it."""
    return [
        _entry(1, _acl(grant=_rule("bob", APPEND, "orders/")), _acl(enabled=True)),
        _entry(2, _append("orders/1", b"ok-1", "bob", "p-bob", 0),
               _append("orders/1", b"denied-1", "carol")),
        _entry(3, _acl(revoke=_rule("bob", APPEND, "orders/")),
               _append("orders/1", b"denied-2", "bob", "p-bob", 1)),
        _entry(4, _acl(grant=_rule("*", APPEND, "")),
               _append("orders/1", b"spoof", "carol", "p-bob", 1),
               _append("orders/2", b"ok-2", "carol", "p-carol", 0)),
        _entry(5, _acl(grant=_rule("bob", "delete", "")), _acl()),
    ]


def test_acl_commands_apply_in_order_and_the_same_whatever_the_apply_batching(
    machines: tuple[_Machine, _Machine],
) -> None:
    one_call, per_entry = machines
    everything = one_call.apply(_history())
    separately = [r for e in _history() for r in per_entry.apply([e])]
    assert everything == separately
    outcomes = [
        type(r).__name__ if not isinstance(r, CommandError) else r.code.name for r in everything
    ]
    assert outcomes == [
        "AclResult", "AclResult",
        "AppendResult", "PERMISSION_DENIED",
        "AclResult", "PERMISSION_DENIED",  # revoked earlier in the same entry
        "AclResult", "PERMISSION_DENIED", "AppendResult",  # p-bob belongs to bob
        "INVALID_ARGUMENT", "INVALID_ARGUMENT",  # unknown verb, empty command
    ]
    assert isinstance(everything[0], AclResult) and everything[0].changed
    spoof = everything[7]
    assert isinstance(spoof, CommandError) and "another principal" in spoof.message
    for machine in machines:
        values = [r.data for r in machine.sm.read("orders/1", 0).records]
        assert values == [b"ok-1"]  # nothing denied was written
        assert machine.sm.acl.producer_owner("p-bob") == "bob"
        assert machine.sm.acl.state() == AclState(
            True, (Rule("*", APPEND, ""),)
        )
    assert _dump(one_call) == _dump(per_entry)


def _dump(machine: _Machine) -> list[tuple[bytes, bytes]]:
    iterator = machine.storage.db.iter()
    iterator.seek(b"A/")
    pairs = []
    while iterator.valid() and iterator.key().startswith(b"A/"):
        pairs.append((iterator.key(), iterator.value()))
        iterator.next()
    return pairs


def test_acl_state_travels_in_snapshots(machines: tuple[_Machine, _Machine]) -> None:
    source, target = machines
    source.apply(_history())
    with source.sm.export_state() as export:
        target.sm.import_state(list(export))
    assert target.sm.acl.state() == source.sm.acl.state()
    assert target.sm.acl.producer_owner("p-carol") == "carol"
    assert _dump(target) == _dump(source) != []
    # The imported owner binding is enforced.
    (refused,) = target.apply([_entry(99, _append("orders/9", b"x", "bob", "p-carol", 5))])
    assert isinstance(refused, CommandError) and refused.code is ErrorCode.PERMISSION_DENIED


def test_an_import_replaces_cached_producer_bindings(
    machines: tuple[_Machine, _Machine],
) -> None:
    stale, source = machines
    # `stale` binds "p" to alice and reads it back (the binding is now cached in memory) ...
    stale.apply([_entry(1, _append("s", b"a", "alice", "p", 0))])
    assert isinstance(stale.apply([_entry(2, _append("s", b"b", "alice", "p", 1))])[0],
                      AppendResult)
    # ... then installs a snapshot in which "p" belongs to bob: bob's append must pass.
    source.apply([_entry(1, _append("t", b"x", "bob", "p", 0))])
    with source.sm.export_state() as export:
        stale.sm.import_state(list(export))
    results = stale.apply([_entry(2, _append("t", b"y", "bob", "p", 1)),
                           _entry(3, _append("t", b"z", "alice", "p", 2))])
    assert isinstance(results[0], AppendResult)
    assert isinstance(results[1], CommandError)
    assert results[1].code is ErrorCode.PERMISSION_DENIED


def test_anonymous_producer_binding_without_acls(machines: tuple[_Machine, _Machine]) -> None:
    machine, _ = machines
    first, spoof, again = machine.apply([_entry(
        1, _append("s", b"a", "", "p", 0), _append("s", b"b", "eve", "p", 1),
        _append("s", b"c", "", "p", 1),
    )])
    assert isinstance(first, AppendResult) and isinstance(again, AppendResult)
    assert isinstance(spoof, CommandError) and spoof.code is ErrorCode.PERMISSION_DENIED


# -- the authorization table -------------------------------------------------------------------
def _methods(module: object, service: str) -> list[str]:
    descriptor = module.DESCRIPTOR.services_by_name[service]  # type: ignore[attr-defined]
    return [f"/{descriptor.full_name}/{method.name}" for method in descriptor.methods]


def test_every_client_port_method_is_in_the_authorization_table() -> None:
    for module, service in ((quorumlog_pb2, "QuorumLog"), (admin_pb2, "Admin"),
                            (acl_pb2, "Acl")):
        for method in _methods(module, service):
            assert method in authz.METHODS, f"{method} has no authorization rule"
    for method in _methods(admin_pb2, "Admin") + _methods(acl_pb2, "Acl"):
        requirement = authz.METHODS[method]
        assert requirement.verb == MANAGE and requirement.audited
    assert authz.requirement("/grpc.health.v1.Health/Check") is authz.PUBLIC
    assert authz.requirement("/quorumlog.v1.Nothing/Else") is None  # denied once enabled


def test_every_consumer_method_needs_consume_on_its_session() -> None:
    methods = _methods(consumer_pb2, "Consumer")
    assert methods, "the Consumer service has no methods"
    for method in methods:
        requirement = authz.requirement(method)
        assert requirement is not None and requirement.verb == CONSUME, method
    names = authz.requirement("/quorumlog.v1.Consumer/Receive").names  # type: ignore[union-attr]
    assert names(consumer_pb2.ReceiveRequest(session="jobs/1")) == ("jobs/1",)
    accept = consumer_pb2.AcceptSessionRequest
    assert names(accept(prefix="jobs/")) == ("jobs/",)  # next available among a prefix
    assert names(accept()) == ("",)  # next available anywhere: consume on every session
    assert names(consumer_pb2.CreateGroupRequest(group="g")) == ("",)


def test_dead_letter_changes_need_consume_on_their_session_and_are_audited() -> None:
    audited = {method for method in _methods(consumer_pb2, "Consumer")
               if (found := authz.requirement(method)) is not None and found.audited}
    assert audited == {"/quorumlog.v1.Consumer/ResubmitDeadLetters",
                       "/quorumlog.v1.Consumer/PurgeDeadLetters"}
    for method, request in (
        ("ResubmitDeadLetters", consumer_pb2.ResubmitDeadLettersRequest(session="jobs/1")),
        ("PurgeDeadLetters", consumer_pb2.PurgeDeadLettersRequest(session="jobs/1")),
    ):
        requirement = authz.METHODS[f"/quorumlog.v1.Consumer/{method}"]
        assert requirement.verb == CONSUME and requirement.names(request) == ("jobs/1",)


def test_batch_and_listing_names() -> None:
    batch = authz.METHODS["/quorumlog.v1.QuorumLog/AppendBatch"]
    request = quorumlog_pb2.AppendBatchRequest(appends=[
        quorumlog_pb2.AppendRequest(session=name) for name in ("a", "b", "a")
    ])
    # Checked per append by the service (guard.may_append): each append its own outcome.
    assert (batch.verb, batch.names(request)) == (APPEND, ())
    stream = authz.METHODS["/quorumlog.v1.QuorumLog/AppendStream"]
    assert (stream.verb, stream.names(quorumlog_pb2.AppendStreamRequest(batch=request))) == (
        APPEND, ()
    )
    listing = authz.METHODS["/quorumlog.v1.QuorumLog/ListSessions"]
    assert listing.names(quorumlog_pb2.ListSessionsRequest(prefix="orders/")) == ("orders/",)


# -- live: every node enforces the same replicated rules ----------------------------------------
def test_unauthorised_append_is_denied_everywhere_and_writes_nothing(tmp_path: Path) -> None:
    directory = tls_dir(tmp_path)
    with running_tls_cluster(tmp_path, directory, size=3) as cluster:
        addresses = cluster.addresses
        admin = Client(addresses, deadline=15, security=client_security(directory))
        bob = Client(addresses, deadline=15, security=client_security(directory, "bob"))
        carol = Client(addresses, deadline=15, security=client_security(directory, "carol"))
        try:
            with pytest.raises(errors.FailedPrecondition, match="lock principal 'admin' out"):
                admin.acl.set_enabled(True)
            for principal, verb, prefix in (("admin", "manage", ""), ("admin", "read", ""),
                                            ("bob", "append", "orders/"),
                                            ("bob", "read", "orders/")):
                assert admin.acl.grant(principal, verb, prefix)
            assert admin.acl.set_enabled(True)
            assert bob.append("orders/1", b"bob-1").first_offset == 0
            with pytest.raises(errors.PermissionDenied, match="'carol' may not append"):
                carol.append("orders/1", b"carol-1", b"carol-2")
            with pytest.raises(errors.PermissionDenied):
                carol.append("carol/own", b"carol-3")
            with pytest.raises(errors.PermissionDenied):
                bob.append("payments/1", b"bob-2")  # outside bob's prefix
            with pytest.raises(errors.PermissionDenied):
                bob.acl.grant("bob", "append", "")  # bob cannot manage
            with pytest.raises(errors.PermissionDenied):
                carol.read("orders/1")
            _mixed_batch(cluster.addresses, directory)
            listing = admin.acl.list()
            assert listing.enabled and listing.caller == "admin" and len(listing.rules) == 4
            # The rules are replicated: every node, not only the leader, refuses carol and
            # serves bob, and no node holds any value of a denied append.
            for name, node in cluster.nodes.items():
                _check_node(name, node.client_addr, directory)
        finally:
            for client in (admin, bob, carol):
                client.close()


def _check_node(name: str, address: str, directory: Path) -> None:
    def one(principal: str | None) -> Client:
        return Client([address], deadline=10, security=client_security(directory, principal))

    with one("bob") as bob, one("carol") as carol, one("admin") as admin:
        def applied() -> bool:
            try:
                page = bob.read("orders/1", consistency=Consistency.FOLLOWER)
            except errors.NotFound:
                return False  # this follower has not applied the session's first append yet
            return [r.data for r in page.records] == [b"bob-1"]

        wait_until(applied, 15, f"{name} applied bob's append")
        with pytest.raises(errors.PermissionDenied):
            carol.read("orders/1", consistency=Consistency.FOLLOWER)
        def stored() -> dict[str, list[bytes]]:
            sessions = admin.list_sessions(consistency=Consistency.FOLLOWER)
            return {
                info.session: [r.data for r in admin.read(
                    info.session, consistency=Consistency.FOLLOWER).records]
                for info in sessions
            }

        # Only what bob was allowed to append; no value of a denied append anywhere.
        expected = {"orders/1": [b"bob-1"], "orders/2": [b"bob-3"]}
        wait_until(lambda: stored() == expected, 15, f"{name} to hold exactly {expected}")


def _mixed_batch(addresses: list[str], directory: Path) -> None:
    """One AppendBatch of bob's with an allowed and a refused append: per-append outcomes."""
    request = quorumlog_pb2.AppendBatchRequest(appends=[
        quorumlog_pb2.AppendRequest(session="orders/2", messages=[b"bob-3"]),
        quorumlog_pb2.AppendRequest(session="payments/2", messages=[b"bob-4"]),
    ])
    security = client_security(directory, "bob")
    for address in addresses:  # the leader answers; followers say UNAVAILABLE
        with sync_channel(address, security) as channel:
            stub = quorumlog_pb2_grpc.QuorumLogStub(channel)  # type: ignore[no-untyped-call]
            try:
                response = stub.AppendBatch(request, timeout=10)
            except grpc.RpcError:
                continue
        allowed, refused = response.outcomes
        assert allowed.code == 0 and allowed.result.session == "orders/2", allowed
        assert refused.code == grpc.StatusCode.PERMISSION_DENIED.value[0], refused
        assert "'bob' may not append" in refused.message
        return
    raise AssertionError("no node accepted the batch")
