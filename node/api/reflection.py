"""gRPC server reflection on a node's client port, so grpcurl and friends need no .proto files.

Owns: the full names reflection lists (every service of the client port, and reflection
itself) and registering grpcio-reflection's servicer with a descriptor pool view that also
finds the file of a method's full name (``quorumlog.v1.QuorumLog.Append``): protobuf's upb
pool finds services, messages, fields and enum values but not methods (grpc/grpc#34743), which
breaks ``grpcurl describe <service>.<method>``. Must never: be registered on the peer port, or
answer anything but descriptors (who may call it is ``quorumlog.node.api.authz``: anyone, like
health).
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped]

from quorumlog.proto import acl_pb2, admin_pb2, consumer_pb2, quorumlog_pb2

#: What ``grpcurl ADDR list`` shows: every service of the client port, and reflection itself.
REFLECTED_SERVICES: tuple[str, ...] = (
    quorumlog_pb2.DESCRIPTOR.services_by_name["QuorumLog"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
    acl_pb2.DESCRIPTOR.services_by_name["Acl"].full_name,
    consumer_pb2.DESCRIPTOR.services_by_name["Consumer"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)


class MethodResolvingPool:
    """``pool`` for reflection, whose ``FindFileContainingSymbol`` also takes a method's full
    name (the file of its service); every other lookup is the pool's own."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    # protobuf's method name, which grpcio-reflection calls
    def FindFileContainingSymbol(self, symbol: str) -> descriptor.FileDescriptor:  # noqa: N802
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method = symbol.rpartition(".")
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                service = None
            if service is None or method not in service.methods_by_name:
                raise
            return service.file


def enable(server: grpc.aio.Server) -> None:
    """Serve ``grpc.reflection.v1alpha.ServerReflection`` on ``server`` (not yet started)."""
    pool = MethodResolvingPool(descriptor_pool.Default())
    reflection.enable_server_reflection(REFLECTED_SERVICES, server, pool=pool)
