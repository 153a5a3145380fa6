"""Recovery: the sweeps that repair work after crashes and outages, safe on several replicas
(rows they touch are locked SKIP LOCKED): batches stuck reserving, deadlines passed, leases
expired, batches never finished, windows never topped up.

SQL style: SQLAlchemy Core (the window top-up it runs is `queueing`'s).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import any_, exists, func, select, update

from libs.db import Database
from libs.messaging.contract import Envelope
from libs.messaging.outbox import add_events
from services.batch.adapters import events
from services.batch.adapters.sql import records
from services.batch.adapters.sql.cancel import request_cancel
from services.batch.adapters.sql.finishing import count_outcomes, finish_batches
from services.batch.adapters.sql.provider_spend import book_spend
from services.batch.adapters.sql.queueing import DispatchWindows, top_up_windows
from services.batch.adapters.sql.statements import seconds, uuids
from services.batch.adapters.tables import batches, outbox, tasks
from services.batch.domain.batch import (
    LOST_TASK_MESSAGE,
    MAX_TASK_CLAIMS,
    BatchId,
    BatchStatus,
    TaskId,
    TaskStatus,
    TenantId,
)
from services.batch.domain.provider import FailureType
from services.batch.domain.scheduling import CancelReason


@dataclass(frozen=True)
class Swept:
    """What a sweep did: how many rows it repaired, and the final statuses of the batches it
    finished."""

    count: int
    finished: list[BatchStatus] = field(default_factory=list)


@dataclass(frozen=True)
class RecoveredLeases:
    """Tasks of vanished workers: dispatched again, or failed after MAX_TASK_CLAIMS claims, and
    the final statuses of the batches those failures finished."""

    requeued: int
    failed: int
    finished: list[BatchStatus] = field(default_factory=list)


class BatchRecovery:
    """The recovery loop's sweeps; each is one transaction over at most `limit` rows."""

    def __init__(self, database: Database, windows: DispatchWindows) -> None:
        self._db = database
        self._windows = windows

    async def stale_reserving_batches(self, older_than_seconds: float, limit: int) -> list[BatchId]:
        """Batches stuck in reserving (a crash or a billing outage interrupted their creation)."""
        async with self._db.connection() as conn:
            ids = (
                await conn.execute(
                    select(batches.c.id)
                    .where(
                        batches.c.status == BatchStatus.RESERVING.value,
                        batches.c.created_at < func.now() - seconds(older_than_seconds),
                    )
                    .order_by(batches.c.created_at)
                    .limit(limit)
                )
            ).scalars()
            return [BatchId(i) for i in ids]

    async def expire_deadlines(self, limit: int) -> Swept:
        """Cancels the batches whose deadline passed (workers stop their running tasks)."""
        async with self._db.connection() as conn:
            rows = (
                await conn.execute(
                    select(batches)
                    .where(
                        batches.c.finished_at.is_(None),
                        batches.c.deadline_at.is_not(None),
                        ~batches.c.cancel_requested,
                        batches.c.deadline_at < func.now(),
                        batches.c.status != BatchStatus.REJECTED.value,
                    )
                    .order_by(batches.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            finished: list[BatchStatus] = []
            for row in rows:
                finished += await request_cancel(conn, records.batch_record(row), CancelReason.DEADLINE)
        return Swept(len(rows), finished)

    async def recover_expired_leases(self, limit: int) -> RecoveredLeases:
        """Tasks whose worker vanished: dispatched again, or failed after MAX_TASK_CLAIMS claims."""
        async with self._db.connection() as conn:
            expired = (
                await conn.execute(
                    select(tasks.c.id, (tasks.c.claims - tasks.c.handbacks).label("lost_claims"))
                    .where(
                        tasks.c.status == TaskStatus.RUNNING.value,
                        tasks.c.lease_expires_at < func.clock_timestamp(),
                    )
                    .order_by(tasks.c.lease_expires_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not expired:
                return RecoveredLeases(0, 0)
            # Claims a stopping worker handed back were not lost (ADR-139).
            lost = [row.id for row in expired if row.lost_claims >= MAX_TASK_CLAIMS]
            retry = [row.id for row in expired if row.lost_claims < MAX_TASK_CLAIMS]
            failed_rows: Sequence[Any] = []
            if lost:
                failed_rows = (
                    await conn.execute(
                        update(tasks)
                        .where(tasks.c.id == any_(uuids(lost)))
                        .values(
                            status=TaskStatus.FAILED.value,
                            failure_type=FailureType.INTERNAL.value,
                            error_message=LOST_TASK_MESSAGE,
                            finished_at=func.now(),
                            lease_expires_at=None,
                        )
                        .returning(*tasks.c)
                    )
                ).all()
                failed_tasks = await book_spend(conn, [records.task_record(row) for row in failed_rows])
                await count_outcomes(conn, failed_tasks)
                await add_events(conn, outbox, events.task_outcomes(failed_tasks))
            requeued_rows: Sequence[Any] = []
            if retry:
                requeued_rows = (
                    await conn.execute(
                        update(tasks)
                        .where(tasks.c.id == any_(uuids(retry)))
                        .values(status=TaskStatus.QUEUED.value, claim_token=None, lease_expires_at=None)
                        .returning(tasks.c.id, tasks.c.batch_id, tasks.c.tenant_id, tasks.c.batch_index)
                    )
                ).all()
                by_batch: dict[tuple[BatchId, TenantId], list[tuple[int, TaskId]]] = defaultdict(list)
                for row in requeued_rows:
                    by_batch[(BatchId(row.batch_id), TenantId(row.tenant_id))].append(
                        (row.batch_index, TaskId(row.id))
                    )
                dispatches: list[Envelope] = []
                for (batch_id, tenant_id), indexed in by_batch.items():
                    ordered = [task_id for _, task_id in sorted(indexed)]
                    dispatches += events.task_dispatches(
                        batch_id, tenant_id, ordered, self._windows.chunk_size
                    )
                await add_events(conn, outbox, dispatches)
            finished = await finish_batches(conn, {BatchId(row.batch_id) for row in failed_rows})
        return RecoveredLeases(len(requeued_rows), len(failed_rows), finished)

    async def finish_forgotten_batches(self, limit: int) -> Swept:
        """Safety net: batches whose tasks are all terminal but that were never finished."""
        pending_task = exists().where(
            tasks.c.batch_id == batches.c.id, tasks.c.status.in_(records.PENDING_STATUS_VALUES)
        )
        async with self._db.connection() as conn:
            ids = list(
                (
                    await conn.execute(
                        select(batches.c.id)
                        .where(
                            batches.c.status.in_([BatchStatus.QUEUED.value, BatchStatus.PROCESSING.value]),
                            batches.c.finished_at.is_(None),
                            ~pending_task,
                        )
                        .limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                ).scalars()
            )
            finished = await finish_batches(conn, [BatchId(i) for i in ids])
        return Swept(len(ids), finished)

    async def top_up_windows(self, limit: int) -> int:
        """Safety net: dispatches what fits in the windows of tenants with undispatched tasks."""
        async with self._db.connection() as conn:
            tenant_ids = (
                (
                    await conn.execute(
                        select(batches.c.tenant_id)
                        .where(
                            batches.c.finished_at.is_(None),
                            batches.c.status.in_([BatchStatus.QUEUED.value, BatchStatus.PROCESSING.value]),
                            ~batches.c.cancel_requested,
                            batches.c.undispatched_count > 0,
                        )
                        .distinct()
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
            return await top_up_windows(conn, self._windows, [TenantId(t) for t in tenant_ids])
