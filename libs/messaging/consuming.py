"""The consuming loop both transports share: chunks, decoding, poison isolation, backoff, acks.

A transport fills an in-memory inbox with what its broker hands out and settles messages through
`QueueReceipts` (ack, requeue, dead-letter); `ChunkedConsumer` does everything in between, so
handlers see the same semantics on RabbitMQ and on PostgreSQL. `ChunkedBus.consume` is that one
way to consume, each transport saying only how it subscribes (`_subscribe`). Consumers may take messages in
chunks (one handler call for up to `max_batch` messages) so a handler can apply them in one
database transaction; a failing chunk is retried message by message so one poison message never
blocks the others.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Generic, Protocol, TypeVar

from google.protobuf.message import DecodeError, Message
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from libs.lifecycle import wait_at_most
from libs.messaging.contract import Delivery, Envelope, Handler, QueueSpec

log = logging.getLogger(__name__)


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
        messaging_system: str,
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


class ChunkedBus(ABC, Generic[RawT]):
    """A bus whose consumers are `ChunkedConsumer`s over an inbox its broker fills.

    A transport subclasses it, names its `messaging_system` (for spans) and implements
    `_subscribe`; `consume` is then the same on every transport.
    """

    messaging_system: ClassVar[str]

    def __init__(self) -> None:
        self._consumer_tasks: list[asyncio.Task[None]] = []

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
        """Subscribes to `queue` and runs `concurrency` consumers of it in the background."""
        inbox, receipts = await self._subscribe(queue, prefetch)
        consumer = ChunkedConsumer(
            queue.name,
            receipts,
            handler,
            message_types,
            max_batch,
            max_wait_seconds,
            messaging_system=self.messaging_system,
        )
        for _ in range(concurrency):
            self._consumer_tasks.append(asyncio.create_task(consumer.run(inbox)))

    @abstractmethod
    async def _subscribe(
        self, queue: QueueSpec, prefetch: int
    ) -> tuple[asyncio.Queue[RawT], QueueReceipts[RawT]]:
        """Declares `queue` and has the broker fill the inbox returned, `prefetch` messages ahead at most;
        returns once the subscription is registered. Background tasks go to `_consumer_tasks`."""
