"""Read-only SQL of the customer console's usage page and receipts (SQLAlchemy Core).

Every query is bounded by the tenant and served by an index: transfers by (tenant_id, ref_type,
created_at) (migration 0007), payments by tenant_id.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Date, Row, case, cast, func, literal, select

from libs.field_mapping import to_record
from services.billing.adapters.sql.base import TransactionQueries
from services.billing.adapters.sql.reporting import UNRECORDED_MODEL
from services.billing.adapters.tables import batch_hold_lines, payments, transfers
from services.billing.domain.ids import TenantId
from services.billing.domain.ledger import RefType
from services.billing.domain.receipts import PaymentReceipt
from services.billing.domain.usage import RELEASED_MODEL, PaidCredits


def _utc_day(column: ColumnElement[datetime]) -> ColumnElement[date]:
    """A timestamptz column's UTC calendar day."""
    return cast(func.timezone("UTC", column), Date)


class UsageQueries(TransactionQueries):
    """A tenant's spend, refunds, payments and grants, inside one transaction."""

    async def spent_by_day(
        self, tenant_id: TenantId, start: datetime, end: datetime
    ) -> dict[tuple[date, str], int]:
        """Credits frozen per (UTC day, model): each freeze split by its batch's lines."""
        day = _utc_day(transfers.c.created_at).label("day")
        rows = await self._conn.execute(
            select(
                day,
                batch_hold_lines.c.model,
                func.sum(batch_hold_lines.c.unit_price * batch_hold_lines.c.count),
            )
            .select_from(
                transfers.join(batch_hold_lines, batch_hold_lines.c.batch_id == transfers.c.batch_id)
            )
            .where(
                transfers.c.tenant_id == tenant_id,
                transfers.c.ref_type == RefType.BATCH_UPFRONT.value,
                transfers.c.created_at >= start,
                transfers.c.created_at < end,
            )
            .group_by(day, batch_hold_lines.c.model)
        )
        return {(row[0], row[1]): int(row[2]) for row in rows}

    async def refunded_by_day(
        self, tenant_id: TenantId, start: datetime, end: datetime
    ) -> dict[tuple[date, str], int]:
        """Credits given back per (UTC day, model): refunds by their task's model, releases apart."""
        day = _utc_day(transfers.c.created_at).label("day")
        model = case(
            (transfers.c.ref_type == RefType.BATCH_SETTLE.value, literal(RELEASED_MODEL)),
            else_=func.coalesce(transfers.c.model, UNRECORDED_MODEL),
        ).label("model")
        rows = await self._conn.execute(
            select(day, model, func.sum(transfers.c.amount))
            .where(
                transfers.c.tenant_id == tenant_id,
                transfers.c.ref_type.in_([RefType.BATCH_REFUND.value, RefType.BATCH_SETTLE.value]),
                transfers.c.created_at >= start,
                transfers.c.created_at < end,
            )
            .group_by(day, model)
        )
        return {(row[0], row[1]): int(row[2]) for row in rows}

    async def paid_credits(self, tenant_id: TenantId) -> PaidCredits:
        """Everything the tenant paid and received (payments, and grants: its top-up transfers)."""
        paid = (
            await self._conn.execute(
                select(
                    func.coalesce(func.sum(payments.c.amount_usd_cents), 0),
                    func.coalesce(func.sum(payments.c.credits), 0),
                ).where(payments.c.tenant_id == tenant_id)
            )
        ).one()
        granted = await self._conn.scalar(
            select(func.coalesce(func.sum(transfers.c.amount), 0)).where(
                transfers.c.tenant_id == tenant_id, transfers.c.ref_type == RefType.TOPUP.value
            )
        )
        return PaidCredits(
            paid_usd_cents=int(paid[0]), purchased_credits=int(paid[1]), granted_credits=int(granted or 0)
        )

    async def receipts(self, tenant_id: TenantId, before_id: int | None, limit: int) -> list[PaymentReceipt]:
        """The tenant's payments, newest first, those before `before_id` (None: from the newest)."""
        query = (
            select(payments)
            .where(payments.c.tenant_id == tenant_id)
            .order_by(payments.c.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            query = query.where(payments.c.id < before_id)
        return [_receipt(row) for row in await self._conn.execute(query)]

    async def receipt(self, tenant_id: TenantId, payment_id: int) -> PaymentReceipt | None:
        """One payment of the tenant (None: no such payment of this tenant)."""
        row = (
            await self._conn.execute(
                select(payments).where(payments.c.id == payment_id, payments.c.tenant_id == tenant_id)
            )
        ).first()
        return _receipt(row) if row is not None else None


def _receipt(row: Row[Any]) -> PaymentReceipt:
    return to_record(PaymentReceipt, row, payment_id=row.id)
