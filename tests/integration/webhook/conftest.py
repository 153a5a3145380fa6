"""Webhook handlers on a real PostgreSQL, delivering over real HTTP to a local receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from reelbatch.proto.batch.v1 import batch_pb2

from libs.db import Database
from services.webhook.adapters.batch_client import batch_snapshot
from services.webhook.adapters.network import HttpSender, SystemResolver
from services.webhook.adapters.repository import WebhookRepository
from services.webhook.bootstrap import migrate
from services.webhook.domain.destinations import DestinationPolicy
from services.webhook.domain.records import BatchSnapshot
from services.webhook.entrypoints.deliverer import Deliverer
from services.webhook.use_cases.dependencies import DeliveryPolicy
from services.webhook.use_cases.handlers import WebhookHandlers

from .receiver import Receiver


class FixedBatches:
    """The batch service's answer for settled batches: completed, 19 of 20 succeeded."""

    def __init__(self) -> None:
        self.status = "partial"

    async def batch(self, batch_id: str) -> BatchSnapshot:
        answer = batch_pb2.Batch(
            batch_id=batch_id,
            tenant_id="",
            status=self.status,
            total_count=20,
            success_count=19,
            failed_count=1,
            cancelled_count=0,
            pending_count=0,
            frozen_credits=200,
            credits_spent=190,
            refunded_credits=10,
            settlement_status="pending",
            webhook_url="",
        )
        answer.created_at.FromDatetime(datetime(2026, 1, 20, tzinfo=UTC))
        answer.finished_at.FromDatetime(datetime(2026, 1, 20, 0, 1, tzinfo=UTC))
        return batch_snapshot(answer)


@pytest.fixture(scope="module")
def webhook_database_url(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture
async def database(webhook_database_url: str) -> AsyncIterator[Database]:
    db = Database(webhook_database_url, pool_size=8)
    yield db
    await db.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()


HandlersFactory = Callable[..., WebhookHandlers]


@pytest.fixture
async def make_handlers(database: Database) -> AsyncIterator[HandlersFactory]:
    senders: list[HttpSender] = []

    def build(
        *,
        schedule: tuple[float, ...] = (0, 0.05, 0.05),
        timeout: float = 1.0,
        allow_private: bool = True,
        lease_seconds: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> WebhookHandlers:
        sender = HttpSender(timeout)
        senders.append(sender)
        return WebhookHandlers(
            WebhookRepository(database),
            destinations=DestinationPolicy(allow_http=True, allow_private=allow_private),
            delivery=DeliveryPolicy(
                retry_schedule_seconds=schedule,
                jitter_fraction=0.0,
                lease_seconds=lease_seconds,
                secret_overlap_seconds=3600,
            ),
            resolver=SystemResolver(),
            sender=sender,
            batches=FixedBatches(),
            clock=clock,
        )

    yield build
    for sender in senders:
        await sender.close()


@pytest.fixture
async def run_deliverer() -> AsyncIterator[Callable[[WebhookHandlers], None]]:
    stopping = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    def start(handlers: WebhookHandlers) -> None:
        deliverer = Deliverer(handlers, concurrency=32, claim_batch_size=50, poll_seconds=0.02)
        tasks.append(asyncio.create_task(deliverer.run(stopping)))

    yield start
    stopping.set()
    # As the process does: sends in flight get a grace period, then are cancelled and released.
    if tasks:
        await asyncio.wait(tasks, timeout=0.5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
