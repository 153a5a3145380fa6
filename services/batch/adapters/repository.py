"""All SQL of the batch service. Every public method is one transaction.

Events are written to the outbox in the transaction that changes the state they describe, and
every transaction that makes a task terminal runs the finish check before it commits.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Interval, any_, bindparam, delete, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter

from libs.bus import Envelope
from libs.db import Database
from libs.outbox import add_events
from services.batch import metrics as batch_metrics
from services.batch.adapters import events
from services.batch.adapters.tables import batches, outbox, tasks
from services.batch.domain.batch import (
    LOST_TASK_MESSAGE,
    MAX_TASK_CLAIMS,
    PENDING_TASK_STATUSES,
    BatchId,
    BatchItem,
    BatchRecord,
    BatchStatus,
    BatchView,
    NewBatch,
    QuoteLine,
    Reservation,
    Settlement,
    SettlementStatus,
    TaskCounts,
    TaskId,
    TaskRecord,
    TaskStatus,
    TenantId,
    final_status,
)
from services.batch.domain.execution import ClaimedTask, ClaimResult, TaskOutcome
from services.batch.domain.paging import BatchCursor
from services.batch.domain.provider import FailureType
from services.batch.domain.reporting import BatchBreakdown, BatchTotals, OutcomeGroup
from services.batch.domain.scheduling import (
    CancelReason,
    WindowState,
    cancelled_task_message,
    claimable_slots,
    plan_dispatch,
)

_PENDING = [status.value for status in PENDING_TASK_STATUSES]
_COPY_TASKS = (
    "COPY batch.tasks (id, batch_id, tenant_id, batch_index, prompt, model, unit_price, duration_seconds,"
    " status) FROM STDIN"
)


_UUID_ARRAY = ARRAY(PG_UUID(as_uuid=True))


def _uuids(values: Iterable[uuid.UUID]) -> BindParameter[Any]:
    # A single array parameter (= ANY(...)), not an IN list with one placeholder per id.
    ids: Any = list(values)
    return bindparam(None, ids, type_=_UUID_ARRAY)


def _seconds(value: float) -> BindParameter[timedelta]:
    return bindparam(None, timedelta(seconds=value), type_=Interval())


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


def _batch_record(row: Any) -> BatchRecord:
    created_at = _utc(row.created_at)
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
        queued_at=_utc(row.queued_at),
        finished_at=_utc(row.finished_at),
        settled_at=_utc(row.settled_at),
        deadline_at=_utc(row.deadline_at),
        cancel_reason=row.cancel_reason,
        retry_of=BatchId(row.retry_of) if row.retry_of is not None else None,
    )


def _cancel_reason(value: str | None) -> CancelReason | None:
    return CancelReason(value) if value else None


# Advisory lock keys: one per tenant for its dispatch window, one per model for its provider slots.
_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


async def _advisory_lock(conn: AsyncConnection, key: str) -> None:
    await conn.execute(_LOCK, {"key": key})


def _task_record(row: Any) -> TaskRecord:
    created_at = _utc(row.created_at)
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
        started_at=_utc(row.started_at),
        finished_at=_utc(row.finished_at),
    )


class BatchRepository:
    """Batches, tasks and the batch outbox in PostgreSQL."""

    def __init__(
        self,
        database: Database,
        *,
        dispatch_chunk_size: int,
        batch_window_chunks: int = 4,
        tenant_window_chunks: int = 16,
    ) -> None:
        self._db = database
        self._chunk_size = dispatch_chunk_size
        self._batch_window_chunks = batch_window_chunks
        self._tenant_window_chunks = tenant_window_chunks

    # --- create and reserve -------------------------------------------------------------------

    async def insert_batch(self, new: NewBatch) -> tuple[BatchRecord, bool]:
        """Stores the batch and its tasks, or returns the batch already holding the request id.

        Returns (batch, created). A concurrent insert of the same (tenant, request id) waits on the
        unique index until the first transaction commits, then finds that batch.
        """
        async with self._db.connection() as conn:
            inserted = (
                await conn.execute(
                    insert(batches)
                    .values(
                        id=new.id,
                        tenant_id=new.tenant_id,
                        request_id=new.request_id,
                        request_fingerprint=new.request_fingerprint,
                        status=BatchStatus.RESERVING.value,
                        total_count=len(new.items),
                        required_credits=new.required_credits,
                        cost_per_video=new.cost_per_video,
                        webhook_url=new.webhook_url,
                        deadline_at=(
                            func.now() + _seconds(new.deadline_seconds) if new.deadline_seconds else None
                        ),
                        retry_of=new.retry_of,
                    )
                    .on_conflict_do_nothing(index_elements=[batches.c.tenant_id, batches.c.request_id])
                    .returning(*batches.c)
                )
            ).one_or_none()
            if inserted is None:
                existing = (
                    await conn.execute(
                        select(batches).where(
                            batches.c.tenant_id == new.tenant_id, batches.c.request_id == new.request_id
                        )
                    )
                ).one()
                return _batch_record(existing), False
            await self._copy_tasks(conn, new)
            return _batch_record(inserted), True

    async def _copy_tasks(self, conn: AsyncConnection, new: NewBatch) -> None:
        # COPY: 10,000 rows in tens of milliseconds, where one INSERT per row takes seconds.
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        queued = TaskStatus.QUEUED.value
        async with driver.cursor() as cursor, cursor.copy(_COPY_TASKS) as copy:
            for index, item in enumerate(new.items):
                priced = new.prices[(item.model, item.duration_seconds)]
                await copy.write_row(
                    (
                        uuid.uuid4(),
                        new.id,
                        new.tenant_id,
                        index,
                        item.prompt,
                        item.model,
                        priced.unit_price,
                        priced.duration_seconds,
                        queued,
                    )
                )

    async def find_by_request_id(self, tenant_id: TenantId, request_id: str) -> BatchRecord | None:
        """The batch a (tenant, request id) already created, if any."""
        async with self._db.connection() as conn:
            row = (
                await conn.execute(
                    select(batches).where(
                        batches.c.tenant_id == tenant_id, batches.c.request_id == request_id
                    )
                )
            ).one_or_none()
        return _batch_record(row) if row is not None else None

    async def get_batch(self, batch_id: BatchId, tenant_id: TenantId | None = None) -> BatchRecord | None:
        """The batch, if it exists in the tenant's scope (None: admin scope)."""
        query = select(batches).where(batches.c.id == batch_id)
        if tenant_id is not None:
            query = query.where(batches.c.tenant_id == tenant_id)
        async with self._db.connection() as conn:
            row = (await conn.execute(query)).one_or_none()
        return _batch_record(row) if row is not None else None

    async def reservation_lines(self, batch_id: BatchId) -> list[QuoteLine]:
        """The quoted lines of a batch, rebuilt from its tasks (the recovery loop has no request)."""
        async with self._db.connection() as conn:
            rows = (
                await conn.execute(
                    select(
                        tasks.c.model, tasks.c.unit_price, tasks.c.duration_seconds, func.count().label("n")
                    )
                    .where(tasks.c.batch_id == batch_id)
                    .group_by(tasks.c.model, tasks.c.unit_price, tasks.c.duration_seconds)
                    .order_by(func.min(tasks.c.batch_index))
                )
            ).all()
        return [
            QuoteLine(
                model=row.model, count=row.n, unit_price=row.unit_price, duration_seconds=row.duration_seconds
            )
            for row in rows
        ]

    async def mark_queued(self, batch_id: BatchId, reservation: Reservation) -> bool:
        """reserving -> queued, with BatchQueued and the first dispatch window; False if not reserving.

        A batch cancelled while it was reserving has its tasks cancelled here instead of dispatched.
        """
        async with self._db.connection() as conn:
            row = (
                await conn.execute(
                    update(batches)
                    .where(batches.c.id == batch_id, batches.c.status == BatchStatus.RESERVING.value)
                    .values(
                        status=BatchStatus.QUEUED.value,
                        frozen_credits=reservation.frozen_credits,
                        available_snapshot=reservation.available_before,
                        queued_at=func.now(),
                    )
                    .returning(*batches.c)
                )
            ).one_or_none()
            if row is None:
                return False
            batch = _batch_record(row)
            assert batch.queued_at is not None
            await add_events(conn, outbox, [events.batch_queued(batch, batch.queued_at)])
            if batch.cancel_requested:
                await self._cancel_queued_tasks(conn, batch_id, _cancel_reason(batch.cancel_reason))
                return True
            await self._top_up_windows(conn, [batch.tenant_id])
            return True

    async def mark_rejected(self, batch_id: BatchId, required: int, available: int) -> None:
        """reserving -> rejected; its tasks are deleted, since a rejected batch never ran."""
        async with self._db.connection() as conn:
            rejected = (
                await conn.execute(
                    update(batches)
                    .where(batches.c.id == batch_id, batches.c.status == BatchStatus.RESERVING.value)
                    .values(
                        status=BatchStatus.REJECTED.value,
                        rejected_required=required,
                        rejected_available=available,
                        finished_at=func.now(),
                    )
                    .returning(batches.c.id)
                )
            ).one_or_none()
            if rejected is not None:
                await conn.execute(delete(tasks).where(tasks.c.batch_id == batch_id))

    async def stale_reserving_batches(self, older_than_seconds: float, limit: int) -> list[BatchId]:
        """Batches stuck in reserving (a crash or a billing outage interrupted their creation)."""
        async with self._db.connection() as conn:
            ids = (
                await conn.execute(
                    select(batches.c.id)
                    .where(
                        batches.c.status == BatchStatus.RESERVING.value,
                        batches.c.created_at < func.now() - _seconds(older_than_seconds),
                    )
                    .order_by(batches.c.created_at)
                    .limit(limit)
                )
            ).scalars()
            return [BatchId(i) for i in ids]

    # --- reads --------------------------------------------------------------------------------

    async def batch_view(self, batch_id: BatchId, tenant_id: TenantId | None) -> BatchView | None:
        """The batch and its derived counters."""
        query = select(batches).where(batches.c.id == batch_id)
        if tenant_id is not None:
            query = query.where(batches.c.tenant_id == tenant_id)
        async with self._db.connection() as conn:
            row = (await conn.execute(query)).one_or_none()
            if row is None:
                return None
            batch = _batch_record(row)
            counts = await self._counts(conn, [batch])
        return BatchView(batch, counts[batch.id])

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
    ) -> list[BatchView]:
        """Newest first; at most `limit` batches after the cursor, filtered by whatever is set."""
        query = select(batches)
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
        if after is not None:
            query = query.where(
                func.row(batches.c.created_at, batches.c.id) < func.row(after.created_at, after.batch_id)
            )
        query = query.order_by(batches.c.created_at.desc(), batches.c.id.desc()).limit(limit)
        async with self._db.connection() as conn:
            records = [_batch_record(row) for row in (await conn.execute(query)).all()]
            counts = await self._counts(conn, records)
        return [BatchView(record, counts[record.id]) for record in records]

    async def list_tasks(
        self,
        batch_id: BatchId,
        status: TaskStatus | None,
        after_index: int | None,
        limit: int,
        *,
        failure_type: FailureType | None = None,
    ) -> list[TaskRecord]:
        """Tasks in batch order, after the cursor."""
        query = select(tasks).where(tasks.c.batch_id == batch_id)
        if status is not None:
            query = query.where(tasks.c.status == status.value)
        if failure_type is not None:
            query = query.where(tasks.c.failure_type == failure_type.value)
        if after_index is not None:
            query = query.where(tasks.c.batch_index > after_index)
        query = query.order_by(tasks.c.batch_index).limit(limit)
        async with self._db.connection() as conn:
            return [_task_record(row) for row in (await conn.execute(query)).all()]

    async def batch_breakdown(self, batch_id: BatchId, tenant_id: TenantId | None) -> BatchBreakdown | None:
        """The batch's tasks grouped by (status, failure_type, model), with its timing."""
        query = select(batches).where(batches.c.id == batch_id)
        if tenant_id is not None:
            query = query.where(batches.c.tenant_id == tenant_id)
        async with self._db.connection() as conn:
            row = (await conn.execute(query)).one_or_none()
            if row is None:
                return None
            batch = _batch_record(row)
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
        starts = [_utc(group.first_started_at) for group in groups if group.first_started_at is not None]
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
            queued_at=_utc(row.queued_at),
            first_started_at=min((s for s in starts if s is not None), default=None),
            finished_at=batch.finished_at,
            settled_at=_utc(row.settled_at),
            total_attempts=sum(int(group.attempts) for group in groups),
        )

    async def batch_totals(self, after: BatchId | None, limit: int) -> list[BatchTotals]:
        """Per-batch outcome totals in batch id order (every tenant)."""
        terminal = [status.value for status in TaskStatus if status.value not in _PENDING]
        refundable = [TaskStatus.FAILED.value, TaskStatus.CANCELLED.value]
        page = select(batches).order_by(batches.c.id).limit(limit)
        if after is not None:
            page = page.where(batches.c.id > after)
        chosen = page.subquery()
        query = (
            select(
                chosen.c.id,
                chosen.c.tenant_id,
                chosen.c.status,
                chosen.c.settlement_status,
                chosen.c.total_count,
                chosen.c.frozen_credits,
                func.count(tasks.c.id).filter(tasks.c.status.in_(terminal)).label("terminal"),
                func.coalesce(
                    func.sum(tasks.c.unit_price).filter(tasks.c.status == TaskStatus.SUCCEEDED.value), 0
                ).label("succeeded"),
                func.coalesce(func.sum(tasks.c.unit_price).filter(tasks.c.status.in_(refundable)), 0).label(
                    "refundable"
                ),
            )
            .select_from(chosen.outerjoin(tasks, tasks.c.batch_id == chosen.c.id))
            .group_by(
                chosen.c.id,
                chosen.c.tenant_id,
                chosen.c.status,
                chosen.c.settlement_status,
                chosen.c.total_count,
                chosen.c.frozen_credits,
            )
            .order_by(chosen.c.id)
        )
        async with self._db.connection() as conn:
            rows = (await conn.execute(query)).all()
        return [
            BatchTotals(
                batch_id=BatchId(row.id),
                tenant_id=TenantId(row.tenant_id),
                status=row.status,
                settlement_status=row.settlement_status,
                total_count=row.total_count,
                frozen_credits=row.frozen_credits,
                terminal_count=int(row.terminal),
                succeeded_credits=int(row.succeeded),
                refundable_credits=int(row.refundable),
            )
            for row in rows
        ]

    async def _counts(
        self, conn: AsyncConnection, records: Sequence[BatchRecord]
    ) -> dict[BatchId, TaskCounts]:
        # One GROUP BY over (batch_id, status): counters are never stored per task on the batch row.
        rows = (
            await conn.execute(
                select(
                    tasks.c.batch_id,
                    tasks.c.status,
                    func.count().label("n"),
                    func.coalesce(func.sum(tasks.c.unit_price), 0).label("credits"),
                )
                .where(tasks.c.batch_id == any_(_uuids(record.id for record in records)))
                .group_by(tasks.c.batch_id, tasks.c.status)
            )
        ).all()
        by_batch: dict[BatchId, dict[str, tuple[int, int]]] = defaultdict(dict)
        for row in rows:
            by_batch[BatchId(row.batch_id)][row.status] = (int(row.n), int(row.credits))  # sum() is numeric
        counts: dict[BatchId, TaskCounts] = {}
        for record in records:
            found = by_batch.get(record.id, {})
            succeeded = found.get(TaskStatus.SUCCEEDED.value, (0, 0))
            failed = found.get(TaskStatus.FAILED.value, (0, 0))
            cancelled = found.get(TaskStatus.CANCELLED.value, (0, 0))
            counts[record.id] = TaskCounts(
                total=record.total_count,
                succeeded=succeeded[0],
                failed=failed[0],
                cancelled=cancelled[0],
                credits_spent=succeeded[1],
                refunded_credits=failed[1] + cancelled[1],
            )
        return counts

    # --- cancel -------------------------------------------------------------------------------

    async def cancel_batch(self, batch_id: BatchId, tenant_id: TenantId | None) -> bool:
        """Cancels the tasks not yet started; False when the batch is not in the tenant's scope."""
        query = select(batches).where(batches.c.id == batch_id).with_for_update()
        if tenant_id is not None:
            query = query.where(batches.c.tenant_id == tenant_id)
        async with self._db.connection() as conn:
            row = (await conn.execute(query)).one_or_none()
            if row is None:
                return False
            batch = _batch_record(row)
            if batch.finished_at is not None or batch.status is BatchStatus.REJECTED:
                return True
            await self._request_cancel(conn, batch, CancelReason.CUSTOMER)
            return True

    async def _request_cancel(self, conn: AsyncConnection, batch: BatchRecord, reason: CancelReason) -> None:
        # The first reason sticks: a customer cancel after the deadline fired changes nothing.
        reason = _cancel_reason(batch.cancel_reason) or reason
        await conn.execute(
            update(batches)
            .where(batches.c.id == batch.id)
            .values(cancel_requested=True, cancel_reason=reason.value)
        )
        if batch.status is not BatchStatus.RESERVING:
            # A reserving batch is cancelled when its reservation completes (mark_queued). Running
            # tasks are stopped by their workers, which watch cancel_requested.
            await self._cancel_queued_tasks(conn, batch.id, reason)

    async def _cancel_queued_tasks(
        self, conn: AsyncConnection, batch_id: BatchId, reason: CancelReason | None
    ) -> None:
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
        await add_events(conn, outbox, [events.task_outcome(_task_record(row)) for row in rows])
        await self._finish_batches(conn, [batch_id])

    # --- execution ----------------------------------------------------------------------------

    async def claim_tasks(
        self,
        batch_id: BatchId,
        task_ids: Sequence[TaskId],
        lease_seconds: float,
        *,
        slot_limits: Mapping[str, int] | None = None,
        worker_id: str | None = None,
    ) -> ClaimResult:
        """queued -> running for those of `task_ids` still queued that have a provider slot.

        Each model has `slot_limits[model]` slots shared by every worker: the running tasks of the
        model are counted under a per-model transaction advisory lock, so two workers can never
        both take the last slot. Claimed tasks get a fresh claim token and `claimed_by`.
        """
        if not task_ids:
            return ClaimResult([])
        limits = slot_limits or {}
        async with self._db.connection() as conn:
            # The batch row first, as CancelBatch locks it: the same lock order on both paths.
            await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.status == BatchStatus.QUEUED.value)
                .values(status=BatchStatus.PROCESSING.value)
            )
            queued = (
                await conn.execute(
                    select(tasks.c.id, tasks.c.model, tasks.c.tenant_id).where(
                        tasks.c.id == any_(_uuids(task_ids)),
                        tasks.c.batch_id == batch_id,
                        tasks.c.status == TaskStatus.QUEUED.value,
                    )
                )
            ).all()
            if not queued:
                return ClaimResult([])
            tenant_id = TenantId(queued[0].tenant_id)
            wanted: dict[str, list[TaskId]] = defaultdict(list)
            for row in queued:
                wanted[row.model].append(TaskId(row.id))
            claimed_rows: list[Any] = []
            for model in sorted(wanted):
                allowed = len(wanted[model])
                limit = limits.get(model)
                if limit is not None:
                    allowed = min(allowed, await self._free_slots(conn, model, tenant_id, limit))
                if allowed <= 0:
                    continue
                pick = (
                    select(tasks.c.id)
                    .where(
                        tasks.c.id == any_(_uuids(wanted[model])), tasks.c.status == TaskStatus.QUEUED.value
                    )
                    .order_by(tasks.c.batch_index)
                    .limit(allowed)
                    # A row locked by a cancel in progress is looked at again on the next claim.
                    .with_for_update(skip_locked=True)
                )
                claimed_rows += (
                    await conn.execute(
                        update(tasks)
                        .where(tasks.c.id.in_(pick))
                        .values(
                            status=TaskStatus.RUNNING.value,
                            claim_token=func.gen_random_uuid(),
                            claims=tasks.c.claims + 1,
                            claimed_by=worker_id,
                            lease_expires_at=func.clock_timestamp() + _seconds(lease_seconds),
                            started_at=func.coalesce(tasks.c.started_at, func.now()),
                        )
                        .returning(*tasks.c)
                    )
                ).all()
        claimed = sorted(
            (
                ClaimedTask(
                    task_id=TaskId(row.id),
                    batch_id=BatchId(row.batch_id),
                    tenant_id=TenantId(row.tenant_id),
                    batch_index=row.batch_index,
                    prompt=row.prompt,
                    model=row.model,
                    unit_price=row.unit_price,
                    claim_token=row.claim_token,
                    claims=row.claims,
                )
                for row in claimed_rows
            ),
            key=lambda task: task.batch_index,
        )
        taken = {task.task_id for task in claimed}
        return ClaimResult(claimed, [TaskId(row.id) for row in queued if row.id not in taken])

    async def _free_slots(self, conn: AsyncConnection, model: str, tenant_id: TenantId, limit: int) -> int:
        """Provider slots of `model` the tenant may take now; holds the model's lock until commit."""
        await _advisory_lock(conn, f"batch.slots:{model}")
        running = {
            TenantId(row.tenant_id): int(row.n)
            for row in (
                await conn.execute(
                    select(tasks.c.tenant_id, func.count().label("n"))
                    .where(tasks.c.status == TaskStatus.RUNNING.value, tasks.c.model == model)
                    .group_by(tasks.c.tenant_id)
                )
            ).all()
        }
        waiting = set(
            (
                await conn.execute(
                    select(tasks.c.tenant_id)
                    .where(
                        tasks.c.dispatched_at.is_not(None),
                        tasks.c.status == TaskStatus.QUEUED.value,
                        tasks.c.model == model,
                    )
                    .distinct()
                )
            ).scalars()
        )
        competing = len(set(running) | waiting | {tenant_id})
        return claimable_slots(
            limit=limit,
            running=sum(running.values()),
            running_mine=running.get(tenant_id, 0),
            competing_tenants=competing,
        )

    async def renew_leases(self, claim_tokens: Sequence[uuid.UUID], lease_seconds: float) -> int:
        """Extends the leases of tasks this worker still holds; returns how many it holds."""
        if not claim_tokens:
            return 0
        async with self._db.connection() as conn:
            result = await conn.execute(
                update(tasks)
                .where(
                    tasks.c.claim_token == any_(_uuids(claim_tokens)),
                    tasks.c.status == TaskStatus.RUNNING.value,
                )
                .values(lease_expires_at=func.clock_timestamp() + _seconds(lease_seconds))
            )
            return result.rowcount

    async def cancelled_batches(self, batch_ids: Iterable[BatchId]) -> dict[BatchId, CancelReason | None]:
        """Those of the batches whose cancel was requested, with the reason (customer or deadline)."""
        ids = set(batch_ids)
        if not ids:
            return {}
        async with self._db.connection() as conn:
            rows = (
                await conn.execute(
                    select(batches.c.id, batches.c.cancel_reason).where(
                        batches.c.id == any_(_uuids(ids)), batches.c.cancel_requested
                    )
                )
            ).all()
            return {BatchId(row.id): _cancel_reason(row.cancel_reason) for row in rows}

    async def write_outcomes(self, outcomes: Sequence[TaskOutcome]) -> int:
        """Writes outcomes whose claim still holds, their events, and the finish check.

        A late result of a task whose lease expired and was claimed again (or failed by recovery)
        no longer matches its claim token and is discarded. Returns how many were written.
        """
        if not outcomes:
            return 0
        async with self._db.connection() as conn:
            rows = (
                await conn.execute(
                    text(
                        """
                        UPDATE batch.tasks AS t
                        SET status = o.status, attempts = o.attempts, failure_type = o.failure_type,
                            error_message = o.error_message, video_url = o.video_url,
                            finished_at = now(), lease_expires_at = NULL
                        FROM unnest(
                            CAST(:ids AS uuid[]), CAST(:tokens AS uuid[]), CAST(:statuses AS text[]),
                            CAST(:attempts AS int[]), CAST(:failure_types AS text[]),
                            CAST(:messages AS text[]), CAST(:urls AS text[])
                        ) AS o(id, token, status, attempts, failure_type, error_message, video_url)
                        WHERE t.id = o.id AND t.claim_token = o.token AND t.status = 'running'
                        RETURNING t.*
                        """
                    ),
                    {
                        "ids": [o.task_id for o in outcomes],
                        "tokens": [o.claim_token for o in outcomes],
                        "statuses": [o.status.value for o in outcomes],
                        "attempts": [o.attempts for o in outcomes],
                        "failure_types": [o.failure_type.value if o.failure_type else None for o in outcomes],
                        "messages": [o.error_message for o in outcomes],
                        "urls": [o.video_url for o in outcomes],
                    },
                )
            ).all()
            written = [_task_record(row) for row in rows]
            await add_events(conn, outbox, [events.task_outcome(task) for task in written])
            await self._finish_batches(conn, {task.batch_id for task in written})
            # Last, so this transaction waits on nothing else while it holds the tenant locks.
            await self._top_up_windows(conn, {task.tenant_id for task in written})
        batch_metrics.tasks_finished(written)
        return len(written)

    # --- dispatch windows ---------------------------------------------------------------------

    async def _top_up_windows(self, conn: AsyncConnection, tenant_ids: Iterable[TenantId]) -> int:
        """Dispatches the next chunks of the tenants' batches, as far as their windows allow.

        Under a per-tenant advisory lock (taken in ascending order) so two writers cannot both
        fill the same free space. Batches locked by someone else (a cancel, a claim) are skipped:
        the next outcome or the recovery loop tops them up. Returns how many tasks were dispatched.
        """
        dispatched = 0
        batch_window = self._batch_window_chunks * self._chunk_size
        for tenant_id in sorted(set(tenant_ids)):
            await _advisory_lock(conn, f"batch.window:{tenant_id}")
            open_batches = (
                (
                    await conn.execute(
                        select(batches.c.id)
                        .where(
                            batches.c.tenant_id == tenant_id,
                            batches.c.finished_at.is_(None),
                            batches.c.status.in_([BatchStatus.QUEUED.value, BatchStatus.PROCESSING.value]),
                            ~batches.c.cancel_requested,
                        )
                        .order_by(batches.c.created_at, batches.c.id)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            counted = (
                await conn.execute(
                    select(tasks.c.batch_id, func.count().label("n"))
                    .where(
                        tasks.c.tenant_id == tenant_id,
                        tasks.c.dispatched_at.is_not(None),
                        tasks.c.status.in_(_PENDING),
                    )
                    .group_by(tasks.c.batch_id)
                )
            ).all()
            outstanding: dict[uuid.UUID, int] = {row.batch_id: int(row.n) for row in counted}
            states: list[WindowState] = []
            for batch_id in open_batches:
                # Counting at most one window of undispatched tasks keeps this cheap for 10,000 items.
                waiting = (
                    select(tasks.c.id)
                    .where(
                        tasks.c.batch_id == batch_id,
                        tasks.c.dispatched_at.is_(None),
                        tasks.c.status == TaskStatus.QUEUED.value,
                    )
                    .limit(batch_window)
                    .subquery()
                )
                undispatched = (await conn.execute(select(func.count()).select_from(waiting))).scalar_one()
                states.append(
                    WindowState(BatchId(batch_id), int(outstanding.get(batch_id, 0)), int(undispatched))
                )
            # Batches skipped as locked still count against the tenant's window.
            locked_elsewhere = sum(n for b, n in outstanding.items() if b not in set(open_batches))
            if locked_elsewhere:
                states.append(WindowState(BatchId(uuid.UUID(int=0)), int(locked_elsewhere), 0))
            plan = plan_dispatch(
                states,
                chunk_size=self._chunk_size,
                batch_window_chunks=self._batch_window_chunks,
                tenant_window_chunks=self._tenant_window_chunks,
            )
            envelopes: list[Envelope] = []
            for batch_id, count in plan.items():
                pick = (
                    select(tasks.c.id)
                    .where(
                        tasks.c.batch_id == batch_id,
                        tasks.c.dispatched_at.is_(None),
                        tasks.c.status == TaskStatus.QUEUED.value,
                    )
                    .order_by(tasks.c.batch_index)
                    .limit(count)
                    .with_for_update(skip_locked=True)
                )
                rows = (
                    await conn.execute(
                        update(tasks)
                        .where(tasks.c.id.in_(pick))
                        .values(dispatched_at=func.now())
                        .returning(tasks.c.id, tasks.c.batch_index)
                    )
                ).all()
                ordered = [TaskId(row.id) for row in sorted(rows, key=lambda row: row.batch_index)]
                envelopes += events.task_dispatches(batch_id, tenant_id, ordered, self._chunk_size)
                dispatched += len(ordered)
            await add_events(conn, outbox, envelopes)
        return dispatched

    async def top_up_windows(self, limit: int) -> int:
        """Safety net: dispatches what fits in the windows of tenants with undispatched tasks."""
        undispatched = exists().where(
            tasks.c.batch_id == batches.c.id,
            tasks.c.dispatched_at.is_(None),
            tasks.c.status == TaskStatus.QUEUED.value,
        )
        async with self._db.connection() as conn:
            tenant_ids = (
                (
                    await conn.execute(
                        select(batches.c.tenant_id)
                        .where(
                            batches.c.finished_at.is_(None),
                            batches.c.status.in_([BatchStatus.QUEUED.value, BatchStatus.PROCESSING.value]),
                            ~batches.c.cancel_requested,
                            undispatched,
                        )
                        .distinct()
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
            return await self._top_up_windows(conn, [TenantId(t) for t in tenant_ids])

    # --- deadlines and retries ----------------------------------------------------------------

    async def expire_deadlines(self, limit: int) -> int:
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
            for row in rows:
                await self._request_cancel(conn, _batch_record(row), CancelReason.DEADLINE)
        return len(rows)

    async def failed_items(self, batch_id: BatchId) -> list[BatchItem]:
        """The items of the batch's failed (not cancelled) tasks, in batch order."""
        async with self._db.connection() as conn:
            rows = (
                await conn.execute(
                    select(tasks.c.prompt, tasks.c.model, tasks.c.duration_seconds)
                    .where(tasks.c.batch_id == batch_id, tasks.c.status == TaskStatus.FAILED.value)
                    .order_by(tasks.c.batch_index)
                )
            ).all()
        return [
            BatchItem(prompt=row.prompt, model=row.model, duration_seconds=row.duration_seconds)
            for row in rows
        ]

    # --- finishing and recovery ---------------------------------------------------------------

    async def _finish_batches(self, conn: AsyncConnection, batch_ids: Iterable[BatchId]) -> None:
        """Finishes those of the batches whose tasks are all terminal, with a BatchFinished event.

        The row lock (ascending ids, so two writers never deadlock) is what stops two workers that
        finish the last two tasks of a batch from both missing the end: the second to lock sees
        the first one's committed task.
        """
        ids = sorted(set(batch_ids))
        if not ids:
            return
        locked = (
            await conn.execute(
                select(batches)
                .where(batches.c.id == any_(_uuids(ids)), batches.c.finished_at.is_(None))
                .order_by(batches.c.id)
                .with_for_update()
            )
        ).all()
        if not locked:
            return
        still_pending = set(
            (
                await conn.execute(
                    select(tasks.c.batch_id)
                    .where(
                        tasks.c.batch_id == any_(_uuids(row.id for row in locked)),
                        tasks.c.status.in_(_PENDING),
                    )
                    .distinct()
                )
            ).scalars()
        )
        done = [_batch_record(row) for row in locked if row.id not in still_pending]
        if not done:
            return
        counts = await self._counts(conn, done)
        finished: list[Envelope] = []
        for batch in done:
            status = final_status(counts[batch.id], batch.cancel_requested)
            finished_at: datetime = (
                await conn.execute(
                    update(batches)
                    .where(batches.c.id == batch.id)
                    .values(status=status.value, finished_at=func.now())
                    .returning(batches.c.finished_at)
                )
            ).scalar_one()
            finished.append(
                events.batch_finished(
                    batch.id, batch.tenant_id, status, counts[batch.id], finished_at.astimezone(UTC)
                )
            )
            # Counted here, by whichever path finishes the batch (a rare rollback over-counts).
            batch_metrics.batch_reached(status)
        await add_events(conn, outbox, finished)

    async def recover_expired_leases(self, limit: int) -> tuple[int, int]:
        """Tasks whose worker vanished: dispatched again, or failed after MAX_TASK_CLAIMS claims.

        Returns (requeued, failed).
        """
        async with self._db.connection() as conn:
            expired = (
                await conn.execute(
                    select(tasks.c.id, tasks.c.claims)
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
                return 0, 0
            lost = [row.id for row in expired if row.claims >= MAX_TASK_CLAIMS]
            retry = [row.id for row in expired if row.claims < MAX_TASK_CLAIMS]
            failed_rows: Sequence[Any] = []
            if lost:
                failed_rows = (
                    await conn.execute(
                        update(tasks)
                        .where(tasks.c.id == any_(_uuids(lost)))
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
                failed_tasks = [_task_record(row) for row in failed_rows]
                await add_events(conn, outbox, [events.task_outcome(task) for task in failed_tasks])
            requeued_rows: Sequence[Any] = []
            if retry:
                requeued_rows = (
                    await conn.execute(
                        update(tasks)
                        .where(tasks.c.id == any_(_uuids(retry)))
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
                    dispatches += events.task_dispatches(batch_id, tenant_id, ordered, self._chunk_size)
                await add_events(conn, outbox, dispatches)
            await self._finish_batches(conn, {BatchId(row.batch_id) for row in failed_rows})
        return len(requeued_rows), len(failed_rows)

    async def finish_forgotten_batches(self, limit: int) -> int:
        """Safety net: batches whose tasks are all terminal but that were never finished."""
        pending_task = exists().where(tasks.c.batch_id == batches.c.id, tasks.c.status.in_(_PENDING))
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
            await self._finish_batches(conn, [BatchId(i) for i in ids])
        return len(ids)

    # --- settlement ---------------------------------------------------------------------------

    async def record_settlements(self, settlements: Sequence[Settlement]) -> int:
        """Marks batches settled or refunded, once; returns how many changed."""
        changed = 0
        async with self._db.connection() as conn:
            for settlement in settlements:
                result = await conn.execute(
                    update(batches)
                    .where(
                        batches.c.id == settlement.batch_id,
                        batches.c.settlement_status == SettlementStatus.PENDING.value,
                    )
                    .values(settlement_status=settlement.status.value, settled_at=settlement.settled_at)
                )
                changed += result.rowcount
        return changed
