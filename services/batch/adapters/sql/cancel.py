"""Cancel: a batch's cancel requested (by its customer or its deadline), its queued tasks
cancelled at once, and which batches the workers must stop tasks of.

SQL style: SQLAlchemy Core (the counters and the finish check it runs are `finishing`'s).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import any_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.db import Database
from libs.messaging.outbox import add_events
from services.batch.adapters import events
from services.batch.adapters.sql import records
from services.batch.adapters.sql.finishing import count_outcomes, finish_batches
from services.batch.adapters.sql.listings import batch_in_scope
from services.batch.adapters.sql.provider_spend import book_spend
from services.batch.adapters.sql.statements import uuids
from services.batch.adapters.tables import batches, outbox, tasks
from services.batch.domain.batch import BatchId, BatchRecord, BatchStatus, TaskStatus, TenantId
from services.batch.domain.provider import FailureType
from services.batch.domain.scheduling import CancelReason, cancelled_task_message


class BatchCancels:
    """Cancels batches on request, and tells workers which batches were cancelled."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def cancel_batch(self, batch_id: BatchId, tenant_id: TenantId | None) -> list[BatchStatus] | None:
        """Cancels the tasks not yet started; None when the batch is not in the tenant's scope, else
        the final statuses of the batches the cancel finished (this one, when nothing was running)."""
        async with self._db.connection() as conn:
            row = (await conn.execute(batch_in_scope(batch_id, tenant_id).with_for_update())).one_or_none()
            if row is None:
                return None
            batch = records.batch_record(row)
            if batch.finished_at is not None or batch.status is BatchStatus.REJECTED:
                return []
            return await request_cancel(conn, batch, CancelReason.CUSTOMER)

    async def cancelled_batches(self, batch_ids: Iterable[BatchId]) -> dict[BatchId, CancelReason | None]:
        """Those of the batches whose cancel was requested, with the reason (customer or deadline)."""
        ids = set(batch_ids)
        if not ids:
            return {}
        async with self._db.connection() as conn:
            rows = (
                await conn.execute(
                    select(batches.c.id, batches.c.cancel_reason).where(
                        batches.c.id == any_(uuids(ids)), batches.c.cancel_requested
                    )
                )
            ).all()
            return {BatchId(row.id): records.cancel_reason(row.cancel_reason) for row in rows}


async def request_cancel(
    conn: AsyncConnection, batch: BatchRecord, reason: CancelReason
) -> list[BatchStatus]:
    """Marks the batch cancelled and cancels its queued tasks; returns the final statuses of the
    batches this finished."""
    # The first reason sticks: a customer cancel after the deadline fired changes nothing.
    reason = records.cancel_reason(batch.cancel_reason) or reason
    await conn.execute(
        update(batches)
        .where(batches.c.id == batch.id)
        .values(cancel_requested=True, cancel_reason=reason.value)
    )
    if batch.status is not BatchStatus.RESERVING:
        # A reserving batch is cancelled when its reservation completes (mark_queued_many). Running
        # tasks are stopped by their workers, which watch cancel_requested.
        return await cancel_queued_tasks(conn, batch.id, reason)
    return []


async def cancel_queued_tasks(
    conn: AsyncConnection, batch_id: BatchId, reason: CancelReason | None
) -> list[BatchStatus]:
    """Cancels the batch's queued tasks (with their events and the finish check); returns the
    final statuses of the batches this finished."""
    rows = (
        await conn.execute(
            update(tasks)
            .where(tasks.c.batch_id == batch_id, tasks.c.status == TaskStatus.QUEUED.value)
            .values(
                status=TaskStatus.CANCELLED.value,
                failure_type=FailureType.CANCELLED.value,
                error_message=cancelled_task_message(reason, started=False),
                finished_at=func.now(),
            )
            .returning(*tasks.c)
        )
    ).all()
    # A queued task may hold billed jobs from an earlier claim (a crash put it back in the queue).
    cancelled = await book_spend(conn, [records.task_record(row) for row in rows])
    # The one place tasks finish without having been dispatched: their batch's undispatched
    # count (ADR-042) drops with them, or they would be taken off its outstanding tasks twice
    # (as finished and as undispatched) and the tenant's window would admit that many more.
    never_dispatched = sum(1 for row in rows if row.dispatched_at is None)
    if never_dispatched:
        await conn.execute(
            update(batches)
            .where(batches.c.id == batch_id)
            .values(undispatched_count=batches.c.undispatched_count - never_dispatched)
        )
    await count_outcomes(conn, cancelled)
    await add_events(conn, outbox, events.task_outcomes(cancelled))
    return await finish_batches(conn, [batch_id])
