"""Read-only SQL of statements, finance pages, exports and margins (SQLAlchemy Core)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from libs.field_mapping import from_fields
from libs.ledger_keys import transfer_id as public_transfer_id
from services.billing.adapters.sql.base import TransactionQueries
from services.billing.adapters.tables import (
    account_month_totals,
    accounts,
    batch_holds,
    ledger_entries,
    tenant_month_outcomes,
    tenants,
    transfers,
)
from services.billing.domain.finance import BatchLedgerTotals, BatchTransferLine, ExportRow, TenantSummary
from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.ledger import AccountKind, LedgerFilter, RefType, StatementLine
from services.billing.domain.margins import CapturedVolume
from services.billing.domain.statements import ModelUsage

# Task outcomes recorded before transfers carried their model.
UNRECORDED_MODEL = "unrecorded"


# Many batch ids as one array parameter (not one placeholder per id).
_UUID_ARRAY = ARRAY(UUID(as_uuid=True))

# Hold accounts, summed per tenant in the tenant list.
_hold_accounts = accounts.alias("hold_accounts")


def page_after(query: Select[Any], key: ColumnElement[int], after: int | None, limit: int) -> Select[Any]:
    """One keyset page of `query`: at most `limit` rows in `key` order, those past `after` (None:
    from the start). The tenant list and a batch's transfers page this way, over an ever-growing id."""
    page = query.order_by(key).limit(limit)
    return page if after is None else page.where(key > after)


def _outcomes_within(start: datetime, end: datetime, *figures: ColumnElement[Any]) -> Select[Any]:
    """`figures` of the monthly outcome totals (ADR-152) of the months within [start, end), one row
    per model (the model first): the statements and margins narrow it with their own conditions."""
    month = tenant_month_outcomes.c.month
    return (
        select(tenant_month_outcomes.c.model, *figures)
        .where(month >= start.date(), month < end.date())
        .group_by(tenant_month_outcomes.c.model)
    )


