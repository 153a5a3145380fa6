"""The `Bus` on RabbitMQ through aio-pika, and the exchanges and queues it declares.

Guarantees: durable quorum queues, persistent messages, publisher confirms (in windows of
`_PUBLISH_WINDOW`), manual acks, bounded prefetch, a delivery limit and a dead-letter queue per
queue for poison messages. The consuming loop is `libs.messaging.consuming.ChunkedConsumer`,
shared with the PostgreSQL bus.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)

from libs.messaging.consuming import ChunkedBus, QueueReceipts
from libs.messaging.contract import TOPOLOGY, Backlog, Envelope, QueueSpec

log = logging.getLogger(__name__)

# The topic exchange every event is published to, and the one poison messages are moved to.
EXCHANGE = "reelbatch.events"
DEAD_LETTER_EXCHANGE = "reelbatch.dead-letter"

_PUBLISH_WINDOW = 256


class RabbitBus(ChunkedBus[AbstractIncomingMessage]):
    """`Bus` on RabbitMQ. Reconnects by itself (robust connection) and re-declares the topology."""

    messaging_system = "rabbitmq"

    def __init__(self, connection: AbstractRobustConnection) -> None:
        super().__init__()
        self._connection = connection
        self._publish_channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._publish_lock = asyncio.Lock()
        self._inspect_channel: AbstractChannel | None = None

    @classmethod
    async def connect(cls, url: str, *, give_up_after_seconds: float = 120.0) -> RabbitBus:
        """Connects, waiting for a broker that is down (a restart, a deploy) rather than failing.

        Once connected, the robust connection reconnects by itself; only the first connection
        needs this loop. After `give_up_after_seconds` the error is raised (the supervisor decides).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + give_up_after_seconds
        delay = 0.2
        while True:
            try:
                connection = await aio_pika.connect_robust(
                    url, client_properties={"connection_name": "reelbatch"}
                )
                break
            except (aio_pika.exceptions.AMQPConnectionError, ConnectionError, OSError) as error:
                if loop.time() + delay > deadline:
                    raise
                log.warning("broker unreachable (%s); retrying in %.1f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
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

    async def _subscribe(
        self, queue: QueueSpec, prefetch: int
    ) -> tuple[asyncio.Queue[AbstractIncomingMessage], QueueReceipts[AbstractIncomingMessage]]:
        """Consumes `queue` on a channel of its own; returns once the consumer is registered."""
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        declared = await declare_topology(channel, only=queue)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        await declared.consume(inbox.put, no_ack=False)
        return inbox, _RabbitReceipts()

    async def ping(self) -> None:
        """Raises while the robust connection is down (it reconnects by itself meanwhile)."""
        if self._connection.is_closed or not self._connection.connected.is_set():
            raise ConnectionError("RabbitMQ connection is down")

    async def backlog(self, queue: QueueSpec) -> Backlog:
        """Ready messages in `queue` (a passive declare; RabbitMQ does not tell their age)."""
        if self._inspect_channel is None or self._inspect_channel.is_closed:
            self._inspect_channel = await self._connection.channel()
        declared = await self._inspect_channel.declare_queue(queue.name, passive=True)
        return Backlog(messages=int(declared.declaration_result.message_count or 0))

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


class _RabbitReceipts:
    """Settles aio-pika messages: ack, nack with requeue, reject to the dead-letter exchange."""

    def envelope_of(self, raw: AbstractIncomingMessage) -> Envelope:
        return Envelope(
            routing_key=raw.routing_key or "",
            message_type=raw.type or "",
            body=raw.body,
            message_id=raw.message_id or "",
            headers={k: str(v) for k, v in (raw.headers or {}).items()},
        )

    def redelivered(self, raw: AbstractIncomingMessage) -> bool:
        return bool(raw.redelivered)

    async def ack(self, raws: Sequence[AbstractIncomingMessage]) -> None:
        for raw in raws:
            await raw.ack()

    async def requeue(self, raw: AbstractIncomingMessage) -> None:
        # The quorum queue counts the return and dead-letters past its x-delivery-limit.
        await raw.nack(requeue=True)

    async def dead_letter(self, raw: AbstractIncomingMessage) -> None:
        await raw.reject(requeue=False)
