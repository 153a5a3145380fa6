"""Provider spend SQL (ADR-144): what the providers bill us per task, as task outcomes reported it,
and the reads margins need (SQLAlchemy Core, in the caller's transaction).

A capture whose outcome reported no spend (published before ADR-144, or pulled by settlement from
the batch service) keeps the estimate frozen with its batch (`batch_hold_lines`): `unreported`
narrows a query of captures to those.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.billing.adapters.tables import batch_hold_lines, task_provider_costs, transfers
from services.billing.domain.ids import BatchId
from services.billing.domain.ledger import OutcomeKind, RefType, TaskOutcome
from services.billing.domain.margins import ProviderSpend


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


class ProviderSpendQueries:
    """Reported provider spend: its writes and reads, inside one transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def record(self, outcomes: Sequence[TaskOutcome]) -> None:
        """Stores the spend each outcome reported (those that reported one), first report wins:
        a redelivered or late event changes nothing (the same key rule as the outcome's)."""
        rows = [
            {
                "task_id": str(outcome.task_id),
                "batch_id": outcome.batch_id,
                "model": outcome.model,
                "captured": outcome.kind is OutcomeKind.CAPTURE,
                "provider_cost_usd_micros": outcome.provider_cost_usd_micros,
                "provider_jobs": outcome.provider_jobs,
            }
            for outcome in outcomes
            if outcome.provider_cost_usd_micros is not None
        ]
        if rows:
            await self._conn.execute(insert(task_provider_costs).on_conflict_do_nothing(), rows)

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
