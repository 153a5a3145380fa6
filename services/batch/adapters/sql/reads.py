"""The read model's polled reads: one batch with its counters and retries, a page of its tasks,
and a tenant's count of unfinished batches. Each is one statement on the autocommit pool (no
transaction, no SQLAlchemy layers): this is the read path the customers poll. Lists with filters
and reports are `listings`'.

SQL style: plain SQL run by psycopg on the autocommit pool (`Database.raw_connection`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from psycopg.rows import namedtuple_row

from libs.db import Database
from services.batch.adapters.sql import records
from services.batch.adapters.sql.statements import fetch_one
from services.batch.adapters.tables import batches
from services.batch.domain.batch import BatchId, BatchView, TaskStatus, TaskSummary, TenantId
from services.batch.domain.provider import FailureType

# Unfinished is `finished_at IS NULL`: reserving, queued and processing (a rejection finishes too).
_COUNT_OPEN_BATCHES = """
SELECT count(*) FROM (
    SELECT 1 FROM batch.batches WHERE tenant_id = %s AND finished_at IS NULL LIMIT %s
) AS open_batches"""


_BATCH_COLUMNS = ", ".join(f"b.{column.name}" for column in batches.c)
# A page of tasks: the `TaskSummary` fields, converted by PostgreSQL (ids to text, times to
# microseconds since the epoch) so that each row loads into a TaskSummary as it is.
_TASK_SUMMARY_COLUMNS = """t.id::text, t.batch_id::text, t.batch_index, t.status, t.model, t.prompt,
    t.unit_price, t.video_url, t.error_message, t.failure_type, t.attempts,
    (extract(epoch FROM t.created_at) * 1000000)::bigint,
    (extract(epoch FROM t.finished_at) * 1000000)::bigint, t.custom_id, t.metadata,
    (extract(epoch FROM t.started_at) * 1000000)::bigint,
    (extract(epoch FROM t.next_attempt_at) * 1000000)::bigint,
    t.last_error, t.settings::text, t.duration_seconds"""

# The batch row, its counters and its retries in one statement.
# The batch row holds its counters (ADR-031): a poll of a 10,000-task batch reads one row.
_BATCH_VIEW = f"""
SELECT {_BATCH_COLUMNS},
    ARRAY(SELECT r.id FROM batch.batches AS r WHERE r.retry_of = b.id ORDER BY r.created_at, r.id)
        AS retries
FROM batch.batches AS b
WHERE b.id = %(batch_id)s"""

_IN_TENANT = " AND b.tenant_id = %(tenant_id)s"


@functools.cache
def _tasks_page_sql(in_tenant: bool, status: bool, failure_type: bool, after: bool, statuses: bool) -> str:
    """The batch (in scope) joined to one page of its tasks: no row when the batch is not in scope,
    one row of NULL task columns when the page is empty."""
    filters = "".join(
        clause
        for wanted, clause in (
            (status, " AND t.status = %(status)s"),
            (failure_type, " AND t.failure_type = %(failure_type)s"),
            (after, " AND t.batch_index > %(after)s"),
            (statuses, " AND t.status = ANY(%(statuses)s)"),
        )
        if wanted
    )
    return f"""
SELECT {_TASK_SUMMARY_COLUMNS}
FROM batch.batches AS b
LEFT JOIN LATERAL (
    SELECT * FROM batch.tasks AS t
    WHERE t.batch_id = b.id{filters}
    ORDER BY t.batch_index
    LIMIT %(limit)s
) AS t ON true
WHERE b.id = %(batch_id)s{_IN_TENANT if in_tenant else ""}"""


def _task_summaries(cursor: Any) -> Callable[[Sequence[Any]], TaskSummary]:
    """A psycopg row factory: each row is a TaskSummary as it is."""
    return TaskSummary._make


class BatchReads:
    """The polled reads of batches and tasks."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def batch_view(self, batch_id: BatchId, tenant_id: TenantId | None) -> BatchView | None:
        """The batch and its derived counters (one statement: the row and its counts agree)."""
        query = _BATCH_VIEW if tenant_id is None else _BATCH_VIEW + _IN_TENANT
        async with self._db.raw_connection() as conn, conn.cursor(row_factory=namedtuple_row) as cursor:
            await cursor.execute(query, {"batch_id": batch_id, "tenant_id": tenant_id}, binary=True)
            row = await cursor.fetchone()
        return records.batch_view(row) if row is not None else None

    async def count_open_batches(self, tenant_id: TenantId, limit: int) -> int:
        """How many of the tenant's batches are unfinished, counted up to `limit` (an index range
        of `ix_batches_open_by_tenant`, however many batches the tenant has)."""
        async with self._db.raw_connection() as conn:
            row = await fetch_one(conn, _COUNT_OPEN_BATCHES, (tenant_id, limit))
        return int(row[0])

    async def list_tasks(
        self,
        batch_id: BatchId,
        tenant_id: TenantId | None,
        status: TaskStatus | None,
        after_index: int | None,
        limit: int,
        *,
        failure_type: FailureType | None = None,
        statuses: Sequence[TaskStatus] = (),
    ) -> list[TaskSummary] | None:
        """Tasks in batch order, after the cursor; None when the batch is not in the tenant's scope
        (None: admin scope). One statement answers both."""
        query = _tasks_page_sql(
            tenant_id is not None,
            status is not None,
            failure_type is not None,
            after_index is not None,
            bool(statuses),
        )
        params = {
            "batch_id": batch_id,
            "tenant_id": tenant_id,
            "status": status.value if status is not None else None,
            "failure_type": failure_type.value if failure_type is not None else None,
            "after": after_index,
            "limit": limit,
            "statuses": [status.value for status in statuses],
        }
        async with self._db.raw_connection() as conn, conn.cursor(row_factory=_task_summaries) as cursor:
            # Binary results: numbers load without parsing text.
            await cursor.execute(query, params, binary=True)
            rows = await cursor.fetchall()
        if not rows:
            return None
        # An empty page is the batch's row joined to no task.
        return [row for row in rows if row.id is not None]
