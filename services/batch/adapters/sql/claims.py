"""Claims: dispatched tasks claimed under their model's provider slots, their leases renewed, and
their outcomes written (with the window top-up and the finish check, in one transaction).

SQL style: plain SQL run by psycopg, on the connection of a SQLAlchemy transaction (`run_sql`) or
on the autocommit pool for the unlocked slot count. These are the worker's hot statements:
claims run under the model's lock, so every statement they do not build is time the other
workers do not wait.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.db import Database, run_sql
from libs.messaging.outbox import add_events
from services.batch.adapters import events
from services.batch.adapters.sql import records
from services.batch.adapters.sql.finishing import count_outcomes, finish_batches
from services.batch.adapters.sql.generation_json import settings_of
from services.batch.adapters.sql.provider_spend import SPEND_OF_TASKS
from services.batch.adapters.sql.queueing import DispatchWindows, top_up_windows
from services.batch.adapters.sql.statements import advisory_lock, locked_batch_ids
from services.batch.adapters.tables import outbox
from services.batch.domain.batch import BatchId, BatchStatus, TaskId, TaskRecord, TenantId
from services.batch.domain.execution import ClaimedTask, ClaimResult, TaskOutcome
from services.batch.domain.scheduling import allot_slots

_QUEUED_OF_DISPATCHES = f"""
WITH started AS (
    UPDATE batch.batches SET status = 'processing'
    WHERE id IN ({locked_batch_ids("status = 'queued'", ids="batch_ids")})
)
SELECT id, batch_id, tenant_id, model, batch_index FROM batch.tasks
WHERE id = ANY(CAST(%(ids)b AS uuid[])) AND status = 'queued'
"""
# Outcomes whose claim still holds (a late result of a lost claim matches nothing), with what the
# task's billed provider jobs cost (ADR-144); returns the columns of a TaskRecord only.
_WRITE_OUTCOMES = f"""
WITH spend AS ({SPEND_OF_TASKS})
UPDATE batch.tasks AS t
SET status = o.status, attempts = o.attempts, failure_type = o.failure_type,
    error_message = o.error_message, video_url = o.video_url,
    finished_at = now(), lease_expires_at = NULL, next_attempt_at = NULL,
    provider_cost_usd_micros = o.unjournaled + coalesce(s.cost, 0),
    provider_jobs = coalesce(s.jobs, 0) + CASE WHEN o.unjournaled > 0 THEN 1 ELSE 0 END
FROM unnest(
    CAST(%(ids)b AS uuid[]), CAST(%(tokens)b AS uuid[]), CAST(%(statuses)b AS text[]),
    CAST(%(attempts)b AS int[]), CAST(%(failure_types)b AS text[]),
    CAST(%(messages)b AS text[]), CAST(%(urls)b AS text[]), CAST(%(unjournaled)b AS bigint[])
) AS o(id, token, status, attempts, failure_type, error_message, video_url, unjournaled)
    LEFT JOIN spend AS s ON s.task_id = o.id
WHERE t.id = o.id AND t.claim_token = o.token AND t.status = 'running'
RETURNING t.id, t.batch_id, t.tenant_id, t.batch_index, t.prompt, t.model, t.unit_price,
    t.status, t.attempts, t.claims, t.failure_type, t.error_message, t.video_url,
    t.created_at, t.started_at, t.finished_at, t.custom_id, t.metadata,
    t.provider_cost_usd_micros, t.provider_jobs
