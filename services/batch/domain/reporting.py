"""Read models for operators and finance: a batch's outcome breakdown and per-batch money totals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.batch.domain.batch import BatchId, TenantId


@dataclass(frozen=True)
class OutcomeGroup:
    """Tasks of one batch sharing (status, failure_type, model), and what they are priced at."""

    status: str
    failure_type: str | None
    model: str
    count: int
    credits: int


@dataclass(frozen=True)
class BatchBreakdown:
    """Where a batch's tasks ended up, and when things happened."""

    batch_id: BatchId
    groups: tuple[OutcomeGroup, ...]
    created_at: datetime
    queued_at: datetime | None
    first_started_at: datetime | None
    finished_at: datetime | None
    settled_at: datetime | None
    total_attempts: int


@dataclass(frozen=True)
class BatchTotals:
    """One batch's task outcomes in credits, as reconciliation compares them with billing."""

    batch_id: BatchId
    tenant_id: TenantId
    status: str
    settlement_status: str
    total_count: int
    frozen_credits: int
    terminal_count: int
    succeeded_credits: int
    refundable_credits: int
