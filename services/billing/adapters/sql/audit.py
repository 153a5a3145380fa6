"""The reconciliation audit's SQL: aggregates over the ledger since the last sealed month (named
query strings)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.db import run_sql
from libs.field_mapping import to_record
from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.ledger import AccountKind, RefType
from services.billing.domain.reconciliation import (
    AccountAudit,
    EffectCount,
    HoldAudit,
    LedgerAudit,
    SummaryDrift,
    TransferAudit,
)

# Every query reads the ledger from `since` on (the first month reconciliation has not sealed,
# ADR-154): entries and transfers through their BRIN indexes on `created_at`, holds pending or
# settled since; balances against the monthly totals (ADR-152), one row per account and month.
_LEDGER_SUM = "SELECT coalesce(sum(amount), 0) FROM billing.ledger_entries WHERE created_at >= %(since)s"

_SUSPICIOUS_TRANSFERS = """
    SELECT t.id, t.key, count(e.id) AS entry_count, coalesce(sum(e.amount), 0) AS entries_sum
    FROM billing.transfers t LEFT JOIN billing.ledger_entries e ON e.transfer_id = t.id
    WHERE t.created_at >= %(since)s
    GROUP BY t.id HAVING count(e.id) <> 2 OR coalesce(sum(e.amount), 0) <> 0
"""

# Each tenant account's balance against its monthly totals; its last entry's balance_after only
# where it moved since (an account untouched since keeps the balance its sealed months checked,
# and the totals would show any change behind the ledger).
_ACCOUNT_AUDIT = """
    SELECT a.id, a.kind, a.tenant_id, a.balance, coalesce(s.total, 0) AS entries_sum,
        CASE WHEN s.moved_since THEN
            (SELECT e.balance_after FROM billing.ledger_entries e WHERE e.account_id = a.id
             ORDER BY e.id DESC LIMIT 1)
        END AS last_balance_after
    FROM billing.accounts a
    LEFT JOIN (SELECT account_id, sum(amount) AS total, bool_or(month >= %(since)s::date) AS moved_since
               FROM billing.account_month_totals GROUP BY account_id) s
        ON s.account_id = a.id
    WHERE a.kind IN ('available', 'hold', 'debt')
"""

_MONTH = "(date_trunc('month', {} AT TIME ZONE 'UTC'))::date"

# The monthly totals of the months since, against their entries and transfers recomputed.
_SUMMARY_DRIFT = f"""
    SELECT 'account ' || coalesce(s.account_id, e.account_id) || ' ' || coalesce(s.ref_type, e.ref_type)
           || ' in ' || to_char(coalesce(s.month, e.month), 'YYYY-MM') AS subject,
           coalesce(s.amount, 0) AS stored, coalesce(e.amount, 0) AS recorded
    FROM (SELECT * FROM billing.account_month_totals WHERE month >= %(since)s::date) s
    FULL JOIN (
        SELECT account_id, {_MONTH.format("created_at")} AS month, ref_type, count(*) AS entries,
               sum(amount) AS amount
        FROM billing.ledger_entries
        WHERE created_at >= %(since)s AND account_id NOT IN (
            SELECT id FROM billing.accounts WHERE kind IN ('revenue', 'grants', 'payments'))
        GROUP BY 1, 2, 3
    ) e ON e.account_id = s.account_id AND e.month = s.month AND e.ref_type = s.ref_type
    WHERE s.amount IS DISTINCT FROM e.amount OR s.entries IS DISTINCT FROM e.entries
    UNION ALL
    SELECT 'tenant ' || coalesce(s.tenant_id, t.tenant_id) || ' ' || coalesce(s.ref_type, t.ref_type)
           || ' of '
           || coalesce(nullif(coalesce(s.model, t.model), ''), 'unrecorded') || ' in '
           || to_char(coalesce(s.month, t.month), 'YYYY-MM'),
           coalesce(s.amount, 0), coalesce(t.amount, 0)
    FROM (SELECT * FROM billing.tenant_month_outcomes WHERE month >= %(since)s::date) s
    FULL JOIN (
        SELECT {_MONTH.format("created_at")} AS month, tenant_id, coalesce(model, '') AS model, ref_type,
               count(*) AS transfers, sum(amount) AS amount
        FROM billing.transfers
        WHERE created_at >= %(since)s AND ref_type IN ('batch_capture', 'batch_refund')
        GROUP BY 1, 2, 3, 4
    ) t ON t.month = s.month AND t.tenant_id = s.tenant_id AND t.model = s.model AND t.ref_type = s.ref_type
    WHERE s.amount IS DISTINCT FROM t.amount OR s.transfers IS DISTINCT FROM t.transfers
"""

# The unique key already makes a repeated key impossible; this catches one effect under two keys
# (among the transfers since: an effect repeated across sealed months was caught when sealed).
_REPEATED_EFFECTS = """
    SELECT ref_type, ref_id, count(*) AS n FROM billing.transfers
    WHERE ref_type IN ('batch_upfront', 'batch_settle', 'topup') AND created_at >= %(since)s
    GROUP BY ref_type, tenant_id, ref_id HAVING count(*) > 1
    UNION ALL
    SELECT min(ref_type), ref_id, count(*) FROM billing.transfers
    WHERE ref_type IN ('batch_capture', 'batch_refund') AND created_at >= %(since)s
    GROUP BY ref_id HAVING count(*) > 1
