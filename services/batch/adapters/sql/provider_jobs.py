"""The provider job journal (ADR-110): intents, job ids and ends of remote submissions, and the
audit that reports double and in-doubt jobs.

SQL style: plain SQL on the autocommit pool. Each journal write is committed before its caller
goes on: the intent before the create call leaves, the job id before the first poll. The writes
of jobs starting or ending together are group-committed (`libs.group_commit`, ADR-161): those
that arrive while one group's transaction runs share the next one (one connection, one round
trip per statement kind, one commit), so a burst of thousands of job starts takes one pooled
connection instead of the whole pool. Only remote providers journal (the simulated one costs
nothing to run twice).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from libs.db import Database
from libs.dependency_down import is_dependency_down
from libs.group_commit import GroupCommitter
from services.batch.adapters.sql.provider_spend import BILLED_COST
from services.batch.domain.batch import BatchId, TaskId
from services.batch.domain.paging import JobCursor
from services.batch.domain.provider import FailureType, ProviderFailure
from services.batch.domain.provider_jobs import (
    JobAuditRow,
    ProviderJobFinding,
    ProviderJobStatus,
    ProviderJobView,
    RecordedJob,
    audit_provider_jobs,
)
from services.batch.domain.routing import RouteUsage, with_video_shares

_RECORDED = """
SELECT id, task_id, attempt, provider, status, provider_job_id, handle, failure_type,
    error_message, retryable, submitted_at
FROM batch.provider_jobs WHERE task_id = ANY(%(task_ids)s)
"""
_MARK_IN_DOUBT = """
UPDATE batch.provider_jobs SET status = 'in_doubt', finished_at = clock_timestamp()
WHERE id = ANY(%(ids)s) AND status = 'submitting'
"""
_INTEND = """
INSERT INTO batch.provider_jobs (id, task_id, batch_id, attempt, provider, model, status,
    idempotency_key, claim_token, failures_billed)
VALUES (%(id)s, %(task_id)s, %(batch_id)s, %(attempt)s, %(provider)s, %(model)s, 'submitting',
    %(key)s, %(token)s, %(failures_billed)s)
"""
_SUBMITTED = """
UPDATE batch.provider_jobs SET status = 'running', provider_job_id = %(job_id)s, handle = %(handle)s,
    cost_usd_micros = %(cost)s, job_recorded_at = clock_timestamp()
WHERE id = %(id)s
"""
_FINISHED = """
UPDATE batch.provider_jobs SET status = %(status)s, failure_type = %(failure_type)s,
    error_message = %(message)s, retryable = %(retryable)s, finished_at = clock_timestamp()
WHERE id = %(id)s
"""
# Jobs still running for tasks that ended (their batch was cancelled while no worker watched them,
# or the task failed for good after a crash) a while ago: taken over by one worker, in one
# statement, as abandoned; the ones the provider stops become cancelled.
_TAKE_ORPHANS = """
UPDATE batch.provider_jobs AS j SET status = 'abandoned', finished_at = clock_timestamp()
WHERE j.id IN (
    SELECT j2.id FROM batch.provider_jobs j2 JOIN batch.tasks t ON t.id = j2.task_id
    WHERE j2.status = 'running' AND t.status IN ('succeeded', 'failed', 'cancelled')
      AND t.finished_at < clock_timestamp() - %(grace)s * interval '1 second'
    ORDER BY j2.submitted_at
    LIMIT %(limit)s
    FOR UPDATE OF j2 SKIP LOCKED
)
RETURNING j.id, j.provider, j.handle
"""
_STOPPED = "UPDATE batch.provider_jobs SET status = 'cancelled' WHERE id = ANY(%(ids)s)"
# Rows the audit must judge: jobs in doubt, and every job of an attempt holding more than one.
_AUDIT = """
SELECT task_id, attempt, provider, status, provider_job_id, submitted_at, cost_usd_micros,
    failures_billed
FROM batch.provider_jobs
WHERE status = 'in_doubt'
   OR (task_id, attempt) IN (
       SELECT task_id, attempt FROM batch.provider_jobs
       WHERE status <> ALL(%(unbilled)s)
       GROUP BY task_id, attempt HAVING count(*) > 1)
ORDER BY task_id, attempt, submitted_at
"""
# A batch's jobs for its operator page (ADR-144), in task order, after the cursor's (index, row id).
_OF_BATCH = f"""
SELECT j.id, j.task_id, t.batch_index, j.attempt, j.provider, j.status, j.provider_job_id,
    {BILLED_COST} AS billed, j.submitted_at, j.finished_at, j.failure_type, j.error_message
FROM batch.provider_jobs AS j JOIN batch.tasks AS t ON t.id = j.task_id
WHERE j.batch_id = %(batch_id)s AND (t.batch_index, j.submitted_at, j.id) > (%(index)s, %(at)s, %(row)s)
ORDER BY t.batch_index, j.submitted_at, j.id
LIMIT %(limit)s
"""
# Per route (model, provider): tasks, jobs, how they ended and what the recorded ones cost us.
_ROUTE_USAGE = """
SELECT model, provider, count(DISTINCT task_id), count(*),
    count(*) FILTER (WHERE status = 'succeeded'),
    count(*) FILTER (WHERE status IN ('failed', 'refused', 'lost', 'in_doubt')),
    coalesce(sum(cost_usd_micros), 0)
