"""The reconciliation audit's SQL: aggregates over the whole ledger (named query strings)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.field_mapping import to_record
from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.ledger import AccountKind, RefType
from services.billing.domain.reconciliation import (
    AccountAudit,
    EffectCount,
    HoldAudit,
    LedgerAudit,
    TransferAudit,
)

_LEDGER_SUM = "SELECT coalesce(sum(amount), 0) FROM billing.ledger_entries"

_SUSPICIOUS_TRANSFERS = """
    SELECT t.id, t.key, count(e.id) AS entry_count, coalesce(sum(e.amount), 0) AS entries_sum
    FROM billing.transfers t LEFT JOIN billing.ledger_entries e ON e.transfer_id = t.id
    GROUP BY t.id HAVING count(e.id) <> 2 OR coalesce(sum(e.amount), 0) <> 0
"""

_ACCOUNT_AUDIT = """
    SELECT a.id, a.kind, a.tenant_id, a.balance, coalesce(s.total, 0) AS entries_sum,
        (SELECT e.balance_after FROM billing.ledger_entries e WHERE e.account_id = a.id
         ORDER BY e.id DESC LIMIT 1) AS last_balance_after
    FROM billing.accounts a
    LEFT JOIN (SELECT account_id, sum(amount) AS total FROM billing.ledger_entries GROUP BY account_id) s
        ON s.account_id = a.id
    WHERE a.kind IN ('available', 'hold', 'debt')
"""

# The unique key already makes a repeated key impossible; this catches one effect under two keys.
_REPEATED_EFFECTS = """
    SELECT ref_type, ref_id, count(*) AS n FROM billing.transfers
    WHERE ref_type IN ('batch_upfront', 'batch_settle', 'topup')
    GROUP BY ref_type, tenant_id, ref_id HAVING count(*) > 1
    UNION ALL
    SELECT min(ref_type), ref_id, count(*) FROM billing.transfers
    WHERE ref_type IN ('batch_capture', 'batch_refund')
    GROUP BY ref_id HAVING count(*) > 1
"""

_HOLD_AUDIT = """
    SELECT h.batch_id, h.tenant_id, h.settlement_status, h.frozen, h.captured, h.refunded, h.released,
        a.balance AS held
    FROM billing.batch_holds h JOIN billing.accounts a ON a.id = h.hold_account_id
    ORDER BY h.batch_id
"""

_BATCH_TRANSFER_TOTALS = """
    SELECT batch_id, ref_type, sum(amount) AS total FROM billing.transfers
    WHERE batch_id IS NOT NULL GROUP BY batch_id, ref_type
"""


class AuditQueries:
    """The figures reconciliation checks, inside one transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def ledger_audit(self) -> LedgerAudit:
        """The figures reconciliation checks, aggregated in the database (suspicious rows only)."""
        ledger_sum = (await self._conn.execute(text(_LEDGER_SUM))).scalar_one()
        transfer_rows = await self._conn.execute(text(_SUSPICIOUS_TRANSFERS))
        account_rows = await self._conn.execute(text(_ACCOUNT_AUDIT))
        effect_rows = await self._conn.execute(text(_REPEATED_EFFECTS))
        hold_rows = (await self._conn.execute(text(_HOLD_AUDIT))).all()
        moved: dict[BatchId, dict[RefType, int]] = {}
        for row in await self._conn.execute(text(_BATCH_TRANSFER_TOTALS)):
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
        )
