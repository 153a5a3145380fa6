"""Provider spend SQL (ADR-144): what the providers bill us per task, as task outcomes reported it,
and the reads margins need (SQLAlchemy Core; the write of every outcome chunk on the raw driver
connection; in the caller's transaction).

A capture whose outcome reported no spend (published before ADR-144, or pulled by settlement from
the batch service) keeps the estimate frozen with its batch (`batch_hold_lines`): `unreported`
narrows a query of captures to those.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, select

from services.billing.adapters.sql.base import TransactionQueries
from services.billing.adapters.sql.ledger import driver_rows
from services.billing.adapters.tables import batch_hold_lines, task_provider_costs, transfers
from services.billing.domain.ids import BatchId
from services.billing.domain.ledger import OutcomeKind, RefType, TaskOutcome
from services.billing.domain.margins import ProviderSpend

# A chunk's reported spend in one statement, in the chunk's order (an `executemany` was one insert
# per outcome, on both sides of the connection: ADR-165).
_RECORD = """
INSERT INTO billing.task_provider_costs
    (task_id, batch_id, model, captured, provider_cost_usd_micros, provider_jobs)
SELECT r.task_id, r.batch_id, r.model, r.captured, r.cost, r.jobs
FROM unnest(
    CAST(%(task_ids)b AS text[]), CAST(%(batch_ids)b AS uuid[]), CAST(%(models)b AS text[]),
    CAST(%(captured)b AS boolean[]), CAST(%(costs)b AS bigint[]), CAST(%(jobs)b AS integer[])
) WITH ORDINALITY AS r(task_id, batch_id, model, captured, cost, jobs, n)
ORDER BY r.n
ON CONFLICT DO NOTHING
"""


def unreported() -> ColumnElement[bool]:
    """True for a task outcome's transfer (its ref_id is the task id) whose task reported no
    provider spend; a probe of the primary key."""
    return ~exists().where(task_provider_costs.c.task_id == transfers.c.ref_id)


def frozen_cost_of_captures() -> Any:
    """The captures' transfers joined to the provider cost frozen with their batch's line."""
    return transfers.outerjoin(
        batch_hold_lines,
        (batch_hold_lines.c.batch_id == transfers.c.batch_id)
        & (batch_hold_lines.c.model == transfers.c.model)
        # A model frozen at several prices (durations) has one line per price.
        & (batch_hold_lines.c.unit_price == transfers.c.amount),
    )


class ProviderSpendQueries(TransactionQueries):
    """Reported provider spend: its writes and reads, inside one transaction."""

    async def record(self, outcomes: Sequence[TaskOutcome]) -> None:
        """Stores the spend each outcome reported (those that reported one), first report wins:
        a redelivered or late event changes nothing (the same key rule as the outcome's)."""
        reported = [outcome for outcome in outcomes if outcome.provider_cost_usd_micros is not None]
        if reported:
            await driver_rows(
                self._conn,
                _RECORD,
                {
                    "task_ids": [str(outcome.task_id) for outcome in reported],
                    "batch_ids": [outcome.batch_id for outcome in reported],
                    "models": [outcome.model for outcome in reported],
                    "captured": [outcome.kind is OutcomeKind.CAPTURE for outcome in reported],
                    "costs": [outcome.provider_cost_usd_micros for outcome in reported],
                    "jobs": [outcome.provider_jobs for outcome in reported],
                },
            )

    async def per_model_within(self, start: datetime, end: datetime) -> dict[str, ProviderSpend]:
        """Reported spend recorded within [start, end) per model, captured and refunded tasks alike."""
        rows = await self._conn.execute(
            select(
                task_provider_costs.c.model,
                func.sum(task_provider_costs.c.provider_cost_usd_micros),
                func.sum(task_provider_costs.c.provider_jobs),
            )
            .where(task_provider_costs.c.recorded_at >= start, task_provider_costs.c.recorded_at < end)
            .group_by(task_provider_costs.c.model)
        )
        return {model: ProviderSpend(int(cost), int(jobs)) for model, cost, jobs in rows}

    async def of_batch(self, batch_id: BatchId) -> tuple[int, ProviderSpend, ProviderSpend]:
        """The batch's captured credits, its reported spend, and the frozen estimate of its
        captures that reported none (one job each)."""
        captured = await self._conn.execute(
            select(func.coalesce(func.sum(transfers.c.amount), 0)).where(
                transfers.c.batch_id == batch_id, transfers.c.ref_type == RefType.BATCH_CAPTURE.value
            )
        )
        reported = (
            await self._conn.execute(
                select(
                    func.coalesce(func.sum(task_provider_costs.c.provider_cost_usd_micros), 0),
                    func.coalesce(func.sum(task_provider_costs.c.provider_jobs), 0),
                ).where(task_provider_costs.c.batch_id == batch_id)
            )
        ).one()
        estimated = (
            await self._conn.execute(
                select(func.coalesce(func.sum(batch_hold_lines.c.provider_cost_usd_micros), 0), func.count())
                .select_from(frozen_cost_of_captures())
                .where(
                    and_(
                        transfers.c.batch_id == batch_id,
                        transfers.c.ref_type == RefType.BATCH_CAPTURE.value,
                        unreported(),
                    )
                )
            )
        ).one()
        return (
            int(captured.scalar_one()),
            ProviderSpend(int(reported[0]), int(reported[1])),
            ProviderSpend(int(estimated[0]), int(estimated[1])),
        )
