"""The one message bus: RabbitMQ through aio-pika, with the topology every process declares.

Guarantees: durable quorum queues, persistent messages, publisher confirms, manual acks, bounded
prefetch, a delivery limit and a dead-letter queue per queue for poison messages. Consumers may
take messages in chunks (one handler call for up to `max_batch` messages) so a handler can apply
them in one database transaction; a failing chunk is retried message by message so one poison
message never blocks the others.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from google.protobuf.message import DecodeError, Message
from opentelemetry import propagate

log = logging.getLogger(__name__)

EXCHANGE = "reelbatch.events"
DEAD_LETTER_EXCHANGE = "reelbatch.dead-letter"


@dataclass(frozen=True)
class QueueSpec:
    """A durable queue, the routing keys bound to it, and its poison-message limit."""

    name: str
    routing_keys: tuple[str, ...]
    delivery_limit: int = 20
    is_dead_letter_queue: bool = False

    @property
    def dead_letter_name(self) -> str:
        return f"{self.name}.dead"

    def dead_letters(self) -> QueueSpec:
        """The queue that holds this queue's poison messages (for inspection and replay)."""
        return QueueSpec(self.dead_letter_name, (), is_dead_letter_queue=True)


DISPATCH_QUEUE = QueueSpec("batch.dispatch", ("task.dispatch",))
BILLING_OUTCOMES_QUEUE = QueueSpec("billing.outcomes", ("task.succeeded", "task.failed", "batch.finished"))
BATCH_SETTLEMENTS_QUEUE = QueueSpec("batch.settlements", ("batch.settled",))

# Every process declares all of them, so no event is published before its queue exists,
# whatever order the processes start in.
TOPOLOGY: tuple[QueueSpec, ...] = (DISPATCH_QUEUE, BILLING_OUTCOMES_QUEUE, BATCH_SETTLEMENTS_QUEUE)


@dataclass(frozen=True)
class Envelope:
    """A message as it travels: protobuf bytes plus id, type and trace headers."""

    routing_key: str
    message_type: str
    body: bytes
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, routing_key: str, message: Message) -> Envelope:
        """Wraps a protobuf message, carrying the current trace context in its headers."""
        headers: dict[str, str] = {}
        propagate.inject(headers)
        return cls(
            routing_key=routing_key,
            message_type=message.DESCRIPTOR.full_name,
            body=message.SerializeToString(),
            headers=headers,
        )


@dataclass(frozen=True)
class Delivery:
    """A decoded incoming message."""

    envelope: Envelope
    message: Message
    redelivered: bool


Handler = Callable[[Sequence[Delivery]], Awaitable[None]]


class Bus(Protocol):
    """What services need from a message bus; RabbitMQ in production, in-process when embedded."""

    async def publish(self, envelopes: Sequence[Envelope]) -> None: ...

    async def consume(
        self,
        queue: QueueSpec,
        handler: Handler,
        message_types: Sequence[type[Message]],
        *,
        prefetch: int,
        max_batch: int = 1,
        max_wait_seconds: float = 0.0,
        concurrency: int = 1,
    ) -> None: ...

    async def close(self) -> None: ...


_PUBLISH_WINDOW = 256


