"""Delivering: lease due messages, make one attempt (re-checked, signed, POSTed), record it and
schedule the next; counts each attempt and traces it in the trace of its event."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from services.webhook import metrics as webhook_metrics
from services.webhook.domain.delivery import AttemptResult, ErrorClass, Verdict, retry_delay, verdict_for
from services.webhook.domain.errors import UnsafeWebhookUrl
from services.webhook.domain.records import Attempt, ClaimedMessage
from services.webhook.domain.signing import webhook_headers
from services.webhook.use_cases.dependencies import Dependencies
from services.webhook.use_cases.destinations import checked_destination

log = logging.getLogger(__name__)


async def claim_due(deps: Dependencies, limit: int) -> list[ClaimedMessage]:
    """Leases up to `limit` due messages for this deliverer."""
    return await deps.repository.delivery.claim_due(deps.clock(), limit, deps.delivery.lease_seconds)


async def release(deps: Dependencies, claimed: Sequence[ClaimedMessage]) -> int:
    """Gives claimed messages back unsent (the deliverer is stopping): due at once, with no attempt
    recorded (a request cut off may still have arrived: the receiver deduplicates by webhook-id).
    Returns how many were still held."""
    return await deps.repository.delivery.release(claimed)


async def deliver(deps: Dependencies, claimed: ClaimedMessage) -> Verdict:
    """One attempt of a claimed message: re-check the destination, POST, record, schedule."""
    attempted_at = deps.clock()
    with webhook_metrics.delivery_span(claimed.message_id, claimed.traceparent) as span:
        result = await _attempt(deps, claimed, attempted_at)
        verdict = verdict_for(result)
        span.set_attributes(
            {"http.response.status_code": result.http_status, "webhook.verdict": verdict.value}
        )
    webhook_metrics.attempt_finished(str(result.error_class) or "delivered")
    next_attempt_at: datetime | None = None
    status = "failed"
    if verdict is Verdict.DELIVERED:
        status = "delivered"
    elif verdict is Verdict.RETRY:
        delay = retry_delay(
            deps.delivery.retry_schedule_seconds,
            claimed.round_attempts + 1,
            deps.delivery.jitter_fraction,
            deps.draw(),
        )
        if delay is not None:
            status = "pending"
            next_attempt_at = deps.clock() + timedelta(seconds=delay)
    recorded = await deps.repository.delivery.record_attempt(
        claimed,
        Attempt(
            attempt_number=0,
            attempted_at=attempted_at,
            duration_ms=result.duration_ms,
            http_status=result.http_status,
            error_class=str(result.error_class),
            response_body=result.response_body,
        ),
        status=status,
        next_attempt_at=next_attempt_at,
        disable_endpoint=verdict is Verdict.DISABLE_ENDPOINT,
    )
    if not recorded:
        log.warning("lease of webhook message %s lost; attempt not recorded", claimed.message_id)
    return verdict


async def _attempt(deps: Dependencies, claimed: ClaimedMessage, attempted_at: datetime) -> AttemptResult:
    # Resolve and check again at send time: the name may now point somewhere else (rebinding).
    try:
        target, addresses = await checked_destination(deps, claimed.url)
    except UnsafeWebhookUrl as refusal:
        return AttemptResult(0, ErrorClass.BLOCKED, 0, refusal.message)
    timestamp = int(attempted_at.timestamp())
    headers = webhook_headers(claimed.secrets, claimed.message_id, timestamp, claimed.body)
    return await deps.sender.post(target, addresses[0], headers, claimed.body)
