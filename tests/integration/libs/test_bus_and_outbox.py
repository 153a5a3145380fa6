"""The bus and the outbox against real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from reelbatch.proto.events.v1 import events_pb2
from sqlalchemy import MetaData, func, select, text

from libs.bus import Delivery, Envelope, QueueSpec, RabbitBus
from libs.db import Database
from libs.outbox import OutboxRelay, add_events, outbox_notify_ddl, outbox_table


async def _until(condition: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def bus(amqp_url: str) -> AsyncIterator[RabbitBus]:
    connected = await RabbitBus.connect(amqp_url)
    yield connected
    await connected.close()


def _failed(task_id: str) -> Envelope:
    return Envelope.of("task.failed", events_pb2.TaskFailed(task_id=task_id, failure_type="timeout"))


async def test_published_events_reach_a_chunked_consumer_exactly_as_sent(bus: RabbitBus) -> None:
    received: list[Delivery] = []
    chunk_sizes: list[int] = []

    async def handle(deliveries: Sequence[Delivery]) -> None:
        chunk_sizes.append(len(deliveries))
        received.extend(deliveries)

    queue = QueueSpec("test.chunked", ("task.failed",))
    await bus.consume(
        queue, handle, [events_pb2.TaskFailed], prefetch=100, max_batch=50, max_wait_seconds=0.05
    )
    sent = [_failed(f"t{i}") for i in range(120)]
    await bus.publish(sent)
    await _until(lambda: len(received) >= 120)
    assert sorted(d.message.task_id for d in received) == sorted(f"t{i}" for i in range(120))  # type: ignore[attr-defined]
    assert {d.envelope.message_id for d in received} == {e.message_id for e in sent}
    assert max(chunk_sizes) > 1, "messages should be handed over in chunks"


async def test_a_message_that_keeps_failing_is_dead_lettered_and_others_still_flow(bus: RabbitBus) -> None:
    handled: list[str] = []

    async def handle(deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            task_id = delivery.message.task_id  # type: ignore[attr-defined]
            if task_id == "poison":
                raise RuntimeError("cannot handle this one")
            handled.append(task_id)

    queue = QueueSpec("test.poison", ("task.failed",), delivery_limit=1)
    await bus.consume(
        queue, handle, [events_pb2.TaskFailed], prefetch=10, max_batch=10, max_wait_seconds=0.05
    )
    await bus.publish([_failed("ok-1"), _failed("poison"), _failed("ok-2")])
    await _until(lambda: {"ok-1", "ok-2"} <= set(handled))

    dead: list[str] = []

    async def collect(deliveries: Sequence[Delivery]) -> None:
        dead.extend(d.message.task_id for d in deliveries)  # type: ignore[attr-defined]

    await bus.consume(queue.dead_letters(), collect, [events_pb2.TaskFailed], prefetch=10)
    await _until(lambda: dead == ["poison"], timeout=20)


async def test_outbox_rows_are_published_once_and_deleted(database_url: str, bus: RabbitBus) -> None:
    database = Database(database_url)
    metadata = MetaData()
    table = outbox_table(metadata, "outbox_test")
    async with database.connection() as conn:
        await conn.execute(text("CREATE SCHEMA IF NOT EXISTS outbox_test"))
        await conn.run_sync(metadata.create_all)
        for statement in outbox_notify_ddl("outbox_test"):
            await conn.execute(text(statement))

    received: list[str] = []

    async def handle(deliveries: Sequence[Delivery]) -> None:
        received.extend(d.message.task_id for d in deliveries)  # type: ignore[attr-defined]

    await bus.consume(
        QueueSpec("test.outbox", ("task.failed",)),
        handle,
        [events_pb2.TaskFailed],
        prefetch=100,
        max_batch=100,
    )
    relay = OutboxRelay(database, table, bus, batch_size=7, poll_seconds=5.0)
    stopping = asyncio.Event()
    running = asyncio.create_task(relay.run(stopping))
    try:
        async with database.transaction() as session:
            await add_events(session, table, [_failed(f"o{i}") for i in range(20)])
        # Woken by NOTIFY, not by the 5 s poll.
        await _until(lambda: len(received) >= 20, timeout=4)
        await _until(lambda: relay.published == 20, timeout=4)
        async with database.connection() as conn:
            left = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
        assert left == 0
        assert sorted(received) == sorted(f"o{i}" for i in range(20))
    finally:
        stopping.set()
        await running
        await database.close()
