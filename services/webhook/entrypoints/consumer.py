"""The `webhook.events` consumer: batch and task events become webhook messages (idempotently)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from reelbatch.proto.events.v1 import events_pb2

from libs.field_mapping import from_fields
from libs.ledger_keys import task_transfer_id
from libs.messaging.contract import WEBHOOK_EVENTS_QUEUE, Bus, Delivery
from services.webhook.domain.events import (
    AUTO_TOP_UP_FAILED,
    CREDITS_LOW,
    TASK_FAILED,
    TASK_SUCCEEDED,
    WebhookEvent,
    batch_file_urls,
    video_link_url,
)
from services.webhook.use_cases.announcements import QueuedBatch, SettledBatch, task_event
from services.webhook.use_cases.handlers import WebhookHandlers

MESSAGE_TYPES: tuple[type[Message], ...] = (
    events_pb2.BatchesQueued,
    # What the batch service published before it grouped queued batches; still read, so messages
    # published before an upgrade are announced too.
    events_pb2.BatchQueued,
    events_pb2.BatchSettled,
    events_pb2.TaskOutcomes,
    events_pb2.TaskSucceeded,
    events_pb2.TaskFailed,
    events_pb2.SpendAlert,
)


def _moment(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC) if value.seconds or value.nanos else datetime.now(UTC)


class WebhookEventConsumer:
    """Turns each event into messages; a redelivered event finds its dedupe keys taken."""

    def __init__(self, handlers: WebhookHandlers, public_base_url: str) -> None:
        self._handlers = handlers
        self._public_base_url = public_base_url

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        # Consecutive deliveries of one kind are recorded together: task outcomes, queued batches
        # and settled batches each cost one endpoint lookup per tenant and one write per run; a
        # run is recorded before the next one begins, keeping their order.
        task_events: list[WebhookEvent] = []
        queued: list[QueuedBatch] = []
        settled: list[SettledBatch] = []
        for delivery in deliveries:
            message = delivery.message
            if isinstance(
                message, events_pb2.TaskOutcomes | events_pb2.TaskSucceeded | events_pb2.TaskFailed
            ):
                await self._record(queued=queued, settled=settled)
                if isinstance(message, events_pb2.TaskOutcomes):
                    task_events += (self._succeeded(task) for task in message.succeeded)
                    task_events += (_failed(task) for task in message.failed)
                elif isinstance(message, events_pb2.TaskSucceeded):
                    task_events.append(self._succeeded(message))
                else:
                    task_events.append(_failed(message))
            elif isinstance(message, events_pb2.BatchesQueued | events_pb2.BatchQueued):
                await self._record(task_events=task_events, settled=settled)
                announced = message.batches if isinstance(message, events_pb2.BatchesQueued) else [message]
                queued += (_queued(batch) for batch in announced)
            elif isinstance(message, events_pb2.SpendAlert):
                # Rare (one per threshold crossing): recorded on its own, in order.
                await self._record(task_events=task_events, queued=queued, settled=settled)
                await self._handlers.spend_alerts([spend_alert(message)])
            elif isinstance(message, events_pb2.BatchSettled):
                await self._record(task_events=task_events, queued=queued)
                settled.append(
                    from_fields(
                        SettledBatch,
                        message,
                        occurred_at=_moment(message.occurred_at),
                        file_urls=batch_file_urls(self._public_base_url, message.batch_id),
                    )
                )
        await self._record(task_events=task_events, queued=queued, settled=settled)

    def _succeeded(self, message: events_pb2.TaskSucceeded) -> WebhookEvent:
        # The stored video URL is not given out: it only opens with a signature (issue 8).
        link = video_link_url(self._public_base_url, message.batch_id, message.task_id)
        return _outcome(
            TASK_SUCCEEDED,
            message,
            "succeeded",
            {"video_link_url": link},
            charged=message.unit_price,
            refunded=0,
            ledger_ref_type="batch_capture",
        )

    async def _record(
        self,
        *,
        task_events: list[WebhookEvent] | None = None,
        queued: list[QueuedBatch] | None = None,
        settled: list[SettledBatch] | None = None,
    ) -> None:
        """Records the pending runs given (emptying them)."""
        if task_events:
            await self._handlers.tasks_finished(task_events)
            task_events.clear()
        if queued:
            await self._handlers.batches_queued(queued)
            queued.clear()
        if settled:
            await self._handlers.batches_settled(settled)
            settled.clear()


def _queued(message: events_pb2.BatchQueued) -> QueuedBatch:
    return from_fields(QueuedBatch, message, occurred_at=_moment(message.occurred_at))


def _failed(message: events_pb2.TaskFailed) -> WebhookEvent:
    return _outcome(
        TASK_FAILED,
        message,
        "cancelled" if message.failure_type == "cancelled" else "failed",
        {"failure_type": message.failure_type, "error_message": message.error_message},
        charged=0,
        refunded=message.unit_price,
        ledger_ref_type="batch_refund",
    )


def _outcome(
    event_type: str,
    message: events_pb2.TaskSucceeded | events_pb2.TaskFailed,
    status: str,
    particulars: dict[str, object],
    *,
    charged: int,
    refunded: int,
    ledger_ref_type: str,
) -> WebhookEvent:
    """A task outcome's event: the item, its status, the outcome's `particulars`, then its money."""
    return task_event(
        event_type,
        message.task_id,
        message.batch_id,
        message.tenant_id,
        {
            "batch_index": message.batch_index,
            "custom_id": message.custom_id or None,
            "metadata": dict(message.metadata),
            "status": status,
            "model": message.model,
            **particulars,
            "attempts": message.attempts,
            "credits_charged": charged,
            "credits_refunded": refunded,
            # The item's receipt: the id of its capture or refund in the ledger, derived from the
            # task id (billing may write the transfer a moment after this event is sent).
            "ledger_transfer_id": task_transfer_id(message.task_id),
            "ledger_ref_type": ledger_ref_type,
        },
        _moment(message.occurred_at),
    )


def spend_alert(message: events_pb2.SpendAlert) -> WebhookEvent:
    """A `credits.low`, `budget.threshold` or `auto_top_up.failed` event from billing's SpendAlert
    (ADR-125, ADR-135)."""
    data: dict[str, object] = {"alert_id": message.alert_id, "threshold_credits": message.threshold_credits}
    if message.alert_type == CREDITS_LOW:
        data["available_credits"] = message.value_credits
    elif message.alert_type == AUTO_TOP_UP_FAILED:
        data |= {
            "pack_id": message.pack_id,
            "failure_code": message.failure_code,
            "failure_message": message.failure_message,
            "auto_top_up_enabled": False,
        }
    else:
        data |= {
            "budget_scope": message.budget_scope,
            "budget_scope_id": message.budget_scope_id or None,
            "monthly_credits": message.monthly_credits,
            "threshold_percent": message.threshold_percent,
            "used_credits": message.value_credits,
            "period_end": message.period_end,
        }
    return WebhookEvent(
        event_type=message.alert_type,
        tenant_id=message.tenant_id,
        batch_id="",
        source_key=message.alert_id,
        occurred_at=_moment(message.occurred_at),
        data=data,
    )


async def start_event_consumer(
    bus: Bus, handlers: WebhookHandlers, public_base_url: str
) -> WebhookEventConsumer:
    """Starts consuming `webhook.events`; video links in payloads start at `public_base_url`."""
    consumer = WebhookEventConsumer(handlers, public_base_url)
    await bus.consume(
        WEBHOOK_EVENTS_QUEUE, consumer.handle, MESSAGE_TYPES, prefetch=64, max_batch=32, max_wait_seconds=0.02
    )
    return consumer