"""
_RENEW_LEASES = """
UPDATE batch.tasks SET lease_expires_at = clock_timestamp() + %(lease)s
WHERE id IN (
    SELECT id FROM batch.tasks
    WHERE claim_token = ANY(CAST(%(tokens)b AS uuid[])) AND status = 'running'
    FOR UPDATE SKIP LOCKED
)
RETURNING id
"""
# Running tasks of the model per tenant, and the tenants with dispatched tasks waiting for a slot.
_SLOT_USE = """
SELECT tenant_id, count(*) AS running, false AS waiting FROM batch.tasks
WHERE status = 'running' AND model = %(model)s GROUP BY tenant_id
UNION ALL
SELECT DISTINCT tenant_id, 0, true FROM batch.tasks
WHERE dispatched_at IS NOT NULL AND status = 'queued' AND model = %(model)s
"""
_RUNNING_BY_MODEL = """
SELECT model, count(*) FROM batch.tasks
WHERE status = 'running' AND model = ANY(%(models)s) GROUP BY model
"""
_CLAIM = """
UPDATE batch.tasks AS t
SET status = 'running', claim_token = gen_random_uuid(), claims = t.claims + 1,
    claimed_by = %(worker_id)s, lease_expires_at = clock_timestamp() + %(lease)s,
    started_at = coalesce(t.started_at, now())
WHERE t.id IN (
    SELECT id FROM batch.tasks
    WHERE id = ANY(CAST(%(ids)b AS uuid[])) AND status = 'queued'
    -- A row locked by a cancel in progress is looked at again on the next claim.
    FOR UPDATE SKIP LOCKED
)
RETURNING t.id, t.batch_id, t.tenant_id, t.batch_index, t.prompt, t.model, t.unit_price,
    t.claim_token, t.claims, t.duration_seconds, t.settings
"""
# Tasks a stopping worker gives back (ADR-139): queued again at once, the claim counted as handed
# back rather than lost; only while this worker's claim holds.
_HAND_BACK = """
UPDATE batch.tasks
SET status = 'queued', claim_token = NULL, lease_expires_at = NULL, next_attempt_at = NULL,
    handbacks = handbacks + 1
WHERE claim_token = ANY(CAST(%(tokens)b AS uuid[])) AND status = 'running'
RETURNING id, batch_id, tenant_id, batch_index
"""
# A running task's live detail between two attempts (issue 25): the attempts made, what the last
# one said and when the next starts; only while the claim holds.
_RECORD_RETRY = """
UPDATE batch.tasks SET attempts = %(attempts)s, last_error = %(error)s,
    next_attempt_at = clock_timestamp() + %(delay)s * interval '1 second'
