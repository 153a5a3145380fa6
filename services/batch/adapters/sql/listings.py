"""The read model's filtered lists and reports: batches by filter, a batch's record, its
outcome breakdown, per-batch totals, and the items of its failed tasks (what a retry resends).
The polled reads (one batch with its counters, a page of tasks) are `reads`'.

SQL style: SQLAlchemy Core (queries composed from optional filters).
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from libs.db import Database
from libs.field_mapping import from_fields
from services.batch.adapters.sql import records
from services.batch.adapters.sql.generation_json import settings_of
from services.batch.adapters.tables import batches, tasks
from services.batch.domain.batch import (
    BatchId,
    BatchItem,
    BatchRecord,
    BatchView,
    Metadata,
    TaskStatus,
    TenantId,
)
from services.batch.domain.paging import BatchCursor
from services.batch.domain.provider import FailureType
from services.batch.domain.reporting import BatchBreakdown, BatchTotals, OutcomeGroup

_RETRY = batches.alias("retry")
# A batch's retries, oldest first, as a column of a query of `batches` (NULL when there are none).
_RETRIES_COLUMN = (
    select(func.array_agg(aggregate_order_by(_RETRY.c.id, _RETRY.c.created_at, _RETRY.c.id)))
    .where(_RETRY.c.retry_of == batches.c.id)
    .scalar_subquery()
    .label("retries")
)


def batch_in_scope(batch_id: BatchId, tenant_id: TenantId | None) -> Select[Any]:
    """The query of one batch in a tenant's scope (None: the admin scope, any tenant's batch); the
    one home of that scope rule for the reads and the cancel of a batch."""
    query = select(batches).where(batches.c.id == batch_id)
    return query if tenant_id is None else query.where(batches.c.tenant_id == tenant_id)


class BatchListings:
    """Batches and their reports for listings, the admin pages and billing's reconciliation."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def get_batch(self, batch_id: BatchId, tenant_id: TenantId | None = None) -> BatchRecord | None:
        """The batch, if it exists in the tenant's scope (None: admin scope)."""
        async with self._db.connection() as conn:
            row = (await conn.execute(batch_in_scope(batch_id, tenant_id))).one_or_none()
        return records.batch_record(row) if row is not None else None

    async def list_batches(
        self,
        tenant_id: TenantId | None,
        status: str,
        after: BatchCursor | None,
        limit: int,
        *,
        settlement_status: str = "",
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        name: str = "",
        metadata: Metadata = (),
    ) -> list[BatchView]:
        """Newest first; at most `limit` batches after the cursor, filtered by whatever is set."""
        query = select(batches, _RETRIES_COLUMN)
        if tenant_id is not None:
            query = query.where(batches.c.tenant_id == tenant_id)
        if status:
            query = query.where(batches.c.status == status)
        if settlement_status:
            query = query.where(batches.c.settlement_status == settlement_status)
        if created_from is not None:
            query = query.where(batches.c.created_at >= created_from)
        if created_to is not None:
            query = query.where(batches.c.created_at < created_to)
        if name:
            query = query.where(batches.c.name == name)
        if metadata:
            query = query.where(batches.c.metadata.contains(dict(metadata)))
        if after is not None:
            query = query.where(
                func.row(batches.c.created_at, batches.c.id) < func.row(after.created_at, after.batch_id)
            )
        query = query.order_by(batches.c.created_at.desc(), batches.c.id.desc()).limit(limit)
        async with self._db.connection() as conn:
            return [records.batch_view(row) for row in (await conn.execute(query)).all()]

    async def batch_breakdown(self, batch_id: BatchId, tenant_id: TenantId | None) -> BatchBreakdown | None:
        """The batch's tasks grouped by (status, failure_type, model), with its timing."""
        async with self._db.connection() as conn:
            row = (await conn.execute(batch_in_scope(batch_id, tenant_id))).one_or_none()
            if row is None:
                return None
            batch = records.batch_record(row)
            groups = (
                await conn.execute(
                    select(
                        tasks.c.status,
                        tasks.c.failure_type,
                        tasks.c.model,
                        func.count().label("n"),
                        func.coalesce(func.sum(tasks.c.unit_price), 0).label("credits"),
                        func.coalesce(func.sum(tasks.c.attempts), 0).label("attempts"),
                        func.min(tasks.c.started_at).label("first_started_at"),
                    )
                    .where(tasks.c.batch_id == batch_id)
                    .group_by(tasks.c.status, tasks.c.failure_type, tasks.c.model)
                    .order_by(tasks.c.status, tasks.c.failure_type, tasks.c.model)
                )
            ).all()
        starts = [
            records.utc(group.first_started_at) for group in groups if group.first_started_at is not None
        ]
        return BatchBreakdown(
            batch_id=batch.id,
            groups=tuple(
                OutcomeGroup(
                    status=group.status,
                    failure_type=group.failure_type,
                    model=group.model,
                    count=int(group.n),
                    credits=int(group.credits),
                )
                for group in groups
            ),
            created_at=batch.created_at,
            queued_at=records.utc(row.queued_at),
            first_started_at=min((s for s in starts if s is not None), default=None),
            finished_at=batch.finished_at,
            settled_at=records.utc(row.settled_at),
            total_attempts=sum(int(group.attempts) for group in groups),
        )

    async def batch_totals(
        self,
        after: BatchId | None,
        limit: int,
        named: Sequence[BatchId] | None = None,
        created_from: datetime | None = None,
    ) -> list[BatchTotals]:
        """Per-batch outcome totals in batch id order (every tenant; only `named` ones and those
        created since `created_from` when given), from the counters each batch keeps on its row in
        the transaction that finishes its tasks (ADR-031; equal to its tasks' by I4): a page reads
        its batches' rows, not their tasks (ADR-155)."""
        query = select(
            batches.c.id,
            batches.c.tenant_id,
            batches.c.status,
            batches.c.settlement_status,
            batches.c.total_count,
            batches.c.frozen_credits,
            (batches.c.succeeded_count + batches.c.failed_count + batches.c.cancelled_count).label(
                "terminal_count"
            ),
            batches.c.credits_spent.label("succeeded_credits"),
            batches.c.refunded_credits.label("refundable_credits"),
        ).order_by(batches.c.id)
        if after is not None:
            query = query.where(batches.c.id > after)
        if named is not None:
            query = query.where(batches.c.id.in_(named))
        if created_from is not None:
            query = query.where(batches.c.created_at >= created_from)
        async with self._db.connection() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [
            from_fields(
                BatchTotals,
                row,
                batch_id=BatchId(row.id),
                terminal_count=int(row.terminal_count),
                succeeded_credits=int(row.succeeded_credits),
                refundable_credits=int(row.refundable_credits),
            )
            for row in rows
        ]

    async def failed_items(
        self, batch_id: BatchId, failure_types: AbstractSet[FailureType]
    ) -> list[BatchItem]:
        """The items of the batch's tasks that failed in one of these ways, in batch order."""
        async with self._db.connection() as conn:
            rows = (
                await conn.execute(
                    select(
                        tasks.c.prompt,
                        tasks.c.model,
                        tasks.c.duration_seconds,
                        tasks.c.custom_id,
                        tasks.c.metadata,
                        tasks.c.settings,
                    )
                    .where(
                        tasks.c.batch_id == batch_id,
                        tasks.c.status == TaskStatus.FAILED.value,
                        tasks.c.failure_type.in_(sorted(failure_types)),
                    )
                    .order_by(tasks.c.batch_index)
                )
            ).all()
        # A retried item keeps the client's id and labels: its result is matched back the same way.
        return [
            BatchItem(
                prompt=row.prompt,
                model=row.model,
                duration_seconds=row.duration_seconds,
                custom_id=row.custom_id or "",
                metadata=tuple((row.metadata or {}).items()),
                settings=settings_of(row.settings),
            )
            for row in rows
        ]