"""

_HOLD_AUDIT = """
    SELECT h.batch_id, h.tenant_id, h.settlement_status, h.frozen, h.captured, h.refunded, h.released,
        a.balance AS held
    FROM billing.batch_holds h JOIN billing.accounts a ON a.id = h.hold_account_id
    WHERE h.settlement_status = 'pending' OR h.settled_at >= %(since)s
    ORDER BY h.batch_id
"""

_BATCH_TRANSFER_TOTALS = """
    SELECT batch_id, ref_type, sum(amount) AS total FROM billing.transfers
    WHERE batch_id = ANY(%(batch_ids)s) GROUP BY batch_id, ref_type
"""

# The first month not sealed: the month after the last sealed one (months are sealed in order);
# before any, the ledger's first month (or this one, when it is empty).
_FIRST_UNSEALED = """
    SELECT coalesce(
        (SELECT max(month) + interval '1 month' FROM billing.reconciled_months),
        (SELECT min(month) FROM billing.account_month_totals),
        date_trunc('month', now() AT TIME ZONE 'UTC')
    )::date
"""
_COUNTS_OF_MONTHS = """
    SELECT m.month,
        (SELECT count(*) FROM billing.ledger_entries
         WHERE created_at >= s.start AND created_at < s.start + interval '1 month') AS entries,
        (SELECT count(*) FROM billing.transfers
         WHERE created_at >= s.start AND created_at < s.start + interval '1 month') AS transfers
    FROM unnest(%(months)s::date[]) AS m(month),
        LATERAL (SELECT m.month::timestamp AT TIME ZONE 'UTC' AS start) AS s
"""
_SEAL = """
    INSERT INTO billing.reconciled_months (month, entries, transfers)
    SELECT * FROM unnest(%(months)s::date[], %(entries)s::bigint[], %(transfers)s::bigint[])
    ON CONFLICT (month) DO NOTHING
"""


class AuditQueries:
    """The figures reconciliation checks, inside one transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def _rows(self, statement: str, params: dict[str, Any]) -> list[Any]:
        return await run_sql(self._conn, statement, params)

    async def first_unsealed_month(self) -> date:
        """The first month no clean reconciliation sealed (its ledger is checked from there on)."""
        [row] = await self._rows(_FIRST_UNSEALED, {})
        return row[0]  # type: ignore[no-any-return]

    async def seal(self, months: Sequence[date]) -> None:
        """Records `months` as reconciled (each with how many entries and transfers it holds)."""
        if not months:
            return
        counts = await self._rows(_COUNTS_OF_MONTHS, {"months": list(months)})
        await self._rows(
            _SEAL,
            {
                "months": [row.month for row in counts],
                "entries": [row.entries for row in counts],
                "transfers": [row.transfers for row in counts],
            },
        )

    async def ledger_audit(self, since: date) -> LedgerAudit:
        """The figures reconciliation checks from the month `since` on, aggregated in the database
        (suspicious rows only)."""
        start = {"since": datetime(since.year, since.month, since.day, tzinfo=UTC)}
        [(ledger_sum,)] = await self._rows(_LEDGER_SUM, start)
        transfer_rows = await self._rows(_SUSPICIOUS_TRANSFERS, start)
        account_rows = await self._rows(_ACCOUNT_AUDIT, start)
        drift_rows = await self._rows(_SUMMARY_DRIFT, start)
        effect_rows = await self._rows(_REPEATED_EFFECTS, start)
        hold_rows = await self._rows(_HOLD_AUDIT, start)
        moved: dict[BatchId, dict[RefType, int]] = {}
        totals = await self._rows(_BATCH_TRANSFER_TOTALS, {"batch_ids": [row.batch_id for row in hold_rows]})
        for row in totals:
            moved.setdefault(BatchId(row.batch_id), {})[RefType(row.ref_type)] = int(row.total)
        return LedgerAudit(
            ledger_sum=int(ledger_sum),
            transfers=[
                TransferAudit(row.id, row.key, int(row.entry_count), int(row.entries_sum))
                for row in transfer_rows
            ],
            accounts=[
                AccountAudit(
                    account_id=row.id,
                    kind=AccountKind(row.kind),
                    tenant_id=TenantId(row.tenant_id) if row.tenant_id else None,
                    balance=row.balance,
                    entries_sum=int(row.entries_sum),
                    last_balance_after=row.last_balance_after,
                )
                for row in account_rows
            ],
            repeated_effects=[
                EffectCount(RefType(row.ref_type), row.ref_id, int(row.n)) for row in effect_rows
            ],
            holds=[
                to_record(HoldAudit, row, transferred=moved.get(BatchId(row.batch_id), {}))
                for row in hold_rows
            ],
            summary_drift=[
                SummaryDrift(row.subject, int(row.stored), int(row.recorded)) for row in drift_rows
            ],
            since=since,
        )
