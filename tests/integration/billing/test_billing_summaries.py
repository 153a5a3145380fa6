"""The monthly summaries (ADR-152) equal a recomputation from the ledger after any sequence of
movements: the stateful machine of test_billing_stateful.py (top-ups, reservations and refusals,
outcomes in chunks, replays, settlements, quotes, budgets, through the real billing handlers on
PostgreSQL), with that equality checked after every step as one more invariant.
"""

from __future__ import annotations

import psycopg
from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant, run_state_machine_as_test

from libs.db import libpq_url
from tests.ledger_summaries import summary_differences

from .test_billing_stateful import BillingMoney


class BillingMoneyAndSummaries(BillingMoney):
    """The money machine, its summaries compared with the ledger after every step."""

    @invariant()
    def summaries_are_the_ledgers(self) -> None:
        with psycopg.connect(libpq_url(self.database_url)) as conn:
            assert summary_differences(conn) == {}


def test_monthly_summaries_equal_the_ledger_after_any_movements(own_database_url: str) -> None:
    BillingMoneyAndSummaries.database_url = own_database_url
    run_state_machine_as_test(
        BillingMoneyAndSummaries,
        settings=settings(
            max_examples=4,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_summaries_count_entries_of_tenant_accounts_only(own_database_url: str) -> None:
    # The system accounts (revenue, grants, payments) would be one row every tenant's transaction
    # updates: they are left out, and nothing reads them from the summary.
    with psycopg.connect(libpq_url(own_database_url)) as conn:
        conn.execute(
            "INSERT INTO billing.tenants (id, name) VALUES ('00000000-0000-4000-8000-000000000001', 't')"
        )
        [(available,)] = conn.execute(
            "INSERT INTO billing.accounts (kind, tenant_id) VALUES"
            " ('available', '00000000-0000-4000-8000-000000000001') RETURNING id"
        ).fetchall()
        [(grants,)] = conn.execute("SELECT id FROM billing.accounts WHERE kind = 'grants'").fetchall()
        [(transfer,)] = conn.execute(
            "INSERT INTO billing.transfers (key, ref_type, ref_id, tenant_id, debit_account_id,"
            " credit_account_id, amount) VALUES ('topup:t:1', 'topup', '1',"
            " '00000000-0000-4000-8000-000000000001', %s, %s, 70) RETURNING id",
            (grants, available),
        ).fetchall()
        conn.execute(
            "INSERT INTO billing.ledger_entries"
            " (transfer_id, account_id, tenant_id, ref_type, ref_id, amount, balance_after)"
            " VALUES (%(t)s, %(grants)s, %(tenant)s, 'topup', '1', -70, NULL),"
            " (%(t)s, %(available)s, %(tenant)s, 'topup', '1', 70, 70)",
            {
                "t": transfer,
                "grants": grants,
                "available": available,
                "tenant": "00000000-0000-4000-8000-000000000001",
            },
        )
        rows = conn.execute(
            "SELECT account_id, ref_type, entries, amount FROM billing.account_month_totals"
        ).fetchall()
        assert rows == [(available, "topup", 1, 70)]
        assert summary_differences(conn) == {}
