"""Spend control SQL: budgets and their use, stored quotes (issue 29).

The reservation's own reads of these (after the wallets are locked) are in `sql.reservations`;
this module holds what the budget and quote calls run in an ordinary transaction, and the one
encoding of a quote's lines.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from sqlalchemy import text

from services.billing.adapters.sql.base import TransactionQueries
from services.billing.domain.alerts import NO_ALERTS, AlertThresholds
from services.billing.domain.budgets import BudgetKey, BudgetScope, use_by_budget
from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.pricing import QuoteLine
from services.billing.domain.quotes import StoredQuote

_CAPS = "SELECT scope, scope_id, monthly_credits FROM billing.budgets WHERE tenant_id = :tenant_id"
_USE = """
SELECT COALESCE(api_key_id::text, '') AS api_key_id, COALESCE(project, '') AS project,
       sum(frozen - refunded - released) AS spent
FROM billing.batch_holds WHERE tenant_id = :tenant_id AND budget_period = :period
GROUP BY 1, 2"""
_SET_CAP = """
INSERT INTO billing.budgets (tenant_id, scope, scope_id, monthly_credits)
VALUES (:tenant_id, :scope, :scope_id, :monthly_credits)
ON CONFLICT (tenant_id, scope, scope_id)
DO UPDATE SET monthly_credits = EXCLUDED.monthly_credits, updated_at = now()"""
_REMOVE_CAP = """
DELETE FROM billing.budgets WHERE tenant_id = :tenant_id AND scope = :scope AND scope_id = :scope_id"""
_INSERT_QUOTE = """
INSERT INTO billing.quotes (id, tenant_id, api_key_id, fingerprint, lines, total, created_at, expires_at)
VALUES (:id, :tenant_id, :api_key_id, :fingerprint, CAST(:lines AS jsonb), :total, :created_at,
        :expires_at)"""
_THRESHOLDS = """
SELECT low_balance_credits, budget_percent FROM billing.alert_thresholds WHERE tenant_id = :tenant_id"""
_SET_THRESHOLDS = """
INSERT INTO billing.alert_thresholds (tenant_id, low_balance_credits, budget_percent)
VALUES (:tenant_id, :low_balance_credits, :budget_percent)
ON CONFLICT (tenant_id) DO UPDATE SET low_balance_credits = EXCLUDED.low_balance_credits,
    budget_percent = EXCLUDED.budget_percent, updated_at = now()"""
QUOTE_COLUMNS = "id, tenant_id, lines, fingerprint, created_at, expires_at, batch_id"
_FIND_QUOTE = f"SELECT {QUOTE_COLUMNS} FROM billing.quotes WHERE id = :id"


def encode_lines(lines: Sequence[QuoteLine]) -> str:
    """A quote's priced lines as stored (JSON)."""
    return json.dumps(
        [
            {
                "model": line.model,
                "count": line.count,
                "unit_price": line.unit_price,
                "duration_seconds": line.duration_seconds,
                "options": [list(option) for option in line.options],
            }
            for line in lines
        ]
    )


def quote_from_row(row: Mapping[str, Any]) -> StoredQuote:
    """A stored quote from its row (`QUOTE_COLUMNS`)."""
    raw = row["lines"]
    lines = json.loads(raw) if isinstance(raw, str) else raw
    return StoredQuote(
        quote_id=row["id"],
        tenant_id=TenantId(row["tenant_id"]),
        lines=tuple(
            QuoteLine(
                model=line["model"],
                count=int(line["count"]),
                unit_price=int(line["unit_price"]),
                duration_seconds=int(line["duration_seconds"]),
                options=tuple((name, value) for name, value in line["options"]),
            )
            for line in lines
        ),
        fingerprint=row["fingerprint"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        batch_id=BatchId(row["batch_id"]) if row["batch_id"] is not None else None,
    )


class SpendControlQueries(TransactionQueries):
    """Budgets, their use, and quotes, inside one transaction."""

    async def caps(self, tenant_id: TenantId) -> dict[BudgetKey, int]:
        rows = await self._conn.execute(text(_CAPS), {"tenant_id": tenant_id})
        return {BudgetKey(BudgetScope(row.scope), row.scope_id): int(row.monthly_credits) for row in rows}

    async def alert_thresholds(self, tenant_id: TenantId) -> AlertThresholds:
        """The tenant's alert thresholds (none set: every alert off)."""
        row = (await self._conn.execute(text(_THRESHOLDS), {"tenant_id": tenant_id})).first()
        if row is None:
            return NO_ALERTS
        low, percent = row.low_balance_credits, row.budget_percent
        return AlertThresholds(None if low is None else int(low), None if percent is None else int(percent))

    async def set_alert_thresholds(self, tenant_id: TenantId, thresholds: AlertThresholds) -> None:
        """Replaces the tenant's alert thresholds."""
        await self._conn.execute(
            text(_SET_THRESHOLDS),
            {
                "tenant_id": tenant_id,
                "low_balance_credits": thresholds.low_balance_credits,
                "budget_percent": thresholds.budget_percent,
            },
        )

    async def use(self, tenant_id: TenantId, period: date) -> dict[BudgetKey, int]:
        """Net spend of every budget of the tenant in the period starting at `period`."""
        rows = await self._conn.execute(text(_USE), {"tenant_id": tenant_id, "period": period})
        return use_by_budget((row.api_key_id, row.project, int(row.spent)) for row in rows)

    async def set_cap(self, tenant_id: TenantId, key: BudgetKey, monthly_credits: int | None) -> None:
        """Stores a cap, or removes it (None)."""
        params = {"tenant_id": tenant_id, "scope": key.scope.value, "scope_id": key.scope_id}
        if monthly_credits is None:
            await self._conn.execute(text(_REMOVE_CAP), params)
        else:
            await self._conn.execute(text(_SET_CAP), {**params, "monthly_credits": monthly_credits})

    async def insert_quote(self, quote: StoredQuote, api_key_id: uuid.UUID | None) -> None:
        await self._conn.execute(
            text(_INSERT_QUOTE),
            {
                "id": quote.quote_id,
                "tenant_id": quote.tenant_id,
                "api_key_id": api_key_id,
                "fingerprint": quote.fingerprint,
                "lines": encode_lines(quote.lines),
                "total": quote.total,
                "created_at": quote.created_at,
                "expires_at": quote.expires_at,
            },
        )

    async def find_quote(self, quote_id: uuid.UUID) -> StoredQuote | None:
        row = (await self._conn.execute(text(_FIND_QUOTE), {"id": quote_id})).mappings().first()
        return quote_from_row(dict(row)) if row is not None else None
