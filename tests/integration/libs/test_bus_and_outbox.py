"""The bus and the outbox against real RabbitMQ and PostgreSQL.

Every bus test runs on both implementations (RabbitMQ and the durable Postgres bus) with the same
assertions: services must not be able to tell them apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from reelbatch.proto.events.v1 import events_pb2
from sqlalchemy import MetaData, func, select, text

from libs.db import Database
from libs.messaging.contract import Bus, Delivery, Envelope, QueueSpec
from libs.messaging.outbox import OutboxRelay, add_events, outbox_notify_ddl, outbox_table
from libs.messaging.postgres.bus import PostgresBus
from libs.messaging.rabbit import RabbitBus


async def _until(condition: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def _connect(kind: str, amqp_url: str, database_url: str) -> Bus:
    if kind == "rabbitmq":
        return await RabbitBus.connect(amqp_url)
    return await PostgresBus.connect(database_url)


@pytest.fixture(params=["rabbitmq", "postgres"])
def bus_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def bus(bus_kind: str, amqp_url: str, database_url: str) -> AsyncIterator[Bus]:
    connected = await _connect(bus_kind, amqp_url, database_url)
    yield connected
    await connected.close()


def _failed(task_id: str) -> Envelope:
    return Envelope.of("task.failed", events_pb2.TaskFailed(task_id=task_id, failure_type="timeout"))


async def test_published_events_reach_a_chunked_consumer_exactly_as_sent(bus: Bus) -> None:
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


async def test_a_message_that_keeps_failing_is_dead_lettered_and_others_still_flow(bus: Bus) -> None:
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


async def test_outbox_rows_are_published_once_and_deleted(database_url: str, bus: Bus, bus_kind: str) -> None:
    database = Database(database_url)
    metadata = MetaData()
    schema = f"outbox_test_{bus_kind}"
    table = outbox_table(metadata, schema)
    async with database.connection() as conn:
        await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        await conn.run_sync(metadata.create_all)
        for statement in outbox_notify_ddl(schema):
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


async def test_messages_held_by_a_consumer_that_closes_go_to_the_next_consumer(
    bus_kind: str, amqp_url: str, database_url: str
) -> None:
    queue = QueueSpec("test.handback", ("task.failed",))
    in_hand: list[Delivery] = []
    never = asyncio.Event()

    async def hold(deliveries: Sequence[Delivery]) -> None:
        in_hand.extend(deliveries)
        await never.wait()

    first = await _connect(bus_kind, amqp_url, database_url)
    await first.consume(queue, hold, [events_pb2.TaskFailed], prefetch=10)
    await first.publish([_failed(f"h{i}") for i in range(3)])
    await _until(lambda: len(in_hand) == 1)
    await first.close()

    received: list[Delivery] = []

    async def collect(deliveries: Sequence[Delivery]) -> None:
        received.extend(deliveries)

    second = await _connect(bus_kind, amqp_url, database_url)
    try:
        await second.consume(queue, collect, [events_pb2.TaskFailed], prefetch=10, max_batch=10)
        await _until(lambda: len(received) >= 3)
        by_task = {d.message.task_id: d for d in received}  # type: ignore[attr-defined]
        assert sorted(by_task) == ["h0", "h1", "h2"]
        assert by_task[in_hand[0].message.task_id].redelivered  # type: ignore[attr-defined]
    finally:
        await second.close()


async def test_a_message_published_while_its_consumer_is_away_waits_in_the_queue(
    bus_kind: str, amqp_url: str, database_url: str
) -> None:
    queue = QueueSpec("test.durable", ("task.failed",))
    received: list[str] = []

    async def collect(deliveries: Sequence[Delivery]) -> None:
        received.extend(d.message.task_id for d in deliveries)  # type: ignore[attr-defined]

    declaring = await _connect(bus_kind, amqp_url, database_url)
    await declaring.consume(queue, collect, [events_pb2.TaskFailed], prefetch=10)
    await declaring.close()

    publisher = await _connect(bus_kind, amqp_url, database_url)
    await publisher.publish([_failed("while-away"), Envelope.of("task.dispatch", events_pb2.TaskDispatch())])
    await publisher.close()
    assert received == []

    consumer = await _connect(bus_kind, amqp_url, database_url)
    try:
        await consumer.consume(queue, collect, [events_pb2.TaskFailed], prefetch=10)
        await _until(lambda: received == ["while-away"])
    finally:
        await consumer.close()


async def test_postgres_bus_returns_a_message_whose_consumer_died_after_its_visibility_timeout(
    database_url: str,
) -> None:
    queue = QueueSpec("test.visibility", ("task.failed",))
    in_hand: list[Delivery] = []
    never = asyncio.Event()

    async def hold(deliveries: Sequence[Delivery]) -> None:
        in_hand.extend(deliveries)
        await never.wait()

    dying = await PostgresBus.connect(database_url, visibility_seconds=0.6, poll_seconds=0.1)
    await dying.consume(queue, hold, [events_pb2.TaskFailed], prefetch=1)
    await dying.publish([_failed("orphan")])
    await _until(lambda: len(in_hand) == 1)
    # A process killed with SIGKILL runs no cleanup: its tasks (heartbeat included) just stop.
    for task in [*dying._consumer_tasks, *dying._background]:
        task.cancel()

    received: list[Delivery] = []

    async def collect(deliveries: Sequence[Delivery]) -> None:
        received.extend(deliveries)

    survivor = await PostgresBus.connect(database_url, visibility_seconds=0.6, poll_seconds=0.1)
    try:
        await survivor.consume(queue, collect, [events_pb2.TaskFailed], prefetch=1)
        await _until(lambda: len(received) == 1, timeout=5)
        assert received[0].message.task_id == "orphan"  # type: ignore[attr-defined]
        assert received[0].redelivered
    finally:
        await survivor.close()
        await dying.close()
