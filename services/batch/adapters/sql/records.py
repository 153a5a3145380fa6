"""Rows of the batch tables turned into the domain's records (no SQL here)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.batch.domain.batch import (
    PENDING_TASK_STATUSES,
    BatchId,
    BatchRecord,
    BatchStatus,
    BatchView,
    SettlementStatus,
    TaskCounts,
    TaskId,
    TaskRecord,
    TaskStatus,
    TenantId,
)
from services.batch.domain.scheduling import CancelReason

# The `status` column values of tasks not yet finished.
PENDING_STATUS_VALUES = [status.value for status in PENDING_TASK_STATUSES]


def utc(moment: datetime | None) -> datetime | None:
    """A stored time in UTC (None stays None)."""
    return moment.astimezone(UTC) if moment is not None else None


def batch_record(row: Any) -> BatchRecord:
    """A `batches` row as a BatchRecord."""
    created_at = utc(row.created_at)
    assert created_at is not None
    return BatchRecord(
        id=BatchId(row.id),
        tenant_id=TenantId(row.tenant_id),
        request_id=row.request_id,
        request_fingerprint=row.request_fingerprint,
        status=BatchStatus(row.status),
        total_count=row.total_count,
        required_credits=row.required_credits,
        cost_per_video=row.cost_per_video,
        available_snapshot=row.available_snapshot,
        frozen_credits=row.frozen_credits,
        rejected_required=row.rejected_required,
        rejected_available=row.rejected_available,
        cancel_requested=row.cancel_requested,
        settlement_status=SettlementStatus(row.settlement_status),
        webhook_url=row.webhook_url,
        created_at=created_at,
        queued_at=utc(row.queued_at),
        finished_at=utc(row.finished_at),
        settled_at=utc(row.settled_at),
        deadline_at=utc(row.deadline_at),
        cancel_reason=row.cancel_reason,
        retry_of=BatchId(row.retry_of) if row.retry_of is not None else None,
        rejection_reason=row.rejection_reason,
        name=row.name,
        metadata=row.metadata,
    )


def cancel_reason(value: str | None) -> CancelReason | None:
    """The stored `cancel_reason` (None when no cancel was requested)."""
    return CancelReason(value) if value else None


def task_record(row: Any) -> TaskRecord:
    """A `tasks` row (or the columns of one) as a TaskRecord."""
    created_at = utc(row.created_at)
    assert created_at is not None
    return TaskRecord(
        id=TaskId(row.id),
        batch_id=BatchId(row.batch_id),
        tenant_id=TenantId(row.tenant_id),
        batch_index=row.batch_index,
        prompt=row.prompt,
        model=row.model,
        unit_price=row.unit_price,
        status=TaskStatus(row.status),
        attempts=row.attempts,
        claims=row.claims,
        failure_type=row.failure_type,
        error_message=row.error_message,
        video_url=row.video_url,
        created_at=created_at,
        started_at=utc(row.started_at),
        finished_at=utc(row.finished_at),
        custom_id=row.custom_id,
        metadata=row.metadata,
        provider_cost_usd_micros=row.provider_cost_usd_micros,
        provider_jobs=row.provider_jobs,
    )


def task_counts(row: Any) -> TaskCounts:
    """The task counters a `batches` row holds (ADR-031)."""
    return TaskCounts(
        total=row.total_count,
        succeeded=row.succeeded_count,
        failed=row.failed_count,
        cancelled=row.cancelled_count,
        credits_spent=row.credits_spent,
        refunded_credits=row.refunded_credits,
    )


def batch_view(row: Any) -> BatchView:
    """A `batches` row with its `retries` column as a BatchView."""
    retries = tuple(BatchId(retry) for retry in row.retries or ())
    return BatchView(batch_record(row), task_counts(row), retries)
