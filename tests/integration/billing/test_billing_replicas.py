"""Two billing replicas on one tenant's money at once: no deadlock, and the money exact.

Each replica is what a billing process is: its own engine (connections), its own handlers and its
own `billing.outcomes` consumer on its own RabbitMQ connection; the two compete for the outcome
messages of many batches of ONE tenant, so their transactions post to the same wallet (refunds)
at the same time, while both replicas also top the wallet up and reserve new batches on it, and
both settle the batches. PostgreSQL counts every deadlock it breaks in `pg_stat_database`; the
count must not grow (with `FOR UPDATE` locks, before ADR-046, it grew within seconds).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import psycopg
import pytest
from reelbatch.proto.events.v1 import events_pb2

from libs.config import DEFAULT_PRICING
from libs.db import Database
from libs.messaging.contract import Envelope
from libs.messaging.rabbit import RabbitBus
from services.billing.adapters.repository import BillingRepository
from services.billing.bootstrap import price_list
from services.billing.domain.ids import BatchId, TaskId, TenantId
from services.billing.domain.ledger import OutcomeKind, TaskOutcome
from services.billing.domain.pricing import QuoteLine
from services.billing.domain.settlement import SettlementStatus
from services.billing.entrypoints.consumer import start_outcome_consumer
from services.billing.use_cases.handlers import BillingHandlers
from tests.isolation import ADMIN_DSN, create_migrated_database, create_vhost, delete_vhost, drop_database

from .billing_testkit import RecordedOutcomes, assert_ledger_invariants, eventually

MODEL = "sora-2"
PRICE = DEFAULT_PRICING[MODEL].credits_per_video
BATCHES = 40
ITEMS = 125  # 5,000 outcomes
REFUNDS = len(range(0, ITEMS, 4))  # each fourth task of a batch fails: a refund to the wallet
OUTCOMES_PER_MESSAGE = 25  # one worker transaction's outcomes of one batch
MESSAGES_PER_CHUNK = 8  # a consumer's chunk spans several batches: one transaction, many holds
OUTCOMES_PER_TRANSACTION = 100
TOP_UP = 7
EXTRA_BATCH_ITEMS = 2
OPENING_CREDITS = BATCHES * ITEMS * PRICE + 10_000


@dataclass
class Replica:
    """One billing process: its engine, its handlers and its outcome consumer."""

    database: Database
    handlers: BillingHandlers
    bus: RabbitBus
    closed: bool = False

    async def close(self) -> None:
        """Stops consuming and closes every connection (once)."""
        if not self.closed:
            self.closed = True
            await self.bus.close()
            await self.database.close()


@dataclass
class WalletTraffic:
    """What one replica's loop of top-ups and reservations did to the wallet meanwhile."""

    top_ups: int = 0
    reserved: int = 0


@pytest.fixture
def own_database() -> Iterator[tuple[str, str]]:
    """A database of this test's own (name, URL): its deadlock count and whole-table checks are
    this test's alone."""
    name, url = create_migrated_database()
    try:
        yield name, url
    finally:
        drop_database(name)


@pytest.fixture
def own_amqp_url() -> Iterator[str]:
    """A vhost of this test's own: its billing.outcomes queue holds only this test's messages."""
    name, url = create_vhost()
    try:
        yield url
    finally:
        delete_vhost(name)


def _handlers(database: Database, source: RecordedOutcomes) -> BillingHandlers:
    return BillingHandlers(
        BillingRepository(database),
        price_list(dict(DEFAULT_PRICING)),
        outcome_source=source,
        chunk_size=OUTCOMES_PER_TRANSACTION,
    )


@pytest.fixture
async def replicas(
    own_database: tuple[str, str], own_amqp_url: str
) -> AsyncIterator[tuple[Replica, Replica, RecordedOutcomes]]:
    """Two replicas, and the batch service they both pull missing outcomes from."""
    source = RecordedOutcomes()
    started: list[Replica] = []
    try:
        for _ in range(2):
            database = Database(own_database[1], pool_size=4)
            handlers = _handlers(database, source)
            bus = await RabbitBus.connect(own_amqp_url)
            started.append(Replica(database, handlers, bus))
            await start_outcome_consumer(
                bus, handlers, chunk_size=MESSAGES_PER_CHUNK, chunk_wait_seconds=0.01
            )
        yield started[0], started[1], source
    finally:
        for replica in started:
            await replica.close()


def _deadlocks(database_name: str) -> int:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(deadlocks, 0) FROM pg_stat_database WHERE datname = %s", (database_name,)
        ).fetchone()
    return int(row[0]) if row else 0


