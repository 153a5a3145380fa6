"""The message bus: the `Bus` protocol, the topology every process declares, and RabbitMQ.

`connect_bus(settings)` picks the implementation: `RabbitBus` (RabbitMQ through aio-pika) or
`libs.postgres_bus.PostgresBus` (durable queues in PostgreSQL, for embedded mode). Both share the
consuming logic of `ChunkedConsumer`, so handlers see the same semantics on either.

Tracing: `Envelope.of` puts the W3C `traceparent` of the writing transaction in the headers;
`ChunkedConsumer` extracts it and runs the handler inside CONSUMER spans, one per distinct trace
in the chunk (see `ChunkedConsumer`), so a message's processing joins the trace that caused it.

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
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from google.protobuf.message import DecodeError, Message
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from libs.lifecycle import wait_at_most

if TYPE_CHECKING:
    from libs.config import Settings

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
# "task.outcomes" carries a chunk of task outcomes per message; the per-task keys stay bound so
# messages published before the chunked event existed are still consumed.
BILLING_OUTCOMES_QUEUE = QueueSpec(
    "billing.outcomes", ("task.outcomes", "task.succeeded", "task.failed", "batch.finished")
)
BATCH_SETTLEMENTS_QUEUE = QueueSpec("batch.settlements", ("batch.settled",))
WEBHOOK_EVENTS_QUEUE = QueueSpec(
    "webhook.events", ("batch.queued", "batch.settled", "task.outcomes", "task.succeeded", "task.failed")
)

# Every process declares all of them, so no event is published before its queue exists,
# whatever order the processes start in.
TOPOLOGY: tuple[QueueSpec, ...] = (
    DISPATCH_QUEUE,
    BILLING_OUTCOMES_QUEUE,
    BATCH_SETTLEMENTS_QUEUE,
    WEBHOOK_EVENTS_QUEUE,
)


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


@dataclass(frozen=True)
class Backlog:
    """Messages waiting in a queue (or an outbox) and the age of the oldest, when known."""

    messages: int
    oldest_age_seconds: float | None = None


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

    async def ping(self) -> None:
        """Raises if the broker is unreachable right now (for health checks)."""
        ...

    async def backlog(self, queue: QueueSpec) -> Backlog:
        """How many messages wait in `queue` (for the queue depth and lag gauges)."""
        ...

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
        consumer = ChunkedConsumer(
            queue.name, _RabbitReceipts(), handler, message_types, max_batch, max_wait_seconds
        )
        for _ in range(concurrency):
            self._consumer_tasks.append(asyncio.create_task(consumer.run(inbox)))

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


def routing_key_matches(pattern: str, routing_key: str) -> bool:
    """Topic-exchange matching: words split on `.`, `*` is one word, `#` zero or more words."""

    def match(pattern_words: Sequence[str], key_words: Sequence[str]) -> bool:
        if not pattern_words:
            return not key_words
        head, rest = pattern_words[0], pattern_words[1:]
        if head == "#":
            return any(match(rest, key_words[skip:]) for skip in range(len(key_words) + 1))
        if not key_words:
            return False
        return (head in ("*", key_words[0])) and match(rest, key_words[1:])

    return match(pattern.split("."), routing_key.split("."))


RawT = TypeVar("RawT")
RawT_contra = TypeVar("RawT_contra", contravariant=True)


class QueueReceipts(Protocol[RawT_contra]):
    """How a broker settles the messages it handed out: what each bus implements for the consumer."""

    def envelope_of(self, raw: RawT_contra) -> Envelope:
        """The envelope of a message as received."""
        ...

    def redelivered(self, raw: RawT_contra) -> bool:
        """Whether the message was handed out before."""
        ...

    async def ack(self, raws: Sequence[RawT_contra]) -> None:
        """Removes handled messages from the queue."""
        ...

    async def requeue(self, raw: RawT_contra) -> None:
        """Returns a message for another attempt (or dead-letters it past the delivery limit)."""
        ...

    async def dead_letter(self, raw: RawT_contra) -> None:
        """Moves a message that can never be handled to the queue's dead-letter queue."""
        ...