class ReportingQueries(TransactionQueries):
    """What finance and the customer read, inside one transaction."""

    async def statement(
        self, tenant_id: TenantId, only: LedgerFilter, before_entry_id: int | None, limit: int
    ) -> list[StatementLine]:
        """Entries of the tenant's available account matching `only`, newest first, with the model
        of each refund (from its transfer)."""
        available_id = (
            select(accounts.c.id)
            .where(accounts.c.kind == AccountKind.AVAILABLE.value, accounts.c.tenant_id == tenant_id)
            .scalar_subquery()
        )
        query = (
            select(
                ledger_entries.c.id.label("entry_id"),
                ledger_entries.c.ref_type,
                ledger_entries.c.ref_id,
                ledger_entries.c.batch_id,
                ledger_entries.c.amount.label("credits_delta"),
                ledger_entries.c.balance_after,
                ledger_entries.c.created_at,
                transfers.c.model,
                transfers.c.key,
            )
            .join(transfers, transfers.c.id == ledger_entries.c.transfer_id)
            .where(ledger_entries.c.account_id == available_id)
            .order_by(ledger_entries.c.id.desc())
            .limit(limit)
        )
        if only.batch_id is not None:
            query = query.where(ledger_entries.c.batch_id == only.batch_id)
        if only.ref_type is not None:
            query = query.where(ledger_entries.c.ref_type == only.ref_type.value)
        if only.created_from is not None:
            query = query.where(ledger_entries.c.created_at >= only.created_from)
        if only.created_to is not None:
            query = query.where(ledger_entries.c.created_at < only.created_to)
        if before_entry_id is not None:
            query = query.where(ledger_entries.c.id < before_entry_id)
        rows = await self._conn.execute(query)
        return [
            from_fields(
                StatementLine,
                row,
                ref_type=RefType(row.ref_type),
                batch_id=BatchId(row.batch_id) if row.batch_id else None,
                model=row.model if row.ref_type == RefType.BATCH_REFUND.value else None,
                ledger_transfer_id=public_transfer_id(row.key),
            )
            for row in rows
        ]

    # Finance reads.

    async def tenant_summaries(self, after_position: int | None, limit: int) -> list[TenantSummary]:
        """Tenants in creation order (by their available account id) with both balances."""
        # What the tenant's pending holds hold (a settled hold holds nothing, I1), found through
        # the index of pending holds, not among every hold the tenant ever had (ADR-153).
        held = (
            select(func.coalesce(func.sum(_hold_accounts.c.balance), 0))
            .select_from(
                batch_holds.join(_hold_accounts, _hold_accounts.c.id == batch_holds.c.hold_account_id)
            )
            .where(batch_holds.c.tenant_id == tenants.c.id, batch_holds.c.settlement_status == "pending")
            .scalar_subquery()
        )
        query = (
            select(
                accounts.c.id.label("position"),
                tenants.c.id.label("tenant_id"),
                tenants.c.name,
                tenants.c.created_at,
                accounts.c.balance.label("available_credits"),
                held.label("held"),
            )
            .join(accounts, accounts.c.tenant_id == tenants.c.id)
            .where(accounts.c.kind == AccountKind.AVAILABLE.value)
        )
        rows = await self._conn.execute(page_after(query, accounts.c.id, after_position, limit))
        return [from_fields(TenantSummary, row, held_credits=int(row.held)) for row in rows]

    async def batch_ledger_totals(self, batch_id: BatchId) -> BatchLedgerTotals | None:
        """Transfer totals per ref type of a batch (None: billing never reserved it)."""
        hold = (
            await self._conn.execute(
                select(
                    batch_holds.c.tenant_id,
                    batch_holds.c.settlement_status,
                    batch_holds.c.frozen,
                    batch_holds.c.captured,
                    batch_holds.c.refunded,
                    batch_holds.c.released,
                    accounts.c.balance,
                )
                .join(accounts, accounts.c.id == batch_holds.c.hold_account_id)
                .where(batch_holds.c.batch_id == batch_id)
            )
        ).first()
        if hold is None:
            return None
        # The hold's counters are its transfers' totals (I1, checked by reconciliation), kept in the
        # transaction of each movement: read, not summed over the batch's transfers (ADR-153).
        totals = {
            RefType.BATCH_UPFRONT: hold.frozen,
            RefType.BATCH_CAPTURE: hold.captured,
            RefType.BATCH_REFUND: hold.refunded,
            RefType.BATCH_SETTLE: hold.released,
        }
        return BatchLedgerTotals(
            batch_id=batch_id,
            tenant_id=TenantId(hold.tenant_id),
            settlement_status=hold.settlement_status,
            held_credits=hold.balance,
            by_ref_type={ref_type: total for ref_type, total in totals.items() if total},
        )

    async def batch_transfers(
        self, batch_id: BatchId, after_transfer_id: int | None, limit: int
    ) -> list[BatchTransferLine]:
        """A batch's transfers in the order they happened."""
        debit = accounts.alias("debit")
        credit = accounts.alias("credit")
        query = (
            select(
                transfers.c.id,
                transfers.c.ref_type,
                transfers.c.ref_id,
                transfers.c.amount,
                transfers.c.created_at,
                transfers.c.key,
                debit.c.kind.label("from_kind"),
                credit.c.kind.label("to_kind"),
            )
            .join(debit, debit.c.id == transfers.c.debit_account_id)
            .join(credit, credit.c.id == transfers.c.credit_account_id)
            .where(transfers.c.batch_id == batch_id)
        )
        rows = await self._conn.execute(page_after(query, transfers.c.id, after_transfer_id, limit))
        return [
            BatchTransferLine(
                transfer_id=row.id,
                ref_type=RefType(row.ref_type),
                ref_id=row.ref_id,
                amount=row.amount,
                from_account=AccountKind(row.from_kind),
                to_account=AccountKind(row.to_kind),
                created_at=row.created_at,
                ledger_transfer_id=public_transfer_id(row.key),
            )
            for row in rows
        ]

    async def export_rows(
        self,
        tenant_id: TenantId | None,
        created_from: datetime | None,
        created_to: datetime | None,
        after_entry_id: int,
        limit: int,
    ) -> list[ExportRow]:
        """Up to `limit` entries after `after_entry_id` in id order (a tenant: its available account only)."""
        query = (
            select(
                ledger_entries.c.id,
                ledger_entries.c.transfer_id,
                ledger_entries.c.created_at,
                accounts.c.tenant_id,
                accounts.c.kind,
                ledger_entries.c.batch_id,
                ledger_entries.c.ref_type,
                ledger_entries.c.ref_id,
                ledger_entries.c.amount,
                ledger_entries.c.balance_after,
                transfers.c.key,
            )
            .join(accounts, accounts.c.id == ledger_entries.c.account_id)
            .join(transfers, transfers.c.id == ledger_entries.c.transfer_id)
            .where(ledger_entries.c.id > after_entry_id)
            .order_by(ledger_entries.c.id)
            .limit(limit)
        )
        if tenant_id is not None:
            # The account as a value, not a join condition: the planner then reads its entries in id
            # order through (account_id, id) and stops at the page; through the join it read every
            # entry of the account and sorted them (490 ms for a tenant of 47,000, ADR-155).
            available_id = (
                select(accounts.c.id)
                .where(accounts.c.kind == AccountKind.AVAILABLE.value, accounts.c.tenant_id == tenant_id)
                .scalar_subquery()
            )
            query = query.where(ledger_entries.c.account_id == available_id)
        if created_from is not None:
            query = query.where(ledger_entries.c.created_at >= created_from)
        if created_to is not None:
            query = query.where(ledger_entries.c.created_at < created_to)
        rows = await self._conn.execute(query)
        return [
            ExportRow(
                entry_id=row.id,
                transfer_id=row.transfer_id,
                created_at=row.created_at,
                tenant_id=TenantId(row.tenant_id) if row.tenant_id else None,
                account=AccountKind(row.kind),
                batch_id=BatchId(row.batch_id) if row.batch_id else None,
                ref_type=RefType(row.ref_type),
                ref_id=row.ref_id,
                amount=row.amount,
                balance_after=row.balance_after,
                ledger_transfer_id=public_transfer_id(row.key),
            )
            for row in rows
        ]

    async def available_movements(
        self, account_id: int, start: datetime, end: datetime
    ) -> tuple[dict[RefType, int], dict[RefType, int]]:
        """Signed sums per ref type of an account's entries before `start`, and within [start, end)
        (month boundaries: read from the monthly totals, ADR-152, never from the entries)."""
        month = account_month_totals.c.month
        rows = await self._conn.execute(
            select(
                account_month_totals.c.ref_type,
                func.coalesce(func.sum(account_month_totals.c.amount).filter(month < start.date()), 0),
                func.coalesce(func.sum(account_month_totals.c.amount).filter(month >= start.date()), 0),
            )
            .where(account_month_totals.c.account_id == account_id, month < end.date())
            .group_by(account_month_totals.c.ref_type)
        )
        before: dict[RefType, int] = {}
        during: dict[RefType, int] = {}
        for ref_type, sum_before, sum_during in rows:
            if sum_before:
                before[RefType(ref_type)] = int(sum_before)
            if sum_during:
                during[RefType(ref_type)] = int(sum_during)
        return before, during

    async def model_usage(self, tenant_id: TenantId, start: datetime, end: datetime) -> list[ModelUsage]:
        """Task outcomes of the tenant applied within [start, end) (months), per model."""
        captured = tenant_month_outcomes.c.ref_type == RefType.BATCH_CAPTURE.value
        refunded = tenant_month_outcomes.c.ref_type == RefType.BATCH_REFUND.value
        rows = await self._conn.execute(
            _outcomes_within(
                start,
                end,
                func.coalesce(func.sum(tenant_month_outcomes.c.transfers).filter(captured), 0),
                func.coalesce(func.sum(tenant_month_outcomes.c.transfers).filter(refunded), 0),
                func.coalesce(func.sum(tenant_month_outcomes.c.amount).filter(captured), 0),
                func.coalesce(func.sum(tenant_month_outcomes.c.amount).filter(refunded), 0),
            ).where(tenant_month_outcomes.c.tenant_id == tenant_id)
        )
        return [
            ModelUsage(
                model=model or UNRECORDED_MODEL,
                videos_delivered=int(delivered),
                videos_refunded=int(refunds),
                credits_captured=int(captured_credits),
                credits_refunded=int(refunded_credits),
            )
            for model, delivered, refunds, captured_credits, refunded_credits in rows
        ]

    async def captured_volumes(self, start: datetime, end: datetime) -> list[CapturedVolume]:
        """Captures within [start, end) (months) per model, with the provider cost frozen with their
        batch for those whose outcome reported no provider spend (the rest is
        `ProviderSpendQueries`'): read from the monthly outcome totals (ADR-152, ADR-170), the
        frozen cost of all captures less that of the captures that reported a spend."""
        outcomes = tenant_month_outcomes.c
        rows = await self._conn.execute(
            _outcomes_within(
                start,
                end,
                func.sum(outcomes.transfers),
                func.sum(outcomes.amount),
                func.sum(outcomes.provider_cost_usd_micros - outcomes.reported_frozen_cost_usd_micros),
            ).where(outcomes.ref_type == RefType.BATCH_CAPTURE.value)
        )
        return [
            CapturedVolume(
                model=model or UNRECORDED_MODEL,
                videos=int(videos),
                credits=int(credits),
                provider_cost_usd_micros=int(cost),
            )
            for model, videos, credits, cost in rows
        ]

    async def existing_holds(self, batch_ids: Collection[BatchId]) -> set[BatchId]:
        """Those of `batch_ids` that have a hold (one array parameter: there may be many)."""
        rows = await self._conn.execute(
            select(batch_holds.c.batch_id).where(
                batch_holds.c.batch_id == any_(bindparam("batch_ids", list(batch_ids), type_=_UUID_ARRAY))
            )
        )
        return {BatchId(row.batch_id) for row in rows}
