"""Health follows the dependencies: with PostgreSQL stopped every gRPC server reports NOT_SERVING
and the gateway's /readyz answers 503 (while /healthz stays 200); once PostgreSQL is back both
flip back by themselves, without restarting any process.

This stops the shared PostgreSQL, so it lives with the chaos tests, and it waits until
PostgreSQL answers again before it ends.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.isolation import create_migrated_database, create_vhost, delete_vhost, drop_database
from tests.stack import Stack

SERVERS = {
    "billing": "REELBATCH_BILLING_GRPC_ADDR",
    "batch": "REELBATCH_BATCH_GRPC_ADDR",
    "webhook": "REELBATCH_WEBHOOK_GRPC_ADDR",
}


@pytest.fixture(scope="module")
def health_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    db_name, database_url = create_migrated_database()
    vhost, amqp_url = create_vhost()
    stack = Stack(
        database_url,
        amqp_url,
        Path(tmp_path_factory.mktemp("dependency-health")),
        workers=1,
        overrides={"REELBATCH_HEALTH_CHECK_INTERVAL_SECONDS": "0.5"},
        migrated=True,
    )
    try:
        stack.start_all()
        yield stack
    finally:
        stack.stop_all()
        drop_database(db_name)
        delete_vhost(vhost)


def _postgres(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]
    subprocess.run(
        [*command, *(["-m", "immediate"] if action == "stop" else [])], check=True, capture_output=True
    )


def _wait_until_postgres_answers(database_url: str, timeout: float = 60) -> None:
    libpq = database_url.replace("postgresql+psycopg://", "postgresql://")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(libpq, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )
        except grpc.RpcError:
            return -1
        return int(answer.status)


def _readyz(stack: Stack) -> int:
    try:
        return httpx.get(f"{stack.base_url}/readyz", timeout=3).status_code
    except httpx.HTTPError:
        return -1


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.2)


def test_stopping_postgres_flips_readiness_and_health_until_it_is_back(health_stack: Stack) -> None:
    addresses = {name: health_stack.env[variable] for name, variable in SERVERS.items()}
    assert _readyz(health_stack) == 200
    assert {name: _health(address) for name, address in addresses.items()} == dict.fromkeys(
        addresses, health_pb2.HealthCheckResponse.SERVING
    )
    _postgres("stop")
    try:
        _wait_until(lambda: _readyz(health_stack) == 503, 20, "/readyz answers 503")
        _wait_until(
            lambda: all(_health(a) == health_pb2.HealthCheckResponse.NOT_SERVING for a in addresses.values()),
            20,
            "every gRPC server reports NOT_SERVING",
        )
        assert httpx.get(f"{health_stack.base_url}/healthz", timeout=3).status_code == 200
    finally:
        _postgres("start")
        _wait_until_postgres_answers(health_stack.database_url)
    _wait_until(
        lambda: all(_health(a) == health_pb2.HealthCheckResponse.SERVING for a in addresses.values()),
        30,
        "every gRPC server reports SERVING again",
    )
    _wait_until(lambda: _readyz(health_stack) == 200, 30, "/readyz answers 200 again")
    assert all(process.poll() is None for process in health_stack.processes.values()), "no process exited"