class RabbitBus:
    """`Bus` on RabbitMQ. Reconnects by itself (robust connection) and re-declares the topology."""

    def __init__(self, connection: AbstractRobustConnection) -> None:
        self._connection = connection
        self._publish_channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._publish_lock = asyncio.Lock()
        self._consumer_tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def connect(cls, url: str) -> RabbitBus:
        connection = await aio_pika.connect_robust(url, client_properties={"connection_name": "reelbatch"})
        bus = cls(connection)
        channel = await connection.channel()
        await declare_topology(channel)
        await channel.close()
        return bus

    async def _publisher(self) -> AbstractExchange:
        if self._exchange is None or self._publish_channel is None or self._publish_channel.is_closed:
            self._publish_channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = await self._publish_channel.declare_exchange(
                EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
            )
        return self._exchange

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Publishes persistently and returns once the broker confirmed every message."""
        async with self._publish_lock:
            exchange = await self._publisher()
            for start in range(0, len(envelopes), _PUBLISH_WINDOW):
                window = envelopes[start : start + _PUBLISH_WINDOW]
                await asyncio.gather(
                    *(
                        exchange.publish(
                            aio_pika.Message(
                                body=envelope.body,
                                message_id=envelope.message_id,
                                type=envelope.message_type,
                                headers=dict(envelope.headers),
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                content_type="application/x-protobuf",
                            ),
                            routing_key=envelope.routing_key,
                        )
                        for envelope in window
                    )
                )

    async def consume(
        self,
        queue: QueueSpec,
        handler: Handler,
        message_types: Sequence[type[Message]],
        *,
        prefetch: int,
        max_batch: int = 1,
        max_wait_seconds: float = 0.0,
        concurrency: int = 1,
    ) -> None:
        """Starts consuming in the background; returns once the consumer is registered."""
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        declared = await declare_topology(channel, only=queue)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        await declared.consume(inbox.put, no_ack=False)
        consumer = _ChunkedConsumer(queue.name, handler, message_types, max_batch, max_wait_seconds)
        for _ in range(concurrency):
            self._consumer_tasks.append(asyncio.create_task(consumer.run(inbox)))

    async def close(self) -> None:
        for task in self._consumer_tasks:
            task.cancel()
        await asyncio.gather(*self._consumer_tasks, return_exceptions=True)
        self._consumer_tasks.clear()
        await self._connection.close()


async def declare_topology(
    channel: AbstractChannel, only: QueueSpec | None = None
) -> aio_pika.abc.AbstractQueue:
    """Declares the exchanges and queues (idempotent); returns the last queue declared."""
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    dead = await channel.declare_exchange(DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
    declared: aio_pika.abc.AbstractQueue | None = None
    for spec in (only,) if only else TOPOLOGY:
        if spec.is_dead_letter_queue:
            declared = await channel.declare_queue(
                spec.name, durable=True, arguments={"x-queue-type": "quorum"}
            )
            await declared.bind(dead, routing_key=spec.name)
            continue
        dead_queue = await channel.declare_queue(
            spec.dead_letter_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead_queue.bind(dead, routing_key=spec.dead_letter_name)
        declared = await channel.declare_queue(
            spec.name,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": spec.delivery_limit,
                "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                "x-dead-letter-routing-key": spec.dead_letter_name,
            },
        )
        for key in spec.routing_keys:
            await declared.bind(exchange, routing_key=key)
    assert declared is not None
    return declared


class _ChunkedConsumer:
    def __init__(
        self,
        queue_name: str,
        handler: Handler,
        message_types: Sequence[type[Message]],
        max_batch: int,
        max_wait_seconds: float,
    ) -> None:
        self._queue_name = queue_name
        self._handler = handler
        self._types = {t.DESCRIPTOR.full_name: t for t in message_types}
        self._max_batch = max_batch
        self._max_wait = max_wait_seconds
        self._failures = 0

    async def run(self, inbox: asyncio.Queue[AbstractIncomingMessage]) -> None:
        while True:
            chunk = [await inbox.get()]
            deadline = asyncio.get_running_loop().time() + self._max_wait
            while len(chunk) < self._max_batch:
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    chunk.append(
                        inbox.get_nowait()
                        if remaining <= 0
                        else await asyncio.wait_for(inbox.get(), remaining)
                    )
                except (TimeoutError, asyncio.QueueEmpty):
                    break
            await self._process(chunk)

    def _decode(self, raw: AbstractIncomingMessage) -> Delivery | None:
        message_type = self._types.get(raw.type or "")
        if message_type is None:
            return None
        try:
            message = message_type.FromString(raw.body)
        except DecodeError:
            return None
        headers = {k: str(v) for k, v in (raw.headers or {}).items()}
        envelope = Envelope(
            routing_key=raw.routing_key or "",
            message_type=raw.type or "",
            body=raw.body,
            message_id=raw.message_id or "",
            headers=headers,
        )
        return Delivery(envelope=envelope, message=message, redelivered=bool(raw.redelivered))

    async def _process(self, chunk: list[AbstractIncomingMessage]) -> None:
        decoded: list[tuple[AbstractIncomingMessage, Delivery]] = []
        for raw in chunk:
            delivery = self._decode(raw)
            if delivery is None:
                log.error("poison message on %s (type %r): dead-lettered", self._queue_name, raw.type)
                await raw.reject(requeue=False)
            else:
                decoded.append((raw, delivery))
        if not decoded:
            return
        try:
            await self._handler([delivery for _, delivery in decoded])
        except Exception:
            if len(decoded) > 1:
                log.warning("chunk of %d failed on %s; retrying one by one", len(decoded), self._queue_name)
                for raw, _ in decoded:
                    await self._process([raw])
                return
            self._failures += 1
            log.exception("handler failed on %s (attempt streak %d)", self._queue_name, self._failures)
            # Back off before requeueing so a dependency outage does not burn the delivery limit.
            await asyncio.sleep(min(30.0, 0.2 * 2 ** min(self._failures, 8)))
            await decoded[0][0].nack(requeue=True)
            return
        self._failures = 0
        for raw, _ in decoded:
            await raw.ack()
