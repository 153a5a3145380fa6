"""Provider spend per task (ADR-144): what a task's billed provider jobs cost us, summed from the
journal in the transaction that writes the task's outcome, so its outcome event carries it.

SQL style: plain SQL fragments run by psycopg (`run_sql`); the hot outcome write embeds
`SPEND_OF_TASKS` in its own statement, the rare other ends of a task (cancel, recovery) call
`book_spend`. Which statuses a provider bills is the domain's rule (`is_billed`), spelled here in
SQL from the same sets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.db import run_sql
from services.batch.domain.batch import TaskRecord
from services.batch.domain.provider_jobs import BILLED, BILLED_IF_FAILURES_ARE, ProviderJobStatus


def _listed(statuses: Iterable[ProviderJobStatus]) -> str:
    return ", ".join(f"'{status.value}'" for status in sorted(statuses))


# Whether the journal row `j` is billed, and what it costs us then.
_ALWAYS, _IF_FAILURES_ARE = _listed(BILLED), _listed(BILLED_IF_FAILURES_ARE)
IS_BILLED = f"(j.status IN ({_ALWAYS}) OR (j.failures_billed AND j.status IN ({_IF_FAILURES_ARE})))"
BILLED_COST = f"CASE WHEN {IS_BILLED} THEN coalesce(j.cost_usd_micros, 0) ELSE 0 END"
# The billed spend of the tasks `%(ids)b` (a binary uuid array), one row per task with a job.
SPEND_OF_TASKS = f"""
SELECT j.task_id, sum({BILLED_COST})::bigint AS cost, count(*) FILTER (WHERE {IS_BILLED})::int AS jobs
FROM batch.provider_jobs AS j WHERE j.task_id = ANY(CAST(%(ids)b AS uuid[])) GROUP BY j.task_id
"""
_BOOK_SPEND = f"""
WITH spend AS ({SPEND_OF_TASKS})
UPDATE batch.tasks AS t SET provider_cost_usd_micros = s.cost, provider_jobs = s.jobs
FROM spend AS s WHERE t.id = s.task_id
RETURNING t.id, t.provider_cost_usd_micros, t.provider_jobs
"""


async def book_spend(conn: AsyncConnection, finished: Sequence[TaskRecord]) -> list[TaskRecord]:
    """Stores on the tasks that just ended (by cancel or recovery) what their billed journal rows
    cost, in the transaction that ended them; the records with it, for their outcome events."""
    if not finished:
        return []
    rows = await run_sql(conn, _BOOK_SPEND, {"ids": [task.id for task in finished]})
    spend = {row.id: (row.provider_cost_usd_micros, row.provider_jobs) for row in rows}
    return [
        dataclasses.replace(task, provider_cost_usd_micros=spend[task.id][0], provider_jobs=spend[task.id][1])
        if task.id in spend
        else task
        for task in finished
    ]
