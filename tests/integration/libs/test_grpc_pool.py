"""A channel to several replicas balances over the healthy ones (real gRPC servers on 127.0.0.1).

A replica that reports NOT_SERVING (draining, or its database is down) gets no call once its
clients' health watch hears it, and gets its share again when it reports SERVING.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from libs.rpc import server as server_module
from libs.rpc.client import open_channel
from libs.rpc.server import GrpcServer, start_grpc_server

SERVICE = "reelbatch.test.Pool"
# How long a health status change may take to reach the client's balancer.
NOTICE_SECONDS = 5.0


@pytest.fixture
async def replicas() -> AsyncIterator[list[GrpcServer]]:
    started: list[GrpcServer] = []
    for index in range(2):

        async def whoami(request: bytes, context: object, index: int = index) -> bytes:
            return str(index).encode()

        def register(server: grpc.aio.Server, whoami: Callable[..., Awaitable[bytes]] = whoami) -> None:
            handler = grpc.unary_unary_rpc_method_handler(whoami)
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(SERVICE, {"Who": handler}),)
            )

        started.append(await start_grpc_server("127.0.0.1:0", [register], [SERVICE]))
    yield started
    for server in started:
        await server.stop(0)


async def _served_by(channel: grpc.aio.Channel, calls: int) -> Counter[str]:
    who = channel.unary_unary(f"/{SERVICE}/Who", request_serializer=None, response_deserializer=None)
    counts: Counter[str] = Counter()
    for _ in range(calls):
        answer: bytes = await who(b"", timeout=5)
        counts[answer.decode()] += 1
    return counts


async def _until(channel: grpc.aio.Channel, expected: set[str]) -> None:
    """Calls until one round of 20 is served by exactly the `expected` replicas (bounded)."""
    deadline = time.monotonic() + NOTICE_SECONDS
    while set(await _served_by(channel, 20)) != expected:
        assert time.monotonic() < deadline, f"calls never settled on replicas {expected}"


async def test_a_not_serving_replica_gets_no_calls_and_its_share_back_when_serving(
    replicas: list[GrpcServer],
) -> None:
    async with open_channel(",".join(f"127.0.0.1:{server.port}" for server in replicas)) as channel:
        await _until(channel, {"0", "1"})
        spread = await _served_by(channel, 200)
        assert min(spread.values()) >= 70, spread

        await replicas[0].set_serving(False)
        await _until(channel, {"1"})
        assert await _served_by(channel, 100) == Counter({"1": 100})

        await replicas[0].set_serving(True)
        await _until(channel, {"0", "1"})
        assert min((await _served_by(channel, 200)).values()) >= 70


async def test_connections_are_recycled_so_clients_re_resolve_and_find_new_replicas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Short ages so the test sees a reconnection (production: 120 s, ADR-132).
    monkeypatch.setattr(server_module, "MAX_CONNECTION_AGE_SECONDS", 0.3)
    monkeypatch.setattr(server_module, "MAX_CONNECTION_AGE_GRACE_SECONDS", 0.3)

    async def peer(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return context.peer().encode()

    def register(server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(peer)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Who": handler}),))

    server = await start_grpc_server("127.0.0.1:0", [register], [SERVICE])
    try:
        async with open_channel(f"127.0.0.1:{server.port}") as channel:
            peers: set[str] = set()
            deadline = time.monotonic() + NOTICE_SECONDS
            while len(peers) < 2:
                assert time.monotonic() < deadline, "the connection was never recycled"
                # Every call succeeds across the recycling (no UNAVAILABLE reaches the caller).
                peers |= set(await _served_by(channel, 5))
                await asyncio.sleep(0.1)
    finally:
        await server.stop(0)
