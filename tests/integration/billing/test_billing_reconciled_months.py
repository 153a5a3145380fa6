"""Reconciliation by sealed months (ADR-154): a clean run seals the months that ended, later runs
read the ledger from the first unsealed month on, and what they must still see they see."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import psycopg
import pytest

from libs.db import Database, libpq_url
from libs.price_list import DEFAULT_PRICING
from services.billing.adapters.repository import BillingRepository
from services.billing.bootstrap import price_list
from services.billing.domain.ids import TaskId
from services.billing.domain.ledger import OutcomeKind, TaskOutcome
from services.billing.domain.pricing import QuoteLine
from services.billing.domain.reconciliation import months_to_seal
from services.billing.use_cases.handlers import BillingHandlers
from tests.isolation import create_migrated_database, drop_database
from tests.ledger_summaries import rebuild_summaries

from .billing_testkit import funded_tenant, new_batch_id

# Everything the first batch moved is moved back to this month (rows and their summaries).
OLD_MONTH = "2026-01-15T12:00:00Z"


@pytest.fixture
async def handlers() -> AsyncIterator[tuple[BillingHandlers, str]]:
    name, url = create_migrated_database()
    database = Database(url, pool_size=4)
    try:
        yield (
            BillingHandlers(
                BillingRepository(database),
                price_list(dict(DEFAULT_PRICING)),
                outcome_source=None,
                chunk_size=50,
            ),
            libpq_url(url),
        )
    finally:
        await database.close()
        drop_database(name)


async def _settled_batch(handlers: BillingHandlers) -> None:
    tenant = await funded_tenant(handlers, 1_000)
    batch_id = new_batch_id()
    await handlers.reserve(tenant, batch_id, [QuoteLine("sora-2", 3)])
    await handlers.apply_task_outcomes(
        [
            TaskOutcome(
                batch_id,
                TaskId(f"{batch_id}-{n}"),
                "sora-2",
                OutcomeKind.REFUND if n == 0 else OutcomeKind.CAPTURE,
            )
            for n in range(3)
        ]
    )
    await handlers.settle(batch_id)


def _move_everything_back(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        for table, column in (
            ("ledger_entries", "created_at"),
            ("transfers", "created_at"),
            ("batch_holds", "created_at"),
            ("batch_holds", "settled_at"),
        ):
            conn.execute(f"UPDATE billing.{table} SET {column} = %s WHERE {column} IS NOT NULL", (OLD_MONTH,))
        rebuild_summaries(conn)


def test_months_are_sealed_an_hour_after_they_end() -> None:
    assert months_to_seal(date(2026, 1, 1), datetime(2026, 3, 1, 0, 59, tzinfo=UTC)) == [date(2026, 1, 1)]
    assert months_to_seal(date(2026, 1, 1), datetime(2026, 3, 1, 1, 0, tzinfo=UTC)) == [
        date(2026, 1, 1),
        date(2026, 2, 1),
    ]
    assert months_to_seal(date(2026, 12, 1), datetime(2027, 1, 1, 1, tzinfo=UTC)) == [date(2026, 12, 1)]
    assert months_to_seal(date(2026, 3, 1), datetime(2026, 3, 20, tzinfo=UTC)) == []


async def test_a_clean_run_seals_the_ended_months_and_later_runs_start_after_them(
    handlers: tuple[BillingHandlers, str],
) -> None:
    billing, dsn = handlers
    await _settled_batch(billing)
    _move_everything_back(dsn)
    first = await billing.reconcile()
    assert first.discrepancies == []
    assert first.batches_checked == 1  # the old batch, read while its month was open
    with psycopg.connect(dsn) as conn:
        sealed = [
            row[0] for row in conn.execute("SELECT month FROM billing.reconciled_months ORDER BY month")
        ]
        [(entries, transfers)] = conn.execute(
            "SELECT entries, transfers FROM billing.reconciled_months WHERE month = '2026-01-01'"
        ).fetchall()
    assert sealed[0] == date(2026, 1, 1) and sealed[-1] < datetime.now(UTC).date().replace(day=1)
    assert (entries, transfers) == (10, 5)  # top-up, freeze, 3 outcomes: two entries each

    await _settled_batch(billing)  # this month's: read by the next run, the sealed one is not
    second = await billing.reconcile()
    assert second.discrepancies == []
    assert second.batches_checked == 1


async def test_a_balance_changed_behind_the_ledger_is_found_after_its_months_were_sealed(
    handlers: tuple[BillingHandlers, str],
) -> None:
    billing, dsn = handlers
    await _settled_batch(billing)
    _move_everything_back(dsn)
    assert (await billing.reconcile()).discrepancies == []
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE billing.accounts SET balance = balance + 5 WHERE kind = 'available'")
    found = (await billing.reconcile()).discrepancies
    assert [(d.invariant, "balance" in d.message) for d in found] == [("I2", True)]


async def test_a_monthly_total_that_drifted_from_the_ledger_is_found(
    handlers: tuple[BillingHandlers, str],
) -> None:
    billing, dsn = handlers
    await _settled_batch(billing)
    _move_everything_back(dsn)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "UPDATE billing.tenant_month_outcomes SET amount = amount + 10 WHERE ref_type = 'batch_capture'"
        )
    found = (await billing.reconcile()).discrepancies
    assert [d.invariant for d in found] == ["I2"]
    assert "monthly total 30 != its ledger rows' 20" in found[0].message
    with psycopg.connect(dsn) as conn:  # nothing is sealed while anything is wrong
        assert conn.execute("SELECT count(*) FROM billing.reconciled_months").fetchone() == (0,)
