"""Queueing: reserving -> queued (announced, with the first dispatch window) and the dispatch
windows that meter each tenant's tasks onto the dispatch queue (ADR-039, ADR-042).

SQL style: plain SQL run by psycopg on the connection of a SQLAlchemy transaction (`run_sql`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.db import Database, driver, run_sql
from libs.messaging.contract import Envelope
from libs.messaging.outbox import add_events
from services.batch.adapters import events
from services.batch.adapters.sql import records
from services.batch.adapters.sql.cancel import cancel_queued_tasks
from services.batch.adapters.sql.statements import advisory_lock, locked_batch_ids
from services.batch.adapters.tables import outbox
from services.batch.domain.batch import BatchId, BatchRecord, BatchStatus, Reservation, TaskId, TenantId
from services.batch.domain.scheduling import WindowState, plan_dispatch

# reserving -> queued for a group of batches (`mark_queued_many`), their rows locked in id order.
_MARK_QUEUED = f"""
WITH reserving AS ({locked_batch_ids("status = 'reserving'")})
UPDATE batch.batches AS b
SET status = 'queued', frozen_credits = v.frozen, available_snapshot = v.available, queued_at = now()
FROM unnest(CAST(%(ids)b AS uuid[]), CAST(%(frozen)b AS bigint[]), CAST(%(available)b AS bigint[]))
    AS v(id, frozen, available)
WHERE b.id = v.id AND b.id IN (SELECT id FROM reserving)
RETURNING b.*"""
# In list order (the relay publishes in id order).
_INSERT_EVENTS = """
INSERT INTO batch.outbox (message_id, routing_key, message_type, body, headers)
SELECT * FROM unnest(CAST(%b AS text[]), CAST(%b AS text[]), CAST(%b AS text[]), CAST(%b AS bytea[]),
    CAST(%b AS jsonb[]))"""


# The tenant's open batches that still have tasks to dispatch, locked unless someone else holds
# them, with their window counts, all from the batch rows (ADR-042): a batch's outstanding tasks
# (dispatched, not finished) are its total less its finished and undispatched ones, the tenant's
# are the sum over its open batches. Batches with nothing left to dispatch count only through
# that sum, so they are neither returned nor locked. At most as many batches as the tenant's
# window has free tasks are read (each one planned takes at least one), so a backlog of thousands
# of waiting batches costs nothing while the window is full.
_OPEN_WINDOWS = """
WITH tenant AS (
    SELECT coalesce(sum(total_count - succeeded_count - failed_count - cancelled_count
        - undispatched_count), 0) AS outstanding
    FROM batch.batches
    WHERE tenant_id = %(tenant_id)s AND finished_at IS NULL
)
SELECT b.id, least(b.undispatched_count, %(batch_window)s) AS undispatched,
    b.total_count - b.succeeded_count - b.failed_count - b.cancelled_count - b.undispatched_count
        AS outstanding,
    tenant.outstanding AS tenant_outstanding
FROM batch.batches AS b CROSS JOIN tenant
WHERE b.tenant_id = %(tenant_id)s AND b.finished_at IS NULL AND b.status IN ('queued', 'processing')
    AND NOT b.cancel_requested AND b.undispatched_count > 0
