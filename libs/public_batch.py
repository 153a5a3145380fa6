"""A batch's public fields, written once from batch's `Batch` message: what the customer API answers
for a batch (`GET /api/enterprise/video-batch/{id}`) and what the batch webhooks carry
(`batch.completed`, `batch.cancelled`), with the same names and values.

The gateway answers `batch_fields` (its `BatchView`); the webhook service sends `batch_event_fields`,
which leaves out the fields only the REST view has (`REST_ONLY_FIELDS`: the webhook payload's
contract never had them, tested in tests/integration/webhook).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reelbatch.proto.batch.v1 import batch_pb2

from libs.rpc.timestamps import optional_time

REST_ONLY_FIELDS = frozenset({"webhook_url", "retry_of", "retries"})


def batch_fields(batch: batch_pb2.Batch) -> dict[str, Any]:
    """The REST view's fields, in its order, times as UTC datetimes: unvalidated, so the polled reads
    write them as JSON without building the model."""
    return {
        "batch_id": batch.batch_id,
        "status": batch.status,
        "total_count": batch.total_count,
        "success_count": batch.success_count,
        "failed_count": batch.failed_count,
        "cancelled_count": batch.cancelled_count,
        "pending_count": batch.pending_count,
        "frozen_credits": batch.frozen_credits,
        "credits_spent": batch.credits_spent,
        "refunded_credits": batch.refunded_credits,
        "settlement_status": batch.settlement_status,
        "created_at": optional_time(batch.created_at, True),
        "finished_at": optional_time(batch.finished_at, batch.HasField("finished_at")),
        "webhook_url": batch.webhook_url or None,
        "retry_of": batch.retry_of_batch_id or None,
        "retries": list(batch.retry_batch_ids),
        "name": batch.name or None,
        "metadata": dict(batch.metadata),
    }


def batch_event_fields(batch: batch_pb2.Batch) -> dict[str, object]:
    """`batch_fields` as a batch webhook carries them: without `REST_ONLY_FIELDS`, and times as the
    REST JSON writes them (RFC 3339, UTC as `Z`)."""
    return {
        name: _rfc3339(value) if isinstance(value, datetime) else value
        for name, value in batch_fields(batch).items()
        if name not in REST_ONLY_FIELDS
    }


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
