"""The billing.outcomes consumer against real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractQueue
from reelbatch.proto.events.v1 import events_pb2

from libs.db import Database
from libs.messaging.contract import BILLING_OUTCOMES_QUEUE, Envelope
from libs.messaging.outbox import OutboxRelay
from libs.messaging.rabbit import EXCHANGE, RabbitBus, declare_topology
from services.billing.adapters.tables import outbox
from services.billing.domain.ids import BatchId
from services.billing.domain.pricing import QuoteLine
from services.billing.domain.settlement import SettlementStatus
from services.billing.entrypoints.consumer import start_outcome_consumer

from .billing_testkit import HandlersFactory, RecordedOutcomes, assert_ledger_invariants, eventually


@pytest.fixture
async def settled_events(amqp_url: str) -> AsyncIterator[AbstractQueue]:
    """A temporary queue bound to `batch.settled`; also empties billing.outcomes of leftovers."""
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    outcomes_queue = await declare_topology(channel, only=BILLING_OUTCOMES_QUEUE)
    await outcomes_queue.purge()
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="batch.settled")
    yield queue
    await connection.close()


async def test_consumer_settles_a_batch_whose_finish_event_overtook_its_duplicated_task_events(
    make_handlers: HandlersFactory,
    outcomes: RecordedOutcomes,
    database: Database,
    amqp_url: str,
    settled_events: AbstractQueue,
) -> None:
    handlers = make_handlers(outcome_source=outcomes, chunk_size=50)
    tenant = await handlers.create_tenant("consumer")
    await handlers.top_up(tenant, 100, "r")
    batch = BatchId(uuid.uuid4())
    await handlers.reserve(tenant, batch, [QuoteLine("sora-2", 3)])

    bus = await RabbitBus.connect(amqp_url)
    stopping = asyncio.Event()
    relay = OutboxRelay(database, outbox, bus, batch_size=100, poll_seconds=0.5)
    relaying = asyncio.create_task(relay.run(stopping))
    try:
        await start_outcome_consumer(bus, handlers, chunk_size=50, chunk_wait_seconds=0.05)
        await bus.publish(
            [Envelope.of("batch.finished", events_pb2.BatchFinished(batch_id=str(batch), total_count=3))]
        )

        async def settlement_was_attempted() -> bool:
            return outcomes.calls >= 1

        await eventually(settlement_was_attempted, what="a refused settlement attempt")
        assert (await handlers.get_batch_settlement(batch)).settlement_status is SettlementStatus.PENDING

        succeeded = [
            events_pb2.TaskSucceeded(
                task_id=f"{batch}-{n}", batch_id=str(batch), tenant_id=str(tenant), model="sora-2"
            )
            for n in (1, 3)
        ]
        failed = events_pb2.TaskFailed(
            task_id=f"{batch}-2",
            batch_id=str(batch),
            tenant_id=str(tenant),
            model="sora-2",
            failure_type="cancelled",
        )
        await bus.publish(
            [Envelope.of("task.succeeded", m) for m in succeeded + succeeded]
            + [Envelope.of("task.failed", failed), Envelope.of("task.failed", failed)]
        )

        async def is_settled() -> bool:
            return (await handlers.get_batch_settlement(batch)).is_settled

        await eventually(is_settled, timeout=20, what="settlement")
        settlement = await handlers.get_batch_settlement(batch)
        assert (settlement.captured, settlement.refunded, settlement.outcomes_applied) == (20, 10, 3)
        assert settlement.settlement_status is SettlementStatus.REFUNDED
        assert (await handlers.get_balance(tenant)).available_credits == 80

        published: list[events_pb2.BatchSettled] = []

        async def batch_settled_was_published() -> bool:
            message = await settled_events.get(no_ack=True, fail=False)
            if message is not None:
                event = events_pb2.BatchSettled.FromString(message.body)
                if event.batch_id == str(batch):
                    published.append(event)
            return bool(published)

        await eventually(batch_settled_was_published, what="a batch.settled event")
        assert (published[0].captured_credits, published[0].refunded_credits) == (20, 10)
        assert published[0].settlement_status == "refunded"
        await assert_ledger_invariants(database)
    finally:
        stopping.set()
        await relaying
        await bus.close()


async def test_chunked_task_outcomes_are_applied_once_and_the_batch_settles(
    make_handlers: HandlersFactory,
    outcomes: RecordedOutcomes,
    database: Database,
    amqp_url: str,
    settled_events: AbstractQueue,
) -> None:
    handlers = make_handlers(outcome_source=outcomes, chunk_size=2)
    tenant = await handlers.create_tenant("chunked consumer")
    await handlers.top_up(tenant, 100, "r")
    batch = BatchId(uuid.uuid4())
    await handlers.reserve(tenant, batch, [QuoteLine("sora-2", 3)])

    def succeeded(n: int) -> events_pb2.TaskSucceeded:
        return events_pb2.TaskSucceeded(
            task_id=f"{batch}-{n}", batch_id=str(batch), tenant_id=str(tenant), model="sora-2"
        )

    # One worker transaction's outcomes in one message, as workers publish them; a chunk of 2
    # per billing transaction splits it. Delivered twice, then the finish.
    chunk = events_pb2.TaskOutcomes(
        batch_id=str(batch),
        tenant_id=str(tenant),
        succeeded=[succeeded(1), succeeded(3)],
        failed=[
            events_pb2.TaskFailed(
                task_id=f"{batch}-2",
                batch_id=str(batch),
                tenant_id=str(tenant),
                model="sora-2",
                failure_type="content_policy",
            )
        ],
    )
    bus = await RabbitBus.connect(amqp_url)
    try:
        await start_outcome_consumer(bus, handlers, chunk_size=2, chunk_wait_seconds=0.01)
        await bus.publish(
            [
                Envelope.of("task.outcomes", chunk),
                Envelope.of("task.outcomes", chunk),
                Envelope.of("batch.finished", events_pb2.BatchFinished(batch_id=str(batch), total_count=3)),
            ]
        )

        async def is_settled() -> bool:
            return (await handlers.get_batch_settlement(batch)).is_settled

        await eventually(is_settled, timeout=20, what="settlement")
        settlement = await handlers.get_batch_settlement(batch)
        assert (settlement.captured, settlement.refunded, settlement.outcomes_applied) == (20, 10, 3)
        assert (await handlers.get_balance(tenant)).available_credits == 80
        # Every outcome came in the messages: nothing had to be pulled from the batch service.
        assert outcomes.calls == 0
        await assert_ledger_invariants(database)
    finally:
        await bus.close()