ORDER BY b.created_at, b.id
LIMIT (SELECT greatest(%(tenant_window)s - outstanding, 0) FROM tenant)
FOR UPDATE OF b SKIP LOCKED
"""
# The next `n` undispatched tasks of each planned batch, in batch order, marked dispatched, and
# taken off their batches' undispatched counts (rows the top-up locked): one statement for the
# whole plan (a group of new batches plans one line each).
_DISPATCH_PLANNED = """
WITH picked AS (
    UPDATE batch.tasks AS t SET dispatched_at = now()
    WHERE t.id IN (
        SELECT picked.id
        FROM unnest(CAST(%(batch_ids)b AS uuid[]), CAST(%(counts)b AS int[])) AS p(batch_id, n)
        CROSS JOIN LATERAL (
            SELECT id FROM batch.tasks
            WHERE batch_id = p.batch_id AND dispatched_at IS NULL AND status = 'queued'
            ORDER BY batch_index
            LIMIT p.n
            FOR UPDATE SKIP LOCKED
        ) AS picked
    )
    RETURNING t.id, t.batch_id, t.batch_index
), counted AS (
    UPDATE batch.batches AS b
    SET undispatched_count = b.undispatched_count
        - (SELECT count(*) FROM picked WHERE picked.batch_id = b.id)
    WHERE b.id = ANY(CAST(%(batch_ids)b AS uuid[]))
)
SELECT id, batch_id, batch_index FROM picked
"""


async def _insert_events(conn: psycopg.AsyncConnection[Any], envelopes: Sequence[Envelope]) -> None:
    """`add_events` on a psycopg connection: one statement for all of them."""
    await conn.execute(
        _INSERT_EVENTS,
        (
            [e.message_id for e in envelopes],
            [e.routing_key for e in envelopes],
            [e.message_type for e in envelopes],
            [e.body for e in envelopes],
            [Jsonb(dict(e.headers)) for e in envelopes],
        ),
    )


@dataclass(frozen=True)
class DispatchWindows:
    """How far ahead tasks are dispatched: chunks of `chunk_size` tasks (one message each), at
    most `batch_window_chunks` chunks outstanding per batch and `tenant_window_chunks` per tenant."""

    chunk_size: int
    batch_window_chunks: int = 4
    tenant_window_chunks: int = 16

    def dispatches_when_queued(self, batch: BatchRecord) -> bool:
        """Whether queueing the batch also dispatches its first window, in the same transaction.

        A batch that fits in one window does. A larger one gets its first window from
        `BatchQueue.top_up_tenant` right after (ADR-039): marking 1,600 of 10,000 tasks
        dispatched costs ~55 ms that the create's answer need not wait for, and a crash in
        between leaves a queued batch that the recovery loop's top-up dispatches.
        """
        return batch.total_count <= self.batch_window_chunks * self.chunk_size


async def top_up_windows(
    conn: AsyncConnection,
    windows: DispatchWindows,
    tenant_ids: Iterable[TenantId],
    *,
    outbox_events: list[Envelope] | None = None,
    locked: set[BatchId] | None = None,
) -> int:
    """Dispatches the next chunks of the tenants' batches, as far as their windows allow.

    Under a per-tenant advisory lock (taken in ascending order) so two writers cannot both
    fill the same free space. Batches locked by someone else (a cancel, a claim) are skipped:
    the next outcome or the recovery loop tops them up. Returns how many tasks were dispatched.
    The dispatch messages go to the outbox, or onto `outbox_events` (see `finish_batches`);
    the ids of the batch rows this locked are added to `locked`.
    """
    dispatched = 0
    batch_window = windows.batch_window_chunks * windows.chunk_size
    for tenant_id in sorted(set(tenant_ids)):
        await advisory_lock(conn, f"batch.window:{tenant_id}")
        # The tenant's batches that can still take a chunk, with their counts, in one round
        # trip: undispatched tasks (at most one window), dispatched unfinished ones, and the
        # tenant's total of those.
        open_rows = await run_sql(
            conn,
            _OPEN_WINDOWS,
            {
                "tenant_id": tenant_id,
                "batch_window": batch_window,
                "tenant_window": windows.tenant_window_chunks * windows.chunk_size,
            },
        )
        if locked is not None:
            locked.update(BatchId(row.id) for row in open_rows)
        states = [
            WindowState(BatchId(row.id), int(row.outstanding), int(row.undispatched)) for row in open_rows
        ]
        # Batches skipped as locked, or with nothing left to dispatch, still count against
        # the tenant's window.
        outstanding_elsewhere = (
            int(open_rows[0].tenant_outstanding) - sum(state.outstanding for state in states)
            if open_rows
            else 0
        )
        if outstanding_elsewhere > 0:
            states.append(WindowState(BatchId(uuid.UUID(int=0)), outstanding_elsewhere, 0))
        plan = plan_dispatch(
            states,
            chunk_size=windows.chunk_size,
            batch_window_chunks=windows.batch_window_chunks,
            tenant_window_chunks=windows.tenant_window_chunks,
        )
        envelopes: list[Envelope] = []
        if plan:
            picked = await run_sql(
                conn,
                _DISPATCH_PLANNED,
                {"batch_ids": list(plan), "counts": list(plan.values())},
            )
            by_batch: dict[BatchId, list[Any]] = defaultdict(list)
            for row in picked:
                by_batch[BatchId(row.batch_id)].append(row)
            for batch_id in plan:
                ordered = [
                    TaskId(row.id) for row in sorted(by_batch[batch_id], key=lambda row: row.batch_index)
                ]
                envelopes += events.task_dispatches(batch_id, tenant_id, ordered, windows.chunk_size)
                dispatched += len(ordered)
        if outbox_events is None:
            await add_events(conn, outbox, envelopes)
        else:
            outbox_events += envelopes
    return dispatched


@dataclass(frozen=True)
class QueuedBatches:
    """What `mark_queued_many` did: each batch asked, queued (None: it was not reserving), and the
    final statuses of the batches it finished (cancelled while they were reserving)."""

    batches: list[BatchRecord | None]
    finished: list[BatchStatus] = field(default_factory=list)


class BatchQueue:
    """Queues reserved batches and dispatches their tasks as far as the windows allow."""

    def __init__(self, database: Database, windows: DispatchWindows) -> None:
        self._db = database
        self._windows = windows

    async def top_up_tenant(self, tenant_id: TenantId) -> int:
        """Dispatches what fits in the tenant's windows now; returns how many tasks it dispatched."""
        async with self._db.connection() as conn:
            return await top_up_windows(conn, self._windows, [tenant_id])

    async def mark_queued_many(self, reserved: Sequence[tuple[BatchId, Reservation]]) -> QueuedBatches:
        """reserving -> queued for several batches in one transaction (the create path's group
        commit), announced (BatchesQueued) with the first dispatch window of each batch that
        `dispatches_when_queued`.

        One UPDATE for all of them, one window top-up per tenant, and one BatchesQueued event for
        all of them and their first dispatch messages in one outbox insert. Answers in the order
        asked; None for a batch that was not reserving. A batch cancelled while it was reserving
        has its tasks cancelled here instead of dispatched.
        """
        if not reserved:
            return QueuedBatches([])
        finished: list[BatchStatus] = []
        async with self._db.connection() as conn:
            # Statements on the driver connection (same transaction), without the SQLAlchemy layers.
            psycopg_conn = await driver(conn)
            ids = [batch_id for batch_id, _ in reserved]
            found = await run_sql(
                conn,
                _MARK_QUEUED,
                {
                    "ids": ids,
                    "frozen": [reservation.frozen_credits for _, reservation in reserved],
                    "available": [reservation.available_before for _, reservation in reserved],
                },
            )
            queued = {BatchId(row.id): records.batch_record(row) for row in found}
            in_order = [queued[batch_id] for batch_id in ids if batch_id in queued]
            outbox_events = [events.batches_queued(in_order)] if in_order else []
            dispatching = {
                batch.tenant_id
                for batch in in_order
                if not batch.cancel_requested and self._windows.dispatches_when_queued(batch)
            }
            if dispatching:
                await top_up_windows(conn, self._windows, dispatching, outbox_events=outbox_events)
            if outbox_events:
                await _insert_events(psycopg_conn, outbox_events)
            for batch in in_order:
                if batch.cancel_requested:
                    finished += await cancel_queued_tasks(
                        conn, batch.id, records.cancel_reason(batch.cancel_reason)
                    )
        return QueuedBatches([queued.get(batch_id) for batch_id in ids], finished)