class ChunkedConsumer(Generic[RawT]):
    """The consuming loop both buses share: chunks, decoding, poison isolation, backoff, settlement.

    Takes messages from an in-memory inbox filled by the broker, hands them to the handler in
    chunks of up to `max_batch` (waiting at most `max_wait_seconds` to fill one), acks the chunk
    when the handler returns, retries a failing chunk message by message, backs off before
    requeueing a failing message, and dead-letters messages it cannot decode.

    Tracing: the handler is still called once per chunk (one transaction for the chunk is the
    point of chunking), inside one CONSUMER span per distinct trace among the chunk's messages.
    Each span is a child of the producer context of the first message of its trace and links to
    the producer contexts of the others, so every trace shows its hop. The handler runs with the
    span of the largest group as the current span: what it writes (database spans, events) joins
    that trace; the other traces reach it through span links. A chunk of one message (workers,
    webhook) is therefore a plain child span of the trace that dispatched it.
    """

    def __init__(
        self,
        queue_name: str,
        receipts: QueueReceipts[RawT],
        handler: Handler,
        message_types: Sequence[type[Message]],
        max_batch: int,
        max_wait_seconds: float,
        *,
        messaging_system: str = "rabbitmq",
    ) -> None:
        self._queue_name = queue_name
        self._messaging_system = messaging_system
        self._receipts = receipts
        self._handler = handler
        self._types = {t.DESCRIPTOR.full_name: t for t in message_types}
        self._max_batch = max_batch
        self._max_wait = max_wait_seconds
        self._failures = 0

    async def run(self, inbox: asyncio.Queue[RawT]) -> None:
        """Consumes `inbox` until cancelled."""
        while True:
            chunk = [await inbox.get()]
            deadline = asyncio.get_running_loop().time() + self._max_wait
            while len(chunk) < self._max_batch:
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    chunk.append(
                        inbox.get_nowait() if remaining <= 0 else await wait_at_most(inbox.get(), remaining)
                    )
                except (TimeoutError, asyncio.QueueEmpty):
                    break
            try:
                await self._process(chunk)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Settling can fail when the channel that delivered the chunk died with the broker
                # connection; the broker then redelivers those messages on the restored channel, so
                # the loop must live on (a dead loop would leave the queue consumed but unprocessed).
                log.exception("could not settle a chunk of %d on %s", len(chunk), self._queue_name)

    def _decode(self, raw: RawT) -> Delivery | None:
        envelope = self._receipts.envelope_of(raw)
        message_type = self._types.get(envelope.message_type)
        if message_type is None:
            return None
        try:
            message = message_type.FromString(envelope.body)
        except DecodeError:
            return None
        return Delivery(envelope=envelope, message=message, redelivered=self._receipts.redelivered(raw))

    async def _process(self, chunk: list[RawT]) -> None:
        decoded: list[tuple[RawT, Delivery]] = []
        for raw in chunk:
            delivery = self._decode(raw)
            if delivery is None:
                message_type = self._receipts.envelope_of(raw).message_type
                log.error("poison message on %s (type %r): dead-lettered", self._queue_name, message_type)
                await self._receipts.dead_letter(raw)
            else:
                decoded.append((raw, delivery))
        if not decoded:
            return
        try:
            await self._handle_traced([delivery for _, delivery in decoded])
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
            await self._receipts.requeue(decoded[0][0])
            return
        self._failures = 0
        await self._receipts.ack([raw for raw, _ in decoded])

    async def _handle_traced(self, deliveries: Sequence[Delivery]) -> None:
        """Calls the handler inside one CONSUMER span per distinct trace of the chunk."""
        by_trace: dict[int, list[trace.SpanContext]] = {}
        for delivery in deliveries:
            producer = trace.get_current_span(propagate.extract(dict(delivery.envelope.headers)))
            span_context = producer.get_span_context()
            by_trace.setdefault(span_context.trace_id if span_context.is_valid else 0, []).append(
                span_context
            )
        tracer = trace.get_tracer(__name__)
        spans: list[trace.Span] = []
        # Largest group first: its span is the one the handler's own work is recorded under.
        for contexts in sorted(by_trace.values(), key=len, reverse=True):
            parent, *others = contexts
            parent_context = (
                trace.set_span_in_context(trace.NonRecordingSpan(parent))
                if parent.is_valid
                else otel_context.Context()
            )
            spans.append(
                tracer.start_span(
                    f"{self._queue_name} process",
                    context=parent_context,
                    kind=trace.SpanKind.CONSUMER,
                    links=[trace.Link(other) for other in others if other.is_valid],
                    attributes={
                        "messaging.system": self._messaging_system,
                        "messaging.operation": "process",
                        "messaging.destination.name": self._queue_name,
                        "messaging.batch.message_count": len(contexts),
                    },
                )
            )
        try:
            with trace.use_span(
                spans[0], end_on_exit=False, record_exception=True, set_status_on_exception=True
            ):
                await self._handler(deliveries)
        finally:
            for span in spans:
                span.end()


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


async def connect_bus(settings: Settings) -> Bus:
    """The bus `settings.bus` names: RabbitMQ at `amqp_url`, or the Postgres bus in `database_url`."""
    if settings.bus == "postgres":
        from libs.postgres_bus import PostgresBus

        return await PostgresBus.connect(settings.database_url)
    return await RabbitBus.connect(settings.amqp_url)
