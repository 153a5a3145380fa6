"""The monthly summaries of the ledger (ADR-152) recomputed from the entries and transfers alone.

Billing's triggers keep `billing.account_month_totals` and `billing.tenant_month_outcomes` in the
transaction of each movement; these queries say what they must hold, from the ledger, so a test
compares the two after any sequence of movements, and the history generator (which loads with
triggers off) fills them the same way.
"""

from __future__ import annotations

from typing import Any

import psycopg

_MONTH = "(date_trunc('month', {} AT TIME ZONE 'UTC'))::date"

ACCOUNT_MONTH_TOTALS = f"""
    SELECT e.account_id, {_MONTH.format("e.created_at")} AS month, e.ref_type, count(*) AS entries,
           sum(e.amount) AS amount
    FROM billing.ledger_entries e
    JOIN billing.accounts a ON a.id = e.account_id AND a.kind IN ('available', 'hold', 'debt')
    GROUP BY 1, 2, 3
"""

TENANT_MONTH_OUTCOMES = f"""
    SELECT {_MONTH.format("t.created_at")} AS month, t.tenant_id, coalesce(t.model, '') AS model, t.ref_type,
           count(*) AS transfers, sum(t.amount) AS amount,
           coalesce(sum(line.cost), 0) AS provider_cost_usd_micros,
           -- ADR-170: the frozen cost of the captures whose task reported a provider spend.
           coalesce(sum(line.cost) FILTER (WHERE EXISTS (
               SELECT 1 FROM billing.task_provider_costs p WHERE p.task_id = t.ref_id)), 0)
               AS reported_frozen_cost_usd_micros
    FROM billing.transfers t
    LEFT JOIN LATERAL (
        SELECT max(l.provider_cost_usd_micros) AS cost FROM billing.batch_hold_lines l
        WHERE t.ref_type = 'batch_capture' AND l.batch_id = t.batch_id AND l.model = t.model
          AND l.unit_price = t.amount
    ) line ON true
    WHERE t.ref_type IN ('batch_capture', 'batch_refund')
    GROUP BY 1, 2, 3, 4
"""

STORED = {
    "account_month_totals": (
        "SELECT account_id, month, ref_type, entries, amount FROM billing.account_month_totals"
    ),
    "tenant_month_outcomes": (
        "SELECT month, tenant_id, model, ref_type, transfers, amount, provider_cost_usd_micros,"
        " reported_frozen_cost_usd_micros FROM billing.tenant_month_outcomes"
    ),
}
RECOMPUTED = {"account_month_totals": ACCOUNT_MONTH_TOTALS, "tenant_month_outcomes": TENANT_MONTH_OUTCOMES}


def summary_differences(conn: psycopg.Connection[Any]) -> dict[str, tuple[set[Any], set[Any]]]:
    """Per summary table, (rows stored but not recomputed, rows recomputed but not stored); both
    empty when the summaries equal a recomputation from the ledger."""
    found = {}
    for table, stored_query in STORED.items():
        stored = {tuple(row) for row in conn.execute(stored_query)}
        recomputed = {tuple(row) for row in conn.execute(RECOMPUTED[table])}
        if stored != recomputed:
            found[table] = (stored - recomputed, recomputed - stored)
    return found


def rebuild_summaries(conn: psycopg.Connection[Any]) -> None:
    """Replaces both summaries with a recomputation from the ledger (for data loaded without
    triggers)."""
    for table, query in RECOMPUTED.items():
        columns = STORED[table].split("SELECT ", 1)[1].split(" FROM", 1)[0]
        conn.execute(f"DELETE FROM billing.{table}")
        conn.execute(f"INSERT INTO billing.{table} ({columns}) {query}")