WHERE id = %(id)s AND claim_token = %(token)s AND status = 'running'"""


def _queued_by_dispatch(
    dispatches: Sequence[tuple[BatchId, Sequence[TaskId]]], rows: Sequence[Any]
) -> list[list[Any]]:
    """Each dispatch message's still-queued task rows of its own batch (a task id repeated in two
    messages belongs to the first)."""
    queued = {row.id: row for row in rows}
    assigned: set[uuid.UUID] = set()
    by_dispatch: list[list[Any]] = []
    for batch_id, task_ids in dispatches:
        mine = [
            queued[task_id]
            for task_id in dict.fromkeys(task_ids)
            if task_id in queued and queued[task_id].batch_id == batch_id and task_id not in assigned
        ]
        assigned.update(row.id for row in mine)
        by_dispatch.append(mine)
    return by_dispatch


def _claimed_task(row: Any) -> ClaimedTask:
    return ClaimedTask(
        task_id=TaskId(row.id),
        batch_id=BatchId(row.batch_id),
        tenant_id=TenantId(row.tenant_id),
        batch_index=row.batch_index,
        prompt=row.prompt,
        model=row.model,
        unit_price=row.unit_price,
        claim_token=row.claim_token,
        claims=row.claims,
        duration_seconds=row.duration_seconds,
        settings=settings_of(row.settings),
    )


@dataclass(frozen=True)
class WrittenOutcomes:
    """What an outcome write did: the tasks it finished (outcomes whose claim still held) and the
    final statuses of the batches it finished."""

    tasks: list[TaskRecord]
    finished: list[BatchStatus] = field(default_factory=list)


class TaskClaims:
    """The worker's side of the tasks table: claims, leases and outcomes."""

    def __init__(self, database: Database, windows: DispatchWindows) -> None:
        self._db = database
        self._windows = windows

    async def claim_dispatches(
        self,
        dispatches: Sequence[tuple[BatchId, Sequence[TaskId]]],
        lease_seconds: float,
        *,
        slot_limits: Mapping[str, int] | None = None,
        worker_id: str | None = None,
    ) -> list[ClaimResult]:
        """Claims the tasks of several dispatch messages in one transaction; one result each.

        queued -> running for those of each message's task ids (of its batch) still queued that
        have a provider slot. Each model has `slot_limits[model]` slots shared by every worker:
        the running tasks of the model are counted under a per-model transaction advisory lock, so
        two workers can never both take the last slot; the messages get their slots in turn
        (`allot_slots`). The lock serialises every claim of the model, so under it there are only
        one count, one claiming UPDATE and the commit. Claimed tasks get a fresh claim token and
        `claimed_by`.
        """
        wanted_ids = {task_id for _, task_ids in dispatches for task_id in task_ids}
        if not wanted_ids:
            return [ClaimResult([]) for _ in dispatches]
        limits = slot_limits or {}
        batch_ids = sorted({batch_id for batch_id, _ in dispatches})
        async with self._db.connection() as conn:
            # The batch rows first (queued -> processing, in the same statement), as CancelBatch
            # locks them: the same lock order on both paths.
            found = await run_sql(
                conn, _QUEUED_OF_DISPATCHES, {"batch_ids": batch_ids, "ids": list(wanted_ids)}
            )
            queued_rows = _queued_by_dispatch(dispatches, found)
            chosen: list[uuid.UUID] = []
            for model in sorted({row.model for rows in queued_rows for row in rows}):
                wanted = [
                    sorted((row for row in rows if row.model == model), key=lambda row: row.batch_index)
                    for rows in queued_rows
                ]
                wanted = [rows for rows in wanted if rows]
                limit = limits.get(model)
                if limit is None:
                    granted = [len(rows) for rows in wanted]
                else:
                    running, waiting = await self._slot_usage(conn, model)
                    granted = allot_slots(
                        limit=limit,
                        running=running,
                        waiting=waiting,
                        wanted=[(TenantId(rows[0].tenant_id), len(rows)) for rows in wanted],
                    )
                chosen += [
                    row.id for rows, count in zip(wanted, granted, strict=True) for row in rows[:count]
                ]
            claimed_rows = (
                await run_sql(
                    conn,
                    _CLAIM,
                    {"ids": chosen, "worker_id": worker_id, "lease": timedelta(seconds=lease_seconds)},
                )
                if chosen
                else []
            )
        claimed = {row.id: _claimed_task(row) for row in claimed_rows}
        return [
            ClaimResult(
                sorted(
                    (claimed[row.id] for row in rows if row.id in claimed), key=lambda task: task.batch_index
                ),
                [TaskId(row.id) for row in rows if row.id not in claimed],
                frozenset(row.model for row in rows if row.id not in claimed),
            )
            for rows in queued_rows
        ]

    async def models_at_limit(self, slot_limits: Mapping[str, int]) -> set[str]:
        """Those of the models whose running tasks fill their slot limit, by one unlocked count.

        A hint, not a decision: a slot freed just after the count is found by the next claim.
        """
        if not slot_limits:
            return set()
        async with self._db.raw_connection() as conn:
            counts = await (await conn.execute(_RUNNING_BY_MODEL, {"models": list(slot_limits)})).fetchall()
        return {model for model, running in counts if running >= slot_limits[model]}

    async def _slot_usage(
        self, conn: AsyncConnection, model: str
    ) -> tuple[dict[TenantId, int], set[TenantId]]:
        """Takes the model's slot lock (until commit); running tasks per tenant, waiting tenants."""
        await advisory_lock(conn, f"batch.slots:{model}")
        running: dict[TenantId, int] = {}
        waiting: set[TenantId] = set()
        for row in await run_sql(conn, _SLOT_USE, {"model": model}):
            if row.waiting:
                waiting.add(TenantId(row.tenant_id))
            else:
                running[TenantId(row.tenant_id)] = int(row.running)
        return running, waiting

    async def renew_leases(self, claim_tokens: Sequence[uuid.UUID], lease_seconds: float) -> int:
        """Extends the leases of tasks this worker still holds; returns how many it renewed.

        A task whose row is locked is skipped: its outcome is being written (the lease no longer
        matters), or it is renewed by the next round, two more of which come before it expires.
        Waiting instead would deadlock with the outcome write, which locks the same rows in
        another order.
        """
        if not claim_tokens:
            return 0
        async with self._db.connection() as conn:
            renewed = await run_sql(
                conn,
                _RENEW_LEASES,
                {"tokens": list(claim_tokens), "lease": timedelta(seconds=lease_seconds)},
            )
            return len(renewed)

    async def hand_back(self, claim_tokens: Sequence[uuid.UUID]) -> int:
        """Gives back tasks this worker claimed and will not finish (it is stopping): queued and
        dispatched again in one transaction, so another worker claims them at once instead of
        after their lease. A task whose claim no longer holds is left alone. Returns how many."""
        if not claim_tokens:
            return 0
        async with self._db.connection() as conn:
            released = await run_sql(conn, _HAND_BACK, {"tokens": list(claim_tokens)})
            by_batch: dict[tuple[BatchId, TenantId], list[tuple[int, TaskId]]] = {}
            for row in released:
                key = (BatchId(row.batch_id), TenantId(row.tenant_id))
                by_batch.setdefault(key, []).append((row.batch_index, TaskId(row.id)))
            dispatches = [
                envelope
                for (batch_id, tenant_id), indexed in by_batch.items()
                for envelope in events.task_dispatches(
                    batch_id, tenant_id, [task_id for _, task_id in sorted(indexed)], self._windows.chunk_size
                )
            ]
            await add_events(conn, outbox, dispatches)
        return len(released)

    async def record_retry(
        self, task_id: TaskId, claim_token: uuid.UUID, attempts: int, error: str, delay_seconds: float
    ) -> None:
        """Shows a running task's failed attempt and its next attempt's time (a retry is coming)."""
        params = {
            "id": task_id,
            "token": claim_token,
            "attempts": attempts,
            "error": error,
            "delay": delay_seconds,
        }
        async with self._db.raw_connection() as conn:
            await conn.execute(_RECORD_RETRY, params)

    async def write_outcomes(self, outcomes: Sequence[TaskOutcome]) -> WrittenOutcomes:
        """Writes outcomes whose claim still holds, their events, and the finish check.

        A late result of a task whose lease expired and was claimed again (or failed by recovery)
        no longer matches its claim token and is discarded.
        """
        if not outcomes:
            return WrittenOutcomes([])
        async with self._db.connection() as conn:
            found = await run_sql(
                conn,
                _WRITE_OUTCOMES,
                {
                    "ids": [o.task_id for o in outcomes],
                    "tokens": [o.claim_token for o in outcomes],
                    "statuses": [o.status.value for o in outcomes],
                    "attempts": [o.attempts for o in outcomes],
                    "failure_types": [o.failure_type.value if o.failure_type else None for o in outcomes],
                    "messages": [o.error_message for o in outcomes],
                    "urls": [o.video_url for o in outcomes],
                    "unjournaled": [o.unjournaled_cost_usd_micros for o in outcomes],
                },
            )
            written = [records.task_record(row) for row in found]
            await count_outcomes(conn, written)
            # Outcomes, BatchFinished and the next dispatches reach the outbox in one statement.
            emitted = events.task_outcomes(written)
            # The top-up first: it locks the open batch rows of the tenants (skipping those held
            # by others), which spares the finish check its own locking statement.
            held: set[BatchId] = set()
            await top_up_windows(
                conn, self._windows, {task.tenant_id for task in written}, outbox_events=emitted, locked=held
            )
            finished = await finish_batches(
                conn, {task.batch_id for task in written}, outbox_events=emitted, held=held
            )
            await add_events(conn, outbox, emitted)
        return WrittenOutcomes(written, finished)
