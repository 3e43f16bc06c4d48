"""``quorumlog health``: ask one node's gRPC health service (``grpc.health.v1.Health``) whether
it is serving.

Made for container and orchestrator health checks: exit 0 and print ``ADDRESS SERVICE:
SERVING`` when the node answers SERVING, exit 1 with one line on stderr otherwise (not
serving, unknown service, unreachable, too slow). ``--address`` defaults to
``$QUORUMLOG_HEALTH_ADDR``, else ``127.0.0.1:7001``, so an image can configure its
HEALTHCHECK with an environment variable. Owns: that one call. Must never: retry or follow
leader hints (a health check asks exactly one node, once).
"""

from __future__ import annotations

import argparse
import os
from typing import cast

import grpc
from grpc_health.v1 import health_pb2

from quorumlog.client.cli import CliError
from quorumlog.client.cli.common import add_security_arguments, deadline_of, security_of
from quorumlog.client.tls import sync_channel

ADDRESS_ENV = "QUORUMLOG_HEALTH_ADDR"
DEFAULT_ADDRESS = "127.0.0.1:7001"
DEFAULT_DEADLINE = 2.0
EXIT_UNHEALTHY = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        metavar="HOST:PORT",
        default=None,
        help=f"the node's client address (default: ${ADDRESS_ENV}, else {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--service",
        default="",
        help='health service name: "" (the node, default) or quorumlog.v1.QuorumLog',
    )
    parser.add_argument(
        "--deadline",
        metavar="SECONDS",
        default=None,
        help=f"give up after this many seconds (default {DEFAULT_DEADLINE:g})",
    )
    add_security_arguments(parser)


def address_of(args: argparse.Namespace) -> str:
    value = args.address if args.address is not None else os.environ.get(ADDRESS_ENV)
    address = value if value else DEFAULT_ADDRESS
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"--address: expected HOST:PORT, got {address!r}")
    return address


def run(args: argparse.Namespace) -> int:
    address = address_of(args)
    deadline = deadline_of(args, DEFAULT_DEADLINE)
    service: str = args.service
    shown = f"{address} service {service!r}"
    with sync_channel(address, security_of(args)) as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            response: health_pb2.HealthCheckResponse = check(
                health_pb2.HealthCheckRequest(service=service), timeout=deadline
            )
        except grpc.RpcError as error:
            call = cast(grpc.Call, error)  # the sync stack's errors are also Calls
            lines = (call.details() or "").strip().splitlines()
            detail = lines[0] if lines else "no answer"
            raise CliError(f"{shown}: {call.code().name}: {detail}", EXIT_UNHEALTHY) from None
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        raise CliError(f"{shown}: {status}", EXIT_UNHEALTHY)
    print(f"{shown}: {status}", flush=True)
    return 0