async def _sessions_closed(database_name: str) -> bool:
    """No session on the database any more: each one flushed its statistics (the deadlocks it
    detected among them) when it ended."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database_name,)
        ).fetchone()
    return row is not None and row[0] == 0


def _messages(tenant: TenantId, batches: list[BatchId]) -> list[Envelope]:
    """Every task's outcome (each fourth one a failure, i.e. a refund to the wallet) in messages
    of one batch each, batches interleaved; then every batch's `batch.finished`."""
    envelopes: list[Envelope] = []
    for start in range(0, ITEMS, OUTCOMES_PER_MESSAGE):
        for batch in batches:
            message = events_pb2.TaskOutcomes(batch_id=str(batch), tenant_id=str(tenant))
            for n in range(start, start + OUTCOMES_PER_MESSAGE):
                if n % 4 == 0:
                    message.failed.append(
                        events_pb2.TaskFailed(
                            task_id=f"{batch}-{n}",
                            batch_id=str(batch),
                            tenant_id=str(tenant),
                            model=MODEL,
                            failure_type="timeout",
                        )
                    )
                else:
                    message.succeeded.append(
                        events_pb2.TaskSucceeded(
                            task_id=f"{batch}-{n}", batch_id=str(batch), tenant_id=str(tenant), model=MODEL
                        )
                    )
            envelopes.append(Envelope.of("task.outcomes", message))
    envelopes += [
        Envelope.of("batch.finished", events_pb2.BatchFinished(batch_id=str(batch), total_count=ITEMS))
        for batch in batches
    ]
    return envelopes


def _recorded(batch: BatchId) -> list[TaskOutcome]:
    """The batch's outcomes as the batch service answers them (settlement pulls missing ones)."""
    return [
        TaskOutcome(
            batch_id=batch,
            task_id=TaskId(f"{batch}-{n}"),
            model=MODEL,
            kind=OutcomeKind.REFUND if n % 4 == 0 else OutcomeKind.CAPTURE,
        )
        for n in range(ITEMS)
    ]


async def _wallet_traffic(
    replica: Replica, tenant: TenantId, name: str, done: asyncio.Event
) -> WalletTraffic:
    """Tops the wallet up, and every fifth time reserves a small new batch, until `done`."""
    traffic = WalletTraffic()
    while not done.is_set():
        await replica.handlers.top_up(tenant, TOP_UP, f"{name}-{traffic.top_ups}")
        traffic.top_ups += 1
        if traffic.top_ups % 5 == 0:
            await replica.handlers.reserve(
                tenant, BatchId(uuid.uuid4()), [QuoteLine(MODEL, EXTRA_BATCH_ITEMS)]
            )
            traffic.reserved += 1
    return traffic


async def test_two_replicas_apply_one_tenants_outcomes_concurrently_without_a_deadlock_and_exact_money(
    replicas: tuple[Replica, Replica, RecordedOutcomes], own_database: tuple[str, str]
) -> None:
    first, second, source = replicas
    database_name = own_database[0]
    tenant = await first.handlers.create_tenant("two replicas")
    await first.handlers.top_up(tenant, OPENING_CREDITS, "opening")
    batches = [BatchId(uuid.uuid4()) for _ in range(BATCHES)]
    for batch in batches:
        await first.handlers.reserve(tenant, batch, [QuoteLine(MODEL, ITEMS)])
        source.by_batch[batch] = _recorded(batch)
    deadlocks_before = _deadlocks(database_name)

    done = asyncio.Event()
    traffic = [
        asyncio.create_task(_wallet_traffic(replica, tenant, name, done))
        for replica, name in ((first, "first"), (second, "second"))
    ]
    started = time.monotonic()
    await second.bus.publish(_messages(tenant, batches))

    async def all_settled() -> bool:
        async with first.database.raw_connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM billing.batch_holds"
                " WHERE batch_id = ANY(%s) AND settlement_status <> 'pending'",
                (batches,),
            )
            row = await cursor.fetchone()
        return row is not None and row[0] == BATCHES

    try:
        await eventually(all_settled, timeout=45, what="every batch settled")
    finally:
        applied_in = time.monotonic() - started
        done.set()
        wallet = [await task for task in traffic]
    print(
        f"\n{BATCHES * ITEMS} outcomes applied and settled by two replicas in {applied_in:.2f} s,"
        f" meanwhile {[(w.top_ups, w.reserved) for w in wallet]} (top-ups, reservations) per replica"
    )

    # Every session ends, flushing what it counted; only then is the database's count complete.
    for replica in (first, second):
        await replica.close()
    await eventually(lambda: _sessions_closed(database_name), timeout=10, what="the sessions ended")
    assert _deadlocks(database_name) == deadlocks_before, "PostgreSQL broke deadlocks between the replicas"

    checker = Database(own_database[1], pool_size=1)
    try:
        handlers = _handlers(checker, source)
        for batch in batches:
            hold = await handlers.get_batch_settlement(batch)
            assert (hold.captured, hold.refunded, hold.released, hold.outcomes_applied) == (
                (ITEMS - REFUNDS) * PRICE,
                REFUNDS * PRICE,
                0,
                ITEMS,
            )
            assert hold.settlement_status is SettlementStatus.REFUNDED
        top_ups = sum(w.top_ups for w in wallet)
        extra = sum(w.reserved for w in wallet) * EXTRA_BATCH_ITEMS * PRICE
        balance = await handlers.get_balance(tenant)
        assert balance.available_credits == (
            OPENING_CREDITS + top_ups * TOP_UP - BATCHES * (ITEMS - REFUNDS) * PRICE - extra
        )
        assert balance.held_credits == extra
        await assert_ledger_invariants(checker)
    finally:
        await checker.close()
