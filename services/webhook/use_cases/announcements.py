"""Announcing events: batch and task events fan out to messages, one per destination that wants
them (the batch's own webhook_url and the tenant's matching endpoints), idempotently."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.webhook.domain.events import (
    BATCH_QUEUED,
    WebhookEvent,
    batch_url_wants,
    endpoint_wants,
    settled_event_type,
)
from services.webhook.domain.records import NewMessage
from services.webhook.use_cases.dependencies import Dependencies
from services.webhook.use_cases.ids import new_message_id
from services.webhook.use_cases.signing_secrets import new_secret


@dataclass(frozen=True)
class QueuedBatch:
    """A batch whose credits were frozen (the batch service's BatchQueued), to announce."""

    batch_id: str
    tenant_id: str
    webhook_url: str
    total_count: int
    required_credits: int
    occurred_at: datetime


@dataclass(frozen=True)
class SettledBatch:
    """A batch billing settled (its BatchSettled), to announce with the settled figures."""

    batch_id: str
    tenant_id: str
    frozen_credits: int
    captured_credits: int
    refunded_credits: int
    settlement_status: str
    occurred_at: datetime
    # Where the batch's results and errors files are (`batch_file_urls`); none when not known.
    file_urls: Mapping[str, str] = field(default_factory=dict)


def task_event(
    event_type: str,
    task_id: str,
    batch_id: str,
    tenant_id: str,
    data: dict[str, object],
    occurred_at: datetime,
) -> WebhookEvent:
    """A task outcome to announce (`task.succeeded` or `task.failed`), deduplicated by task id."""
    return WebhookEvent(
        event_type=event_type,
        tenant_id=tenant_id,
        batch_id=batch_id,
        source_key=task_id,
        occurred_at=occurred_at,
        data={"task_id": task_id, "batch_id": batch_id, **data},
    )


async def record_events(deps: Dependencies, events: Sequence[tuple[WebhookEvent, str | None]]) -> int:
    """Fans each (event, batch URL) out to the batch's URL and the tenant's matching endpoints:
    one endpoint lookup per tenant, one write; a dedupe key seen before is skipped. Returns how
    many messages are new."""
    endpoints_of = await deps.repository.fanout.enabled_endpoints_of({event.tenant_id for event, _ in events})
    with_secret: set[str] = set()
    new_messages: list[NewMessage] = []
    for event, batch_url in events:
        if batch_url and batch_url_wants(event.event_type):
            if event.tenant_id not in with_secret:
                await deps.repository.signing_secrets.ensure_tenant_secret(event.tenant_id, new_secret())
                with_secret.add(event.tenant_id)
            new_messages.append(_message(event, batch_url, None))
        for endpoint in endpoints_of[event.tenant_id]:
            if endpoint_wants(endpoint.event_types, event.event_type):
                new_messages.append(_message(event, endpoint.url, endpoint.endpoint_id))
    return await deps.repository.announcements.add_messages(new_messages, deps.clock())


def _message(event: WebhookEvent, url: str, endpoint_id: str | None) -> NewMessage:
    return NewMessage(
        message_id=new_message_id(),
        tenant_id=event.tenant_id,
        batch_id=event.batch_id or None,
        event_type=event.event_type,
        body=event.body(),
        url=url,
        endpoint_id=endpoint_id,
        dedupe_key=event.dedupe_key(f"endpoint:{endpoint_id}" if endpoint_id else "batch_url"),
    )


async def batch_queued(
    deps: Dependencies,
    *,
    batch_id: str,
    tenant_id: str,
    webhook_url: str,
    total_count: int,
    required_credits: int,
    occurred_at: datetime,
) -> int:
    """Remembers the batch's webhook_url and announces `batch.queued`."""
    return await batches_queued(
        deps, [QueuedBatch(batch_id, tenant_id, webhook_url, total_count, required_credits, occurred_at)]
    )


async def batches_queued(deps: Dependencies, queued: Sequence[QueuedBatch]) -> int:
    """`batch_queued` of several batches: one endpoint lookup per tenant and one write each
    for their webhook_urls and their messages (every accepted batch sends one of these)."""
    await deps.repository.announcements.remember_batch_urls(
        [(batch.batch_id, batch.tenant_id, batch.webhook_url) for batch in queued if batch.webhook_url]
    )
    return await record_events(
        deps,
        [
            (
                WebhookEvent(
                    event_type=BATCH_QUEUED,
                    tenant_id=batch.tenant_id,
                    batch_id=batch.batch_id,
                    source_key=batch.batch_id,
                    occurred_at=batch.occurred_at,
                    data={
                        "batch_id": batch.batch_id,
                        "status": "queued",
                        "total_count": batch.total_count,
                        "frozen_credits": batch.required_credits,
                    },
                ),
                batch.webhook_url or None,
            )
            for batch in queued
        ],
    )


async def batch_settled(
    deps: Dependencies,
    *,
    batch_id: str,
    tenant_id: str,
    frozen_credits: int,
    captured_credits: int,
    refunded_credits: int,
    settlement_status: str,
    occurred_at: datetime,
) -> int:
    """Announces `batch.completed` (or `batch.cancelled`) with the settled figures."""
    return await batches_settled(
        deps,
        [
            SettledBatch(
                batch_id,
                tenant_id,
                frozen_credits,
                captured_credits,
                refunded_credits,
                settlement_status,
                occurred_at,
            )
        ],
    )


async def batches_settled(deps: Dependencies, settled: Sequence[SettledBatch]) -> int:
    """`batch_settled` of several batches: their snapshots asked concurrently, one lookup of
    their remembered URLs, one endpoint lookup per tenant and one write.

    Counts and status come from the batch service; the money comes from the settlement event
    itself, because the batch service may not have applied that event yet when we ask.
    """
    snapshots = await asyncio.gather(*(deps.batches.batch(batch.batch_id) for batch in settled))
    remembered = await deps.repository.fanout.batch_urls([batch.batch_id for batch in settled])
    events: list[tuple[WebhookEvent, str | None]] = []
    for batch, snapshot in zip(settled, snapshots, strict=True):
        event = WebhookEvent(
            event_type=settled_event_type(snapshot.status),
            tenant_id=batch.tenant_id,
            batch_id=batch.batch_id,
            source_key=batch.batch_id,
            occurred_at=batch.occurred_at,
            data={
                **snapshot.event_fields,
                "frozen_credits": batch.frozen_credits,
                "credits_spent": batch.captured_credits,
                "refunded_credits": batch.refunded_credits,
                "settlement_status": batch.settlement_status,
                "pending_count": 0,
                **batch.file_urls,
            },
        )
        events.append((event, remembered.get(batch.batch_id) or snapshot.webhook_url or None))
    return await record_events(deps, events)


async def task_finished(
    deps: Dependencies,
    *,
    event_type: str,
    task_id: str,
    batch_id: str,
    tenant_id: str,
    data: dict[str, object],
    occurred_at: datetime,
) -> int:
    """Announces a task outcome to the endpoints that opted in (never to batch URLs)."""
    return await tasks_finished(
        deps, [task_event(event_type, task_id, batch_id, tenant_id, data, occurred_at)]
    )


async def tasks_finished(deps: Dependencies, events: Sequence[WebhookEvent]) -> int:
    """Announces task outcomes (see `task_event`) to the endpoints that opted in, in one write.

    A chunk of outcomes costs one endpoint lookup per tenant, not one per task: most tenants
    have no endpoint that asks for task events, and then nothing else happens. Task events have
    no batch URL to go to, so they fan out as events without one.
    """
    return await record_events(deps, [(event, None) for event in events])


async def spend_alerts(deps: Dependencies, alerts: Sequence[WebhookEvent]) -> int:
    """Announces spend alerts (`credits.low`, `budget.threshold`) to the tenant's endpoints that
    want them: an alert belongs to no batch, so no batch URL gets it. Deduplicated by alert id."""
    return await record_events(deps, [(alert, None) for alert in alerts])
