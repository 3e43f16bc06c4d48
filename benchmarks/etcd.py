"""A throwaway 3-member etcd on loopback, and a minimal Python gRPC client for it.

Owns: installing Debian's ``etcd-server`` when ``etcd`` is missing (``apt-get update`` then
``apt-get install -y etcd-server``), starting members on free 127.0.0.1 ports with data under
a given directory (fsync on: etcd's default), waiting until every member reports the same
leader, and the client side of ``etcdserverpb.KV/Put``, ``KV/Txn`` and
``Maintenance/Status``. The client's messages are built at run time from a hand-written
descriptor (the fields below, numbered as in etcd's ``rpc.proto``), so no generated code is
kept and protobuf serialises them exactly as it does quorumlog's. Must never: start a process
the caller's ``Processes`` does not know, or listen beyond loopback.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from benchmarks.processes import Processes
from quorumlog.node.process.launcher import free_ports

INSTALL_TIMEOUT = 900.0

_F = descriptor_pb2.FieldDescriptorProto
# name -> [(field, number, type, label, message type)], from etcd 3.4 api/etcdserverpb/rpc.proto
_MESSAGES: dict[str, list[tuple[str, int, int, int, str]]] = {
    "ResponseHeader": [
        ("cluster_id", 1, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, ""),
        ("member_id", 2, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, ""),
        ("revision", 3, _F.TYPE_INT64, _F.LABEL_OPTIONAL, ""),
        ("raft_term", 4, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, ""),
    ],
    "PutRequest": [
        ("key", 1, _F.TYPE_BYTES, _F.LABEL_OPTIONAL, ""),
        ("value", 2, _F.TYPE_BYTES, _F.LABEL_OPTIONAL, ""),
    ],
    "PutResponse": [("header", 1, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "ResponseHeader")],
    # RequestOp's ``request`` oneof; only its put arm is used.
    "RequestOp": [("request_put", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "PutRequest")],
    "TxnRequest": [("success", 2, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "RequestOp")],
    "TxnResponse": [
        ("header", 1, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "ResponseHeader"),
        ("succeeded", 2, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
    ],
    "StatusRequest": [],
    "StatusResponse": [
        ("header", 1, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "ResponseHeader"),
        ("version", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("leader", 4, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, ""),
    ],
}


def _message_classes() -> dict[str, type[Message]]:
    file = descriptor_pb2.FileDescriptorProto(
        name="quorumlog_benchmarks_etcd_rpc.proto", package="etcdserverpb", syntax="proto3"
    )
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            message.field.add(
                name=field_name, number=number, type=kind, label=label,
                type_name=f".etcdserverpb.{type_name}" if type_name else None,
            )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"etcdserverpb.{name}"))
        for name in _MESSAGES
    }


MESSAGES = _message_classes()


def build(name: str, **fields: Any) -> Message:
    """A message of the dynamic class ``name`` with ``fields`` set.

    The classes come from a runtime descriptor pool, so the protobuf stubs only know them as
    ``type[Message]``, whose constructor takes no field keywords; a class is still callable
    with them, which is what ``Callable[..., Message]`` says.
    """
    constructor: Callable[..., Message] = MESSAGES[name]
    return constructor(**fields)


class EtcdUnavailable(Exception):
    """etcd is not installed and could not be installed, or the cluster did not form."""


def ensure_installed(log: Any = None) -> str:
    """The ``etcd`` binary's path; installs Debian's ``etcd-server`` first when missing."""
    found = shutil.which("etcd")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise EtcdUnavailable("etcd is not installed; install Debian's etcd-server "
                              "(apt-get update && apt-get install -y etcd-server) as root")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "etcd-server"]):
        if log is not None:
            log(f"running: {' '.join(command)}")
        result = subprocess.run(command, env=environment, capture_output=True, text=True,
                                timeout=INSTALL_TIMEOUT, check=False)
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:]
            raise EtcdUnavailable(f"{' '.join(command)} failed: {' '.join(last)}")
    found = shutil.which("etcd")
    if not found:
        raise EtcdUnavailable("etcd-server installed but no etcd binary on PATH")
    return found


def version(binary: str) -> str:
    result = subprocess.run([binary, "--version"], capture_output=True, text=True,
                            timeout=30, check=False)
    first = result.stdout.strip().splitlines()[:1]
    return first[0].removeprefix("etcd Version: ") if first else "unknown"


@dataclass
class EtcdMember:
    name: str
    client_addr: str
    peer_addr: str
    data_dir: Path


@dataclass
class EtcdCluster:
    binary: str
    members: list[EtcdMember]
    processes: Processes
    pids: list[int] = field(default_factory=list)

    @classmethod
    def plan(cls, binary: str, root: Path, processes: Processes, size: int = 3) -> EtcdCluster:
        ports = free_ports(2 * size)
        members = [
            EtcdMember(f"e{i + 1}", f"127.0.0.1:{ports[2 * i]}", f"127.0.0.1:{ports[2 * i + 1]}",
                       root / f"e{i + 1}")
            for i in range(size)
        ]
        return cls(binary, members, processes)

    def command(self, member: EtcdMember, token: str) -> list[str]:
        initial = ",".join(f"{m.name}=http://{m.peer_addr}" for m in self.members)
        return [
            self.binary,
            "--name", member.name,
            "--data-dir", str(member.data_dir),
            "--listen-client-urls", f"http://{member.client_addr}",
            "--advertise-client-urls", f"http://{member.client_addr}",
            "--listen-peer-urls", f"http://{member.peer_addr}",
            "--initial-advertise-peer-urls", f"http://{member.peer_addr}",
            "--initial-cluster", initial,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", token,
            "--log-level", "warn",
            "--logger", "zap",
        ]

    def start(self) -> None:
        token = f"quorumlog-bench-{secrets.token_hex(4)}"
        for member in self.members:
            member.data_dir.mkdir(parents=True, exist_ok=True)
            process = self.processes.start(self.command(member, token),
                                           member.data_dir.parent / f"{member.name}.log")
            self.pids.append(process.pid)

    async def wait_leader(self, timeout: float) -> str:
        """The leader's client address, once every member reports the same leader."""
        deadline = time.monotonic() + timeout
        while True:
            leaders: dict[int, str] = {}
            seen: set[int] = set()
            for member in self.members:
                try:
                    async with grpc.aio.insecure_channel(member.client_addr) as channel:
                        status = await EtcdClient(channel).status(timeout=1.0)
                except grpc.aio.AioRpcError:
                    continue
                seen.add(int(status.leader))  # type: ignore[attr-defined]
                member_id = int(status.header.member_id)  # type: ignore[attr-defined]
                leaders[member_id] = member.client_addr
            if len(leaders) == len(self.members) and len(seen) == 1:
                leader = seen.pop()
                if leader in leaders:
                    return leaders[leader]
            if time.monotonic() >= deadline:
                raise EtcdUnavailable(f"etcd elected no leader within {timeout:g} s")
            await asyncio.sleep(0.1)  # polling interval of a deadline-bounded wait


