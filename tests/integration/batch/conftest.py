"""Fixtures of the batch integration tests: migrated database, fake billing, event tap, SQL access."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aio_pika
import psycopg
import pytest
from reelbatch.proto.billing.v1 import billing_pb2_grpc
from reelbatch.proto.events.v1 import events_pb2

from libs.config import Settings
from libs.db import libpq_url
from libs.messaging.rabbit import EXCHANGE
from libs.rpc.server import start_grpc_server
from services.batch.bootstrap import migrate
from tests.integration.batch.batch_harness import (
    EVENT_TYPES,
    EventTap,
    FakeBilling,
    FakeBillingServer,
)
from tests.stack import free_port


@pytest.fixture(scope="session")
def batch_database_url(database_url: str) -> str:
    """The session database with the batch schema migrated (twice: migrating is idempotent)."""
    migrate(database_url)
    migrate(database_url)
    return database_url


@pytest.fixture
async def fake_billing() -> AsyncIterator[FakeBillingServer]:
    # Only Quote, Reserve and ReserveMany: the generated base refuses the rest at runtime.
    servicer = FakeBilling()  # type: ignore[abstract]
    server = await start_grpc_server(
        "127.0.0.1:0",
        [lambda s: billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, s)],
        ["reelbatch.proto.billing.v1.BillingService"],
    )
    try:
        yield FakeBillingServer(servicer, server)
    finally:
        await server.stop(0)


@pytest.fixture
def make_settings(
    batch_database_url: str, amqp_url: str, fake_billing: FakeBillingServer, tmp_path: Path
) -> Callable[..., Settings]:
    """Settings for one test: tiny latencies, fast recovery, this test's fake billing."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": batch_database_url,
            "amqp_url": amqp_url,
            "billing_grpc_addr": fake_billing.address,
            "batch_grpc_addr": f"127.0.0.1:{free_port()}",
            "database_pool_size": 5,
            "grpc_deadline_seconds": 5.0,
            "simulated_latency_seconds": 0.002,
            "provider_timeout_seconds": 0.2,
            "retry_base_seconds": 0.01,
            "retry_max_seconds": 0.05,
            "recovery_interval_seconds": 0.1,
            "reserving_grace_seconds": 0.0,
            "outbox_poll_seconds": 0.1,
            "task_lease_seconds": 5.0,
            "asset_dir": str(tmp_path / "assets"),
            "public_base_url": "http://videos.test",
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
async def event_tap(amqp_url: str) -> AsyncIterator[EventTap]:
    """A temporary queue bound to every routing key of the events exchange."""
    tap = EventTap()
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(f"test.tap.{uuid.uuid4().hex}", exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="#")

    async def record(raw: aio_pika.abc.AbstractIncomingMessage) -> None:
        message_type = EVENT_TYPES.get(raw.type or "")
        if message_type is not None:
            message = message_type.FromString(raw.body)
            if isinstance(message, events_pb2.TaskOutcomes):
                # One message per chunk of outcomes: seen as the per-task events it carries.
                tap.seen += [("task.succeeded", task) for task in message.succeeded]
                tap.seen += [("task.failed", task) for task in message.failed]
            else:
                tap.seen.append((raw.routing_key or "", message))
        await raw.ack()

    await queue.consume(record)
    try:
        yield tap
    finally:
        await connection.close()


@pytest.fixture
async def sql(batch_database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A plain autocommit connection to inspect or tamper with the batch tables."""
    async with await psycopg.AsyncConnection.connect(libpq_url(batch_database_url), autocommit=True) as conn:
        yield conn
