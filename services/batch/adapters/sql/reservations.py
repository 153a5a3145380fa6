"""Reservations: a reserving batch's quoted lines rebuilt from its tasks, and its rejection when
billing refuses to freeze its credits (queueing it is `queueing`'s, re-pricing it `intake`'s).

SQL style: SQLAlchemy Core.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select, update

from libs.db import Database
from services.batch.adapters.sql import records
from services.batch.adapters.tables import batches, tasks
from services.batch.domain.batch import BatchId, BatchRecord, BatchStatus, QuoteLine, RejectionReason


class BatchReservations:
    """What the reservation of a batch reads and, when it is refused, writes."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def reservation_lines(self, batch_id: BatchId) -> list[QuoteLine]:
        """The quoted lines of a batch, rebuilt from its tasks (the recovery loop has no request)."""
        async with self._db.connection() as conn:
            rows = (
                await conn.execute(
                    select(
                        tasks.c.model,
                        tasks.c.unit_price,
                        tasks.c.duration_seconds,
                        tasks.c.price_options,
                        func.count().label("n"),
                    )
                    .where(tasks.c.batch_id == batch_id)
                    .group_by(
                        tasks.c.model, tasks.c.unit_price, tasks.c.duration_seconds, tasks.c.price_options
                    )
                    .order_by(func.min(tasks.c.batch_index))
                )
            ).all()
        return [
            QuoteLine(
                model=row.model,
                count=row.n,
                unit_price=row.unit_price,
                duration_seconds=row.duration_seconds,
                options=row.price_options,
            )
            for row in rows
        ]

    async def mark_rejected(
        self,
        batch_id: BatchId,
        reason: RejectionReason,
        required: int | None = None,
        available: int | None = None,
    ) -> BatchRecord | None:
        """reserving -> rejected for `reason` (with the credits billing compared, when it was
        short of them); its tasks are deleted, since a rejected batch never ran.

        Returns the rejected batch, or None if it was not reserving any more.
        """
        async with self._db.connection() as conn:
            rejected = (
                await conn.execute(
                    update(batches)
                    .where(batches.c.id == batch_id, batches.c.status == BatchStatus.RESERVING.value)
                    .values(
                        status=BatchStatus.REJECTED.value,
                        # A rejected retry froze nothing: its source may be retried again.
                        retry_slot=None,
                        rejection_reason=reason.value,
                        rejected_required=required,
                        rejected_available=available,
                        finished_at=func.now(),
                    )
                    .returning(*batches.c)
                )
            ).one_or_none()
            if rejected is None:
                return None
            await conn.execute(delete(tasks).where(tasks.c.batch_id == batch_id))
            return records.batch_record(rejected)
