"""Webhook event types, which endpoints receive which, and the Standard Webhooks payload."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from services.webhook.domain.errors import UnknownEventType

BATCH_QUEUED = "batch.queued"
BATCH_COMPLETED = "batch.completed"
BATCH_CANCELLED = "batch.cancelled"
TASK_SUCCEEDED = "task.succeeded"
TASK_FAILED = "task.failed"
# Spend alerts (ADR-125): billing's `billing.alert` events, one per threshold crossing.
CREDITS_LOW = "credits.low"
BUDGET_THRESHOLD = "budget.threshold"
# An automatic top-up was declined and turned itself off (billing's ADR-135).
AUTO_TOP_UP_FAILED = "auto_top_up.failed"

BATCH_EVENTS = (BATCH_QUEUED, BATCH_COMPLETED, BATCH_CANCELLED)
ALERT_EVENTS = (CREDITS_LOW, BUDGET_THRESHOLD, AUTO_TOP_UP_FAILED)
# What an endpoint without a filter receives: alerts are rare and are what an owner must not miss.
DEFAULT_EVENTS = BATCH_EVENTS + ALERT_EVENTS
# Task events can be 10,000 per batch: only endpoints that ask for them get them.
OPT_IN_EVENTS = (TASK_SUCCEEDED, TASK_FAILED)
ALL_EVENTS = DEFAULT_EVENTS + OPT_IN_EVENTS


def video_link_url(public_base_url: str, batch_id: str, task_id: str) -> str:
    """Where a task's video is fetched from: the customer API's link endpoint, answered with a
    short-lived signed URL to the caller's API key. A webhook carries this, not a signed URL,
    because it may be delivered or replayed long after any signed URL would have expired, and a
    payload leaked from a receiver's logs then grants nothing without the key."""
    return f"{public_base_url.rstrip('/')}/api/enterprise/video-batch/{batch_id}/tasks/{task_id}/video"


def batch_file_urls(public_base_url: str, batch_id: str) -> dict[str, str]:
    """The customer API's results and errors files of a batch (JSONL; `?format=csv` for CSV), which
    `batch.completed` announces: complete once the batch settled."""
    base = f"{public_base_url.rstrip('/')}/api/enterprise/video-batch/{batch_id}"
    return {"results_url": f"{base}/results", "errors_url": f"{base}/errors"}


def normalize_event_types(requested: Iterable[str]) -> tuple[str, ...]:
    """The endpoint's filter, deduplicated and validated; empty means the batch and alert events."""
    chosen = tuple(dict.fromkeys(requested))
    unknown = [event_type for event_type in chosen if event_type not in ALL_EVENTS]
    if unknown:
        raise UnknownEventType(
            f"unknown event type {unknown[0]!r}; known: {', '.join(ALL_EVENTS)}", event_type=unknown[0]
        )
    return chosen


def endpoint_wants(event_types: Iterable[str], event_type: str) -> bool:
    """Whether an endpoint with this filter receives `event_type`."""
    chosen = tuple(event_types)
    if not chosen:
        return event_type in DEFAULT_EVENTS
    return event_type in chosen


def batch_url_wants(event_type: str) -> bool:
    """A batch's own webhook_url gets the batch events, never the per-task ones."""
    return event_type in BATCH_EVENTS


def settled_event_type(batch_status: str) -> str:
    """The event announcing a settled batch: cancelled batches are `batch.cancelled`."""
    return BATCH_CANCELLED if batch_status == "cancelled" else BATCH_COMPLETED


@dataclass(frozen=True)
class WebhookEvent:
    """One event to announce, before it is fanned out to destinations."""

    event_type: str
    tenant_id: str
    batch_id: str
    # Identifies the source fact (batch or task); with the destination it makes the dedupe key.
    source_key: str
    occurred_at: datetime
    data: Mapping[str, object]

    def body(self) -> bytes:
        """The JSON body, fixed once so every attempt sends (and signs) the same bytes."""
        document = {"type": self.event_type, "timestamp": rfc3339(self.occurred_at), "data": self.data}
        return json.dumps(document, separators=(",", ":"), sort_keys=False).encode()

    def dedupe_key(self, destination: str) -> str:
        """Unique per (source fact, event type, destination): a redelivered event adds nothing."""
        return f"{self.event_type}:{self.source_key}:{destination}"


def rfc3339(moment: datetime) -> str:
    """UTC timestamp as `2026-01-20T10:00:00.123456Z`."""
    return moment.isoformat().replace("+00:00", "Z")