FROM batch.provider_jobs GROUP BY model, provider ORDER BY model, provider
"""
# The journal's writes in the order a group runs them: an intent's row exists before any update
# (a caller never has its intent and its job id in one group: it waits for the first).
_WRITE_ORDER = (_INTEND, _SUBMITTED, _FINISHED)
# Writes per group: ~1 ms each inside the transaction, so a group stays well under a second.
JOURNAL_GROUP_SIZE = 500


@dataclass(frozen=True)
class _JournalWrite:
    """One journal statement and its parameters, waiting for its group."""

    statement: str
    params: dict[str, Any]


_UNBILLED = [
    ProviderJobStatus.REFUSED.value,
    ProviderJobStatus.LOST.value,
    ProviderJobStatus.SUBMITTING.value,
]


def _recorded(row: Any) -> RecordedJob:
    return RecordedJob(
        id=row[0],
        task_id=TaskId(row[1]),
        attempt=row[2],
        provider=row[3],
        status=ProviderJobStatus(row[4]),
        provider_job_id=row[5],
        handle=row[6],
        failure_type=FailureType(row[7]) if row[7] else None,
        error_message=row[8],
        retryable=row[9],
        submitted_at=row[10],
    )


class ProviderJobs:
    """The journal table: a task's recorded jobs, the journal of one attempt, the audit."""

    def __init__(self, database: Database, *, group_size: int = JOURNAL_GROUP_SIZE) -> None:
        self._db = database
        self._writes: GroupCommitter[_JournalWrite, None] = GroupCommitter(
            self._write_group, max_group_size=group_size, name="provider-job-journal"
        )

    async def _write(self, statement: str, params: dict[str, Any]) -> None:
        """Commits one journal statement, with those of other jobs that arrive meanwhile."""
        await self._writes.submit(_JournalWrite(statement, params))

    async def _write_group(self, writes: Sequence[_JournalWrite]) -> list[BaseException | None]:
        # One transaction for the group: every write of it is durable when any caller goes on,
        # and none is if the commit fails (each caller then sees the error, nothing was sent).
        try:
            await self._commit(writes)
        except Exception as error:
            if len(writes) == 1 or is_dependency_down(error):
                raise
            # One bad row must not fail the jobs that share its group: each alone, its own outcome.
            return [await self._alone(write) for write in writes]
        return [None] * len(writes)

    async def _commit(self, writes: Sequence[_JournalWrite]) -> None:
        async with self._db.raw_connection() as conn, conn.transaction(), conn.cursor() as cursor:
            for statement in _WRITE_ORDER:
                params = [write.params for write in writes if write.statement == statement]
                if params:
                    await cursor.executemany(statement, params)

    async def _alone(self, write: _JournalWrite) -> BaseException | None:
        try:
            await self._commit([write])
        except Exception as error:
            return error
        return None

    async def recorded(self, task_ids: Sequence[TaskId]) -> dict[TaskId, list[RecordedJob]]:
        """Every job recorded for the tasks, by task (one statement for a whole claim)."""
        if not task_ids:
            return {}
        async with self._db.raw_connection() as conn:
            rows = await (await conn.execute(_RECORDED, {"task_ids": list(task_ids)})).fetchall()
        by_task: dict[TaskId, list[RecordedJob]] = {task_id: [] for task_id in task_ids}
        for row in rows:
            job = _recorded(row)
            by_task[job.task_id].append(job)
        return by_task

    async def mark_in_doubt(self, ids: Sequence[uuid.UUID]) -> None:
        """Intents left `submitting` by a dead process become `in_doubt` (the audit reports them)."""
        if not ids:
            return
        async with self._db.raw_connection() as conn:
            await conn.execute(_MARK_IN_DOUBT, {"ids": list(ids)})

    async def take_orphans(self, grace_seconds: float, limit: int) -> list[tuple[uuid.UUID, str, str]]:
        """Running jobs of tasks that ended more than `grace_seconds` ago, now marked abandoned
        (each taken by one caller only): (row id, provider, handle)."""
        async with self._db.raw_connection() as conn:
            rows = await (
                await conn.execute(_TAKE_ORPHANS, {"grace": grace_seconds, "limit": limit})
            ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    async def mark_stopped(self, ids: Sequence[uuid.UUID]) -> None:
        """Abandoned jobs the provider agreed to stop."""
        if ids:
            async with self._db.raw_connection() as conn:
                await conn.execute(_STOPPED, {"ids": list(ids)})

    def journal(
        self,
        *,
        task_id: TaskId,
        batch_id: BatchId,
        attempt: int,
        model: str,
        claim_token: uuid.UUID,
        cost_usd_micros: int = 0,
        resumed: RecordedJob | None = None,
        failures_billed: bool = False,
    ) -> AttemptJournal:
        """The journal of one attempt (continuing `resumed`, the attempt's recorded job, if any);
        each job it records costs us `cost_usd_micros` at the provider, and is billed when it
        fails only if `failures_billed`."""
        return AttemptJournal(
            self._write,
            task_id,
            batch_id,
            attempt,
            model,
            claim_token,
            resumed,
            cost_usd_micros,
            failures_billed,
        )

    async def route_usage(self) -> list[RouteUsage]:
        """Every route that received jobs, per model, with its share of the model's videos
        (ADR-149). Reads the whole journal: an operator's page, not a hot path."""
        async with self._db.raw_connection() as conn:
            rows = await (await conn.execute(_ROUTE_USAGE)).fetchall()
        return with_video_shares(
            RouteUsage(
                str(row[0]), str(row[1]), int(row[2]), int(row[3]), int(row[4]), int(row[5]), int(row[6])
            )
            for row in rows
        )

    async def audit(self) -> list[ProviderJobFinding]:
        """Every (task, attempt) with more than one job the provider may bill, every job in doubt."""
        async with self._db.raw_connection() as conn:
            rows = await (await conn.execute(_AUDIT, {"unbilled": _UNBILLED})).fetchall()
        return audit_provider_jobs(
            JobAuditRow(
                TaskId(row[0]), row[1], row[2], ProviderJobStatus(row[3]), row[4], row[5], row[6] or 0, row[7]
            )
            for row in rows
        )

    async def of_batch(
        self, batch_id: BatchId, after: JobCursor | None, limit: int
    ) -> tuple[list[ProviderJobView], JobCursor | None]:
        """A page of the batch's provider jobs in task order, each with what it is billed; the
        cursor of the next page (None on the last)."""
        start = after or JobCursor(-1, datetime.min.replace(tzinfo=UTC), uuid.UUID(int=0))
        params = {
            "batch_id": batch_id,
            "index": start.batch_index,
            "at": start.submitted_at,
            "row": start.row_id,
            "limit": limit + 1,
        }
        async with self._db.raw_connection() as conn:
            rows = await (await conn.execute(_OF_BATCH, params)).fetchall()
        jobs = [
            ProviderJobView(
                task_id=TaskId(row[1]),
                batch_index=row[2],
                attempt=row[3],
                provider=row[4],
                status=ProviderJobStatus(row[5]),
                provider_job_id=row[6],
                billed_usd_micros=int(row[7]),
                submitted_at=row[8],
                finished_at=row[9],
                failure_type=row[10],
                error_message=row[11],
            )
            for row in rows[:limit]
        ]
        if len(rows) <= limit:
            return jobs, None
        last = rows[limit - 1]
        return jobs, JobCursor(last[2], last[8], last[0])


# How an attempt's journal commits one statement (its `ProviderJobs`' group committer).
JournalWrite = Callable[[str, dict[str, Any]], Awaitable[None]]


class AttemptJournal:
    """A `JobJournal` writing one attempt's rows (a new row per submission)."""

    def __init__(
        self,
        write: JournalWrite,
        task_id: TaskId,
        batch_id: BatchId,
        attempt: int,
        model: str,
        claim_token: uuid.UUID,
        resumed: RecordedJob | None,
        cost_usd_micros: int = 0,
        failures_billed: bool = False,
    ) -> None:
        self._write = write
        self._cost = cost_usd_micros
        self._failures_billed = failures_billed
        self._task_id = task_id
        self._batch_id = batch_id
        self._attempt = attempt
        self._model = model
        self._claim_token = claim_token
        self._row: uuid.UUID | None = resumed.id if resumed is not None else None

    async def intend(self, provider: str, idempotency_key: str | None) -> None:
        """Writes the intent row (committed before the create call is sent)."""
        row = uuid.uuid4()
        params = {
            "id": row,
            "task_id": self._task_id,
            "batch_id": self._batch_id,
            "attempt": self._attempt,
            "provider": provider,
            "model": self._model,
            "key": idempotency_key,
            "token": self._claim_token,
            "failures_billed": self._failures_billed,
        }
        await self._write(_INTEND, params)
        self._row = row

    async def submitted(self, provider_job_id: str, handle: str) -> None:
        """Records the provider's job id (committed before the first poll)."""
        await self._write(
            _SUBMITTED,
            {"id": self._current(), "job_id": provider_job_id, "handle": handle, "cost": self._cost},
        )

    async def finished(self, status: ProviderJobStatus, failure: ProviderFailure | None = None) -> None:
        """Records how the current job ended."""
        params = {
            "id": self._current(),
            "status": status.value,
            "failure_type": failure.failure_type.value if failure is not None else None,
            "message": failure.message if failure is not None else None,
            "retryable": failure.transient if failure is not None else True,
        }
        await self._write(_FINISHED, params)

    def _current(self) -> uuid.UUID:
        if self._row is None:
            raise RuntimeError("a provider job is recorded only after its intent")
        return self._row
