"""`DependencyMonitor` against a real database: health follows the reachability of dependencies."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.db import Database
from libs.rpc.server import DependencyMonitor, start_grpc_server

SERVICE = "reelbatch.test.Probe"
# Nothing listens on port 1: a database that is down, as the monitor sees it.
UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"


async def _status(port: int, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
        return int(answer.status)


async def test_a_server_is_not_serving_while_a_dependency_is_unreachable_and_serving_once_back(
    database_url: str,
) -> None:
    reachable = Database(database_url, pool_size=1)
    unreachable = Database(UNREACHABLE_DATABASE, pool_size=1)
    server = await start_grpc_server("127.0.0.1:0", [], [SERVICE])
    probes = {"database": reachable.ping, "broker": reachable.ping}
    monitor = DependencyMonitor(server, probes, timeout_seconds=3)
    try:
        assert await monitor.check_once() == frozenset()
        assert await _status(server.port, SERVICE) == health_pb2.HealthCheckResponse.SERVING

        probes["broker"] = unreachable.ping
        monitor = DependencyMonitor(server, probes, timeout_seconds=3)
        assert await monitor.check_once() == frozenset({"broker"})
        assert await _status(server.port, SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await _status(server.port, "") == health_pb2.HealthCheckResponse.NOT_SERVING

        probes["broker"] = reachable.ping
        monitor = DependencyMonitor(server, probes, timeout_seconds=3)
        monitor.down = frozenset({"broker"})
        assert await monitor.check_once() == frozenset()
        assert await _status(server.port, SERVICE) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)
        await reachable.close()
        await unreachable.close()


async def test_a_dependency_the_server_does_not_need_to_serve_is_reported_but_keeps_it_serving(
    database_url: str,
) -> None:
    reachable = Database(database_url, pool_size=1)
    unreachable = Database(UNREACHABLE_DATABASE, pool_size=1)
    server = await start_grpc_server("127.0.0.1:0", [], [SERVICE])
    probes = {"database": reachable.ping, "broker": unreachable.ping}
    try:
        monitor = DependencyMonitor(server, probes, timeout_seconds=3, required={"database"})
        assert await monitor.check_once() == frozenset({"broker"})
        assert await _status(server.port, "") == health_pb2.HealthCheckResponse.SERVING

        probes["database"] = unreachable.ping
        monitor = DependencyMonitor(server, probes, timeout_seconds=3, required={"database"})
        assert await monitor.check_once() == frozenset({"broker", "database"})
        assert await _status(server.port, "") == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await server.stop(0)
        await reachable.close()
        await unreachable.close()


async def test_a_stopped_server_stays_not_serving_whatever_a_late_check_finds(database_url: str) -> None:
    reachable = Database(database_url, pool_size=1)
    server = await start_grpc_server("127.0.0.1:0", [], [SERVICE])
    monitor = DependencyMonitor(server, {"database": reachable.ping})
    try:
        await server.set_serving(False)
        monitor.down = frozenset({"database"})
        await server.stop(0)
        # The state a late check writes is what a new health request would read.
        await monitor.check_once()
        answer = await server.health.Check(health_pb2.HealthCheckRequest(service=SERVICE), None)
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await reachable.close()
