"""Finishing: tasks that reached an outcome counted on their batch rows, and the finish check
that ends a batch (with its BatchFinished event) once all its tasks are terminal.

SQL style: mostly SQLAlchemy Core; the two hot statements (the counters and the pending-task
probe) are plain SQL run by psycopg in the same transaction (`run_sql`). They stay here because the
finish check is one transaction step over both: splitting it across files by style would scatter
one rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime

from sqlalchemy import any_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.db import run_sql
from libs.messaging.contract import Envelope
from libs.messaging.outbox import add_events
from services.batch.adapters import events
from services.batch.adapters.sql import records
from services.batch.adapters.sql.statements import locked_batch_ids, uuids
from services.batch.adapters.tables import batches, outbox
from services.batch.domain.batch import BatchId, BatchStatus, TaskRecord, final_status, outcome_counts

# Finished tasks added to their batches' counters; the rows locked in id order first, as every
# writer of batch rows does, so two writers never deadlock.
_COUNT_OUTCOMES = f"""
WITH locked AS ({locked_batch_ids()})
UPDATE batch.batches AS b
SET succeeded_count = b.succeeded_count + v.succeeded, failed_count = b.failed_count + v.failed,
    cancelled_count = b.cancelled_count + v.cancelled, credits_spent = b.credits_spent + v.spent,
    refunded_credits = b.refunded_credits + v.refunded
FROM unnest(CAST(%(ids)b AS uuid[]), CAST(%(succeeded)b AS bigint[]), CAST(%(failed)b AS bigint[]),
    CAST(%(cancelled)b AS bigint[]), CAST(%(spent)b AS bigint[]), CAST(%(refunded)b AS bigint[]))
    AS v(id, succeeded, failed, cancelled, spent, refunded)
WHERE b.id = v.id AND b.id IN (SELECT id FROM locked)"""
# Those of the batches that still have a task queued or running.
_STILL_PENDING = """
SELECT b.id FROM unnest(CAST(%(ids)b AS uuid[])) AS b(id)
WHERE EXISTS (SELECT 1 FROM batch.tasks WHERE batch_id = b.id AND status IN ('queued', 'running'))
"""


async def count_outcomes(conn: AsyncConnection, finished: Sequence[TaskRecord]) -> None:
    """Adds tasks that just finished to their batches' counters, in the transaction that
    finished them (so counters and tasks never disagree)."""
    added = sorted(outcome_counts(finished).items())
    if not added:
        return
    await run_sql(
        conn,
        _COUNT_OUTCOMES,
        {
            "ids": [batch_id for batch_id, _ in added],
            "succeeded": [counts.succeeded for _, counts in added],
            "failed": [counts.failed for _, counts in added],
            "cancelled": [counts.cancelled for _, counts in added],
            "spent": [counts.credits_spent for _, counts in added],
            "refunded": [counts.refunded_credits for _, counts in added],
        },
    )


async def finish_batches(
    conn: AsyncConnection,
    batch_ids: Iterable[BatchId],
    *,
    outbox_events: list[Envelope] | None = None,
    held: AbstractSet[BatchId] = frozenset(),
) -> list[BatchStatus]:
    """Finishes those of the batches whose tasks are all terminal, with a BatchFinished event.

    The row lock (ascending ids, so two writers never deadlock) is what stops two workers that
    finish the last two tasks of a batch from both missing the end: the second to lock sees
    the first one's committed task. Rows in `held` are already locked by this transaction (by
    the window top-up of an outcome write, which ran first). The events go to the outbox, or
    onto `outbox_events` for a caller that writes all of its events in one statement. Returns the
    final statuses of the batches it finished (the use cases count them).
    """
    ids = sorted(set(batch_ids))
    if not ids:
        return []
    to_lock = [batch_id for batch_id in ids if batch_id not in held]
    locked_rows = (
        (
            await conn.execute(
                select(batches)
                .where(batches.c.id == any_(uuids(to_lock)), batches.c.finished_at.is_(None))
                .order_by(batches.c.id)
                .with_for_update()
            )
        ).all()
        if to_lock
        else []
    )
    candidates = [batch_id for batch_id in ids if batch_id in held] + [row.id for row in locked_rows]
    if not candidates:
        return []
    # One index probe per batch (EXISTS), not a scan of its thousands of pending tasks; a fresh
    # snapshot, taken once every row above is locked.
    still_pending = {row.id for row in await run_sql(conn, _STILL_PENDING, {"ids": candidates})}
    ending = [batch_id for batch_id in candidates if batch_id not in still_pending]
    if not ending:
        return []
    ending_rows = [row for row in locked_rows if row.id in ending]
    held_ending = [batch_id for batch_id in ending if batch_id in held]
    if held_ending:
        ending_rows += (
            await conn.execute(select(batches).where(batches.c.id == any_(uuids(held_ending))))
        ).all()
    done = [records.batch_record(row) for row in ending_rows]
    counts = {BatchId(row.id): records.task_counts(row) for row in ending_rows}
    finished: list[Envelope] = []
    statuses: list[BatchStatus] = []
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
        statuses.append(status)
    if outbox_events is None:
        await add_events(conn, outbox, finished)
    else:
        outbox_events += finished
    return statuses
