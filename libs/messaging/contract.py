"""The messaging contract: what services publish and consume, whatever carries it.

The `Bus` protocol, the `Envelope` a message travels in, the `Delivery` a handler receives, the
queues every process declares (`TOPOLOGY`) and the topic matching rule of their routing keys.
Transports implement `Bus` (`libs.messaging.rabbit`, `libs.messaging.postgres`); this module
imports neither (an import-linter contract keeps it so).

Tracing: `Envelope.of` puts the W3C `traceparent` of the writing transaction in the headers, which
`libs.messaging.consuming` extracts, so a message's processing joins the trace that caused it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf.message import Message
from opentelemetry import propagate


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
    "webhook.events",
    ("batch.queued", "batch.settled", "task.outcomes", "task.succeeded", "task.failed", "billing.alert"),
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