class EtcdClient:
    """Typed-enough wrappers over one channel's Put, Txn (puts only) and Status calls."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        put_request, put_response = MESSAGES["PutRequest"], MESSAGES["PutResponse"]
        self._put = channel.unary_unary(
            "/etcdserverpb.KV/Put", request_serializer=put_request.SerializeToString,
            response_deserializer=put_response.FromString)
        self._txn = channel.unary_unary(
            "/etcdserverpb.KV/Txn", request_serializer=MESSAGES["TxnRequest"].SerializeToString,
            response_deserializer=MESSAGES["TxnResponse"].FromString)
        self._status = channel.unary_unary(
            "/etcdserverpb.Maintenance/Status",
            request_serializer=MESSAGES["StatusRequest"].SerializeToString,
            response_deserializer=MESSAGES["StatusResponse"].FromString)

    async def put(self, key: bytes, value: bytes, timeout: float) -> Message:
        request = build("PutRequest", key=key, value=value)
        response: Message = await self._put(request, timeout=timeout)
        return response

    async def put_many(self, key: bytes, values: list[bytes], timeout: float) -> Message:
        """One transaction putting ``key/<i>`` = ``values[i]`` (etcd allows 128 by default)."""
        operations = [
            build("RequestOp", request_put=build("PutRequest", key=b"%s/%d" % (key, i),
                                                 value=value))
            for i, value in enumerate(values)]
        response: Message = await self._txn(build("TxnRequest", success=operations),
                                            timeout=timeout)
        return response

    async def status(self, timeout: float) -> Message:
        response: Message = await self._status(build("StatusRequest"), timeout=timeout)
        return response
