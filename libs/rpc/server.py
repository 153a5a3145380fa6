"""Builds gRPC servers the same way in every service: error translation, health, reflection."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from libs.rpc.errors import ErrorTranslatingInterceptor


class GrpcServer:
    """A started `grpc.aio` server plus the health servicer that reports its status."""

    def __init__(
        self,
        server: grpc.aio.Server,
        health_servicer: Any,  # grpc_health ships no type stubs
        service_names: Sequence[str],
        port: int,
    ) -> None:
        self.server = server
        self.health = health_servicer
        self.service_names = tuple(service_names)
        self.port = port

    async def set_serving(self, serving: bool) -> None:
        """Reports SERVING or NOT_SERVING for every service of this server (and the server itself)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in (*self.service_names, ""):
            await self.health.set(name, status)

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stops accepting calls and lets in-flight ones finish within the grace period."""
        await self.set_serving(False)
        await self.server.stop(grace_seconds)


async def start_grpc_server(
    address: str,
    register: Sequence[Callable[[grpc.aio.Server], None]],
    service_names: Sequence[str],
) -> GrpcServer:
    """Binds `address` (port 0 picks a free port), registers servicers, and starts serving."""
    server = grpc.aio.server(
        interceptors=[ErrorTranslatingInterceptor()],
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ],
    )
    for add in register:
        add(server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot bind gRPC server to {address}")
    await server.start()
    started = GrpcServer(server, health_servicer, service_names, port)
    await started.set_serving(True)
    return started
