"""The `billing.outcomes` consumer: task events become captures/refunds, `batch.finished` settles.

Task outcomes arrive as `TaskOutcomes` (a chunk of one batch's outcomes per message), or one per
message as `TaskSucceeded` / `TaskFailed` from older publishers.

Each chunk applies all of its task outcomes in one transaction first, then settles the finished
batches of the chunk. Redelivery is harmless: every effect is keyed. A settlement refused because
outcomes are still missing fails the chunk, and the bus redelivers it later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from google.protobuf.message import Message
from reelbatch.proto.events.v1 import events_pb2

from libs.errors import ServiceError
from libs.messaging.contract import BILLING_OUTCOMES_QUEUE, Bus, Delivery
from services.billing.domain.ids import BatchId, parse_batch_id, parse_task_id
from services.billing.domain.ledger import OutcomeKind, TaskOutcome
from services.billing.use_cases.handlers import BillingHandlers

log = logging.getLogger(__name__)

MESSAGE_TYPES: tuple[type[Message], ...] = (
    events_pb2.TaskOutcomes,
    events_pb2.TaskSucceeded,
    events_pb2.TaskFailed,
    events_pb2.BatchFinished,
)


class OutcomeConsumer:
    """Handles chunks of `task.succeeded`, `task.failed` and `batch.finished` deliveries."""

    def __init__(self, handlers: BillingHandlers) -> None:
        self._handlers = handlers

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        outcomes: list[TaskOutcome] = []
        finished: dict[BatchId, None] = {}
        for delivery in deliveries:
            message = delivery.message
            if isinstance(message, events_pb2.TaskOutcomes):
                outcomes += (_outcome(task, OutcomeKind.CAPTURE) for task in message.succeeded)
                outcomes += (_outcome(task, OutcomeKind.REFUND) for task in message.failed)
            elif isinstance(message, events_pb2.TaskSucceeded):
                outcomes.append(_outcome(message, OutcomeKind.CAPTURE))
            elif isinstance(message, events_pb2.TaskFailed):
                outcomes.append(_outcome(message, OutcomeKind.REFUND))
            elif isinstance(message, events_pb2.BatchFinished):
                finished[parse_batch_id(message.batch_id)] = None
        if outcomes:
            await self._handlers.apply_task_outcomes(outcomes)
        refused: ServiceError | None = None
        settled = await self._handlers.settle_batches(list(finished)) if finished else []
        for batch_id, outcome in zip(finished, settled, strict=True):
            if isinstance(outcome, ServiceError):
                # The other batches of the chunk are settled anyway; the refusal is re-raised below.
                log.info("settlement of batch %s deferred: %s", batch_id, outcome.reason)
                refused = refused or outcome
        if refused is not None:
            raise refused


def _outcome(message: events_pb2.TaskSucceeded | events_pb2.TaskFailed, kind: OutcomeKind) -> TaskOutcome:
    return TaskOutcome(
        batch_id=parse_batch_id(message.batch_id),
        task_id=parse_task_id(message.task_id),
        model=message.model,
        kind=kind,
        unit_price=message.unit_price,
        # Unset by publishers older than ADR-144: the margin keeps the frozen estimate then.
        provider_cost_usd_micros=(
            message.provider_cost_usd_micros if message.HasField("provider_cost_usd_micros") else None
        ),
        provider_jobs=message.provider_jobs,
    )


async def start_outcome_consumer(
    bus: Bus, handlers: BillingHandlers, *, chunk_size: int, chunk_wait_seconds: float
) -> OutcomeConsumer:
    """Starts consuming `billing.outcomes` in chunks of up to `chunk_size` messages."""
    consumer = OutcomeConsumer(handlers)
    await bus.consume(
        BILLING_OUTCOMES_QUEUE,
        consumer.handle,
        MESSAGE_TYPES,
        prefetch=2 * chunk_size,
        max_batch=chunk_size,
        max_wait_seconds=chunk_wait_seconds,
    )
    return consumer
