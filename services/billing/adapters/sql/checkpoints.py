"""Reconciliation checkpoints (ADR-159): what a clean run verified, recorded for the next run
(named query strings).

A checkpoint is a cutoff time and, per key of the monthly totals (ADR-152), what the entries and
transfers created before it add up to. A run adds what it verified between the previous cutoff and
the new one (a full run: everything before the new one); an amended account or tenant-month is
summed again from all its rows. Checkpoints are written one at a time (a table lock), and only by
the run that read from the latest one: two runs never add the same slice twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from libs.db import run_sql
from services.billing.adapters.sql.audit import (
    AMENDED_TENANT_MONTHS,
    BEGINNING,
    MONTH,
    SYSTEM_ACCOUNTS,
    Amended,
)
from services.billing.adapters.sql.base import TransactionQueries

_LOCK = "LOCK TABLE billing.reconciliation_checkpoints IN EXCLUSIVE MODE"
_LATEST_CUTOFF = "SELECT max(cutoff) AS cutoff FROM billing.reconciliation_checkpoints"

_FORGET_ALL = "DELETE FROM billing.reconciled_account_totals; DELETE FROM billing.reconciled_tenant_outcomes"
_FORGET_AMENDED = f"""
    WITH accounts AS (
        DELETE FROM billing.reconciled_account_totals WHERE account_id = ANY(%(account_ids)s::bigint[])
    )
    DELETE FROM billing.reconciled_tenant_outcomes o USING {AMENDED_TENANT_MONTHS}
    WHERE o.tenant_id = a.tenant_id AND o.month = a.month
"""

# Entries between the cutoffs (through the BRIN index on `created_at`), and every entry before the
# new cutoff of an amended account (through its account index); the history benchmark's generator
# checkpoints its template with these too (a full run's figures). Kept apart: one query with an OR
# of the two read every entry.
_ADD_TOTALS = """
    INSERT INTO billing.reconciled_account_totals AS r (account_id, month, ref_type, entries, amount)
    SELECT account_id, {month}, ref_type, count(*), sum(amount)
    FROM billing.ledger_entries
    WHERE created_at < %(cutoff)s AND account_id NOT IN {system} AND {which}
    GROUP BY 1, 2, 3
    ON CONFLICT (account_id, month, ref_type) DO UPDATE
    SET entries = r.entries + excluded.entries, amount = r.amount + excluded.amount
"""
ADD_ACCOUNT_TOTALS = _ADD_TOTALS.format(
    month=MONTH.format("created_at"),
    system=SYSTEM_ACCOUNTS,
    which="created_at >= %(since)s AND NOT account_id = ANY(%(account_ids)s::bigint[])",
)
_ADD_AMENDED_ACCOUNT_TOTALS = _ADD_TOTALS.format(
    month=MONTH.format("created_at"),
    system=SYSTEM_ACCOUNTS,
    which="account_id = ANY(%(account_ids)s::bigint[])",
)

_OUTCOMES = """
    INSERT INTO billing.reconciled_tenant_outcomes AS r (month, tenant_id, model, ref_type, transfers, amount)
    SELECT {month}, t.tenant_id, coalesce(t.model, ''), t.ref_type, count(*), sum(t.amount)
    FROM {source}
    WHERE t.created_at < %(cutoff)s AND t.ref_type IN ('batch_capture', 'batch_refund') AND {which}
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (tenant_id, month, model, ref_type) DO UPDATE
    SET transfers = r.transfers + excluded.transfers, amount = r.amount + excluded.amount
"""
_IN_AMENDED_MONTH = (
    f"EXISTS (SELECT 1 FROM {AMENDED_TENANT_MONTHS}"
    f" WHERE a.tenant_id = t.tenant_id AND a.month = {MONTH.format('t.created_at')})"
)
ADD_OUTCOMES = _OUTCOMES.format(
    month=MONTH.format("t.created_at"),
    source="billing.transfers t",
    which=f"t.created_at >= %(since)s AND NOT {_IN_AMENDED_MONTH}",
)
_ADD_AMENDED_OUTCOMES = _OUTCOMES.format(
    month=MONTH.format("t.created_at"),
    source=f"{AMENDED_TENANT_MONTHS} JOIN billing.transfers t ON t.tenant_id = a.tenant_id",
    which=(
        "t.created_at >= a.month::timestamp AT TIME ZONE 'UTC'"
        " AND t.created_at < (a.month + interval '1 month')::timestamp AT TIME ZONE 'UTC'"
    ),
)

RECORD_CHECKPOINT = """
    INSERT INTO billing.reconciliation_checkpoints (cutoff, entries_read, transfers_read)
    VALUES (%(cutoff)s, %(entries)s, %(transfers)s)
"""


class CheckpointQueries(TransactionQueries):
    """Writes a clean run's checkpoint, inside one transaction."""

    async def record(
        self, since: datetime | None, cutoff: datetime, amended: Amended, *, entries: int, transfers: int
    ) -> bool:
        """Checkpoints what a clean run read from `since` (None: a full run) as verified up to
        `cutoff`; False (nothing written) when another run checkpointed since it started."""
        await run_sql(self._conn, _LOCK, {})
        [latest] = await run_sql(self._conn, _LATEST_CUTOFF, {})
        if latest.cutoff != since or (since is not None and cutoff <= since):
            return False
        # An amended account's or tenant-month's rows are summed again in full (forgotten first);
        # the rows between the cutoffs of the others are added.
        params: dict[str, Any] = {
            "since": since or BEGINNING,
            "cutoff": cutoff,
            "full": since is None,
            **amended.params(),
        }
        if since is None:
            await run_sql(self._conn, _FORGET_ALL, {})
        else:
            await run_sql(self._conn, _FORGET_AMENDED, params)
        await run_sql(self._conn, ADD_ACCOUNT_TOTALS, params)
        await run_sql(self._conn, ADD_OUTCOMES, params)
        if amended.account_ids:
            await run_sql(self._conn, _ADD_AMENDED_ACCOUNT_TOTALS, params)
        if amended.tenant_months:
            await run_sql(self._conn, _ADD_AMENDED_OUTCOMES, params)
        await run_sql(
            self._conn, RECORD_CHECKPOINT, {"cutoff": cutoff, "entries": entries, "transfers": transfers}
        )
        return True
