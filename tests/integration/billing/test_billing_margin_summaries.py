"""The frozen cost of the captures that reported a provider spend, kept in the monthly outcome
totals (ADR-170): whichever of a capture and its task's report is written second adds it, once,
and the upgrade that adds it summarizes what existed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from libs.db import Database, libpq_url
from libs.migrations import upgrade_to
from libs.price_list import DEFAULT_PRICING
from services.billing.adapters.repository import BillingRepository
from services.billing.bootstrap import MIGRATIONS, price_list
from services.billing.domain.ids import BatchId, TaskId
from services.billing.domain.ledger import OutcomeKind, TaskOutcome
from services.billing.domain.pricing import QuoteLine
from services.billing.use_cases.handlers import BillingHandlers
from tests.isolation import database_at
from tests.ledger_summaries import summary_differences

from .billing_testkit import funded_tenant, new_batch_id


def _handlers(database: Database) -> BillingHandlers:
    return BillingHandlers(
        BillingRepository(database), price_list(dict(DEFAULT_PRICING)), outcome_source=None, chunk_size=50
    )


@pytest.fixture
async def billing(own_database_url: str) -> AsyncIterator[tuple[BillingHandlers, str]]:
    database = Database(own_database_url, pool_size=2)
    try:
        yield _handlers(database), libpq_url(own_database_url)
    finally:
        await database.close()


async def _batch_of(handlers: BillingHandlers, videos: int) -> BatchId:
    tenant = await funded_tenant(handlers, 1_000)
    batch_id = new_batch_id()
    await handlers.reserve(tenant, batch_id, [QuoteLine("sora-2", videos)])
    return batch_id


def _capture(batch_id: BatchId, n: int, spend: int | None = None) -> TaskOutcome:
    return TaskOutcome(
        batch_id,
        TaskId(f"{batch_id}-{n}"),
        "sora-2",
        OutcomeKind.CAPTURE,
        provider_cost_usd_micros=spend,
        provider_jobs=1 if spend is not None else 0,
    )


def _capture_costs(dsn: str) -> tuple[int, int]:
    """(frozen cost of all captures, of those that reported a spend), every month and tenant."""
    with psycopg.connect(dsn) as conn:
        [(frozen, reported)] = conn.execute(
            "SELECT coalesce(sum(provider_cost_usd_micros), 0),"
            " coalesce(sum(reported_frozen_cost_usd_micros), 0)"
            " FROM billing.tenant_month_outcomes WHERE ref_type = 'batch_capture'"
        ).fetchall()
        assert summary_differences(conn) == {}
        return int(frozen), int(reported)


async def test_a_capture_and_its_report_count_once_in_either_order(
    billing: tuple[BillingHandlers, str],
) -> None:
    handlers, dsn = billing
    batch_id = await _batch_of(handlers, 4)
    # Capture and report in one chunk (the report second), a capture without one, and a late report.
    await handlers.apply_task_outcomes([_capture(batch_id, 0, spend=900), _capture(batch_id, 1)])
    frozen, reported = _capture_costs(dsn)
    per_video = frozen // 2
    assert per_video > 0
    assert reported == per_video
    await handlers.apply_task_outcomes([_capture(batch_id, 1, spend=700), _capture(batch_id, 0, spend=5)])
    assert _capture_costs(dsn) == (2 * per_video, 2 * per_video)
    # The report first (no code path writes it so today; the summary must not care), then its capture.
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO billing.task_provider_costs"
            " (task_id, batch_id, model, captured, provider_cost_usd_micros, provider_jobs)"
            " VALUES (%s, %s, 'sora-2', true, 300, 1)",
            (f"{batch_id}-2", batch_id),
        )
    await handlers.apply_task_outcomes([_capture(batch_id, 2), _capture(batch_id, 3)])
    assert _capture_costs(dsn) == (4 * per_video, 3 * per_video)


async def test_the_upgrade_summarizes_the_reports_already_there() -> None:
    with database_at(MIGRATIONS, "0018") as url:
        database = Database(url, pool_size=2)
        try:
            handlers = _handlers(database)
            batch_id = await _batch_of(handlers, 3)
            await handlers.apply_task_outcomes(
                [_capture(batch_id, 0, spend=900), _capture(batch_id, 1), _capture(batch_id, 2, spend=0)]
            )
            upgrade_to(MIGRATIONS, url, "0019")
            frozen, reported = _capture_costs(libpq_url(url))
            assert frozen > 0
            assert reported == frozen * 2 // 3
        finally:
            await database.close()
