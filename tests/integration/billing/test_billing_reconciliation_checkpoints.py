"""Incremental reconciliation (ADR-159): a clean run checkpoints an hour before it started, later
runs read only what moved since (and what was amended since), and what they must still see they
see: a discrepancy introduced after a checkpoint is found by the next run, which then checkpoints
nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from libs import db as db_module
from libs.db import Database, libpq_url
from libs.migrations import upgrade_to
from libs.price_list import DEFAULT_PRICING
from services.billing.adapters.repository import BillingRepository
from services.billing.bootstrap import MIGRATIONS, price_list
from services.billing.domain.ids import TaskId
from services.billing.domain.ledger import OutcomeKind, TaskOutcome
from services.billing.domain.pricing import QuoteLine
from services.billing.domain.reconciliation import CHECKPOINT_GRACE, checkpoint_cutoff
from services.billing.use_cases.handlers import BillingHandlers
from tests.isolation import database_at
from tests.ledger_summaries import rebuild_summaries

from .billing_testkit import funded_tenant, new_batch_id

# Everything the first batch moved is moved back to this month (rows and their summaries).
OLD_MONTH = "2026-01-15T12:00:00Z"


@pytest.fixture
async def handlers(own_database_url: str) -> AsyncIterator[tuple[BillingHandlers, str]]:
    database = Database(own_database_url, pool_size=4)
    try:
        yield (
            BillingHandlers(
                BillingRepository(database),
                price_list(dict(DEFAULT_PRICING)),
                outcome_source=None,
                chunk_size=50,
            ),
            libpq_url(own_database_url),
        )
    finally:
        await database.close()


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


def _move_everything_back(dsn: str, *, recorded: bool = True) -> None:
    with psycopg.connect(dsn) as conn:
        for table, column in (
            ("ledger_entries", "created_at"),
            ("transfers", "created_at"),
            ("batch_holds", "created_at"),
            ("batch_holds", "settled_at"),
        ):
            conn.execute(f"UPDATE billing.{table} SET {column} = %s WHERE {column} IS NOT NULL", (OLD_MONTH,))
        rebuild_summaries(conn)
        if recorded:  # that history was written then, not amended now
            conn.execute("DELETE FROM billing.ledger_amendments")


@pytest.fixture
async def checkpointed(handlers: tuple[BillingHandlers, str]) -> tuple[BillingHandlers, str]:
    """A settled batch moved back to an old month and reconciled clean: a checkpoint to read after."""
    billing, dsn = handlers
    await _settled_batch(billing)
    _move_everything_back(dsn)
    assert (await billing.reconcile()).discrepancies == []
    return billing, dsn


def _checkpoints(dsn: str) -> list[tuple[datetime, int, int]]:
    with psycopg.connect(dsn) as conn:
        return [
            (row[0], row[1], row[2])
            for row in conn.execute(
                "SELECT cutoff, entries_read, transfers_read"
                " FROM billing.reconciliation_checkpoints ORDER BY id"
            )
        ]


def _execute(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(statement)


def test_a_checkpoint_is_an_hour_before_the_run_that_records_it() -> None:
    started = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)
    assert checkpoint_cutoff(started) == datetime(2026, 2, 28, 23, 30, tzinfo=UTC)
    assert timedelta(hours=1) == CHECKPOINT_GRACE


async def test_a_clean_run_checkpoints_and_the_next_reads_only_what_moved_since(
    handlers: tuple[BillingHandlers, str],
) -> None:
    billing, dsn = handlers
    await _settled_batch(billing)
    with psycopg.connect(dsn) as conn:  # the money path changes nothing it wrote
        assert conn.execute("SELECT count(*) FROM billing.ledger_amendments").fetchone() == (0,)
    _move_everything_back(dsn)
    first = await billing.reconcile()
    assert first.discrepancies == []
    assert first.read_since is None  # no checkpoint yet: a full run
    assert (first.entries_read, first.transfers_read) == (10, 5)  # top-up, freeze, 3 outcomes
    assert first.batches_checked == 1 and first.checkpointed
    [(cutoff, entries, transfers)] = _checkpoints(dsn)
    assert (entries, transfers) == (10, 5)
    assert datetime.now(UTC) - timedelta(hours=1, minutes=5) < cutoff < datetime.now(UTC) - timedelta(hours=1)

    await _settled_batch(billing)  # after the checkpoint: the only thing the next run reads
    second = await billing.reconcile()
    assert second.discrepancies == []
    assert second.read_since == cutoff
    assert (second.entries_read, second.transfers_read, second.amendments_read) == (10, 5, 0)
    assert (second.accounts_checked, second.batches_checked) == (2, 1)  # its wallet and hold
    assert second.checkpointed and len(_checkpoints(dsn)) == 2

    # The escape hatch: without checkpoints, a full run reads everything again.
    _execute(dsn, "DELETE FROM billing.reconciliation_checkpoints")
    full = await billing.reconcile()
    assert full.discrepancies == [] and full.read_since is None
    assert (full.entries_read, full.transfers_read, full.batches_checked) == (20, 10, 2)


async def test_a_run_on_a_pooled_connection_that_sat_idle_reads_one_snapshot(
    handlers: tuple[BillingHandlers, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    billing, _ = handlers
    # Every checkout pings the connection first: the audit's transaction still begins with its
    # own SET TRANSACTION (the ping leaves no transaction open).
    monkeypatch.setattr(db_module, "IDLE_CHECK_SECONDS", 0.0)
    await _settled_batch(billing)
    for _ in range(2):
        assert (await billing.reconcile()).discrepancies == []


async def test_a_balance_changed_behind_the_ledger_is_found_after_a_checkpoint(
    checkpointed: tuple[BillingHandlers, str],
) -> None:
    billing, dsn = checkpointed
    # No entry moves the account: only the change itself says it must be read again.
    _execute(dsn, "UPDATE billing.accounts SET balance = balance + 5 WHERE kind = 'available'")
    report = await billing.reconcile()
    assert report.entries_read == 0 and report.amendments_read == 1
    assert sorted((d.invariant, d.message) for d in report.discrepancies) == [
        ("I2", "balance 985 != sum of entries 980"),
        ("I2", "last entry's balance_after 980 != balance 985"),
    ]
    assert not report.checkpointed and len(_checkpoints(dsn)) == 1


async def test_an_entry_edited_after_a_checkpoint_is_found(
    checkpointed: tuple[BillingHandlers, str],
) -> None:
    billing, dsn = checkpointed
    _execute(
        dsn,
        "UPDATE billing.ledger_entries SET amount = amount + 1"
        " WHERE id = (SELECT min(id) FROM billing.ledger_entries WHERE ref_type = 'batch_capture')",
    )
    report = await billing.reconcile()
    assert report.entries_read == 0
    subjects = sorted((d.invariant, d.subject.split(" ")[0]) for d in report.discrepancies)
    # The account's monthly total, the (hold) account's balance, and its transfer.
    assert subjects == [("I2", "account"), ("I2", "hold"), ("I2", "transfer")]
    assert not report.checkpointed


async def test_a_transfer_unbalanced_after_a_checkpoint_is_found(
    checkpointed: tuple[BillingHandlers, str],
) -> None:
    billing, dsn = checkpointed
    # A third entry on a transfer of the checkpointed history (on a system account: no balance
    # or monthly total of a tenant moves).
    _execute(
        dsn,
        """
        INSERT INTO billing.ledger_entries (transfer_id, account_id, ref_type, ref_id, amount, balance_after)
        SELECT t.id, a.id, t.ref_type, t.ref_id, 7, a.balance + 7
        FROM billing.transfers t, billing.accounts a
        WHERE t.ref_type = 'topup' AND a.kind = 'grants'
        """,
    )
    report = await billing.reconcile()
    assert report.entries_read == 1
    found = sorted((d.invariant, d.subject.split(" ")[0], d.message) for d in report.discrepancies)
    assert [(invariant, subject) for invariant, subject, _ in found] == [("I2", "ledger"), ("I2", "transfer")]
    assert "has 3 entries summing to 7" in found[1][2]
    assert not report.checkpointed


async def test_a_settled_hold_edited_after_a_checkpoint_is_found(
    checkpointed: tuple[BillingHandlers, str],
) -> None:
    billing, dsn = checkpointed
    _execute(dsn, "UPDATE billing.batch_holds SET captured = captured + 10, refunded = refunded - 10")
    report = await billing.reconcile()
    assert report.batches_checked == 1
    assert {d.invariant for d in report.discrepancies} == {"I1"}
    assert any("captured 30 but batch_capture transfers total 20" in d.message for d in report.discrepancies)


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
    assert _checkpoints(dsn) == []  # nothing is checkpointed while anything is wrong


async def test_a_monthly_total_that_drifts_after_a_checkpoint_is_found_when_its_key_moves(
    checkpointed: tuple[BillingHandlers, str],
) -> None:
    billing, dsn = checkpointed
    # A capture whose monthly total the trigger did not keep (as after a restore without triggers).
    await _settled_batch(billing)
    _execute(
        dsn,
        "UPDATE billing.tenant_month_outcomes SET amount = amount - 10"
        " WHERE ref_type = 'batch_capture' AND month = date_trunc('month', now() AT TIME ZONE 'UTC')::date",
    )
    found = (await billing.reconcile()).discrepancies
    assert [d.invariant for d in found] == ["I2"]
    assert "monthly total 10 != its ledger rows' 20" in found[0].message


async def test_the_months_sealed_before_the_upgrade_become_the_first_checkpoint() -> None:
    with database_at(MIGRATIONS, "0016") as url:
        database = Database(url, pool_size=2)
        try:
            # Today's freeze reads the debt kept on the wallet row (0018, ADR-165): the column is added
            # by hand so that today's code can make the money of that time (0017 leaves accounts alone).
            _execute(libpq_url(url), "ALTER TABLE billing.accounts ADD COLUMN owed bigint NOT NULL DEFAULT 0")
            # So is the summary column the recomputation of the summaries fills (0019, ADR-170).
            _execute(
                libpq_url(url),
                "ALTER TABLE billing.tenant_month_outcomes"
                " ADD COLUMN reported_frozen_cost_usd_micros bigint NOT NULL DEFAULT 0",
            )
            billing = BillingHandlers(
                BillingRepository(database),
                price_list(dict(DEFAULT_PRICING)),
                outcome_source=None,
                chunk_size=50,
            )
            dsn = libpq_url(url)
            await _settled_batch(billing)
            _move_everything_back(dsn, recorded=False)  # before 0017: nothing records amendments
            _execute(
                dsn,
                "INSERT INTO billing.reconciled_months (month, entries, transfers)"
                " VALUES ('2026-01-01', 10, 5)",
            )
            await _settled_batch(billing)  # this month's, never sealed
            upgrade_to(MIGRATIONS, url, "0017")

            report = await billing.reconcile()
            assert report.discrepancies == []
            assert report.read_since == datetime(2026, 2, 1, tzinfo=UTC)
            assert (report.entries_read, report.transfers_read, report.batches_checked) == (10, 5, 1)
        finally:
            await database.close()
