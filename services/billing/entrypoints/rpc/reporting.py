"""gRPC calls of ledger pages, statements, finance pages, margins, reconciliation and exports."""

# Method names are fixed by the generated gRPC base class.
# ruff: noqa: N802

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from reelbatch.proto.billing.v1 import billing_pb2

from libs.field_mapping import from_fields, to_message
from libs.rpc.timestamps import request_instant
from services.billing.domain.finance import BatchTransferLine, ExportRow
from services.billing.domain.ids import parse_batch_id, parse_tenant_id
from services.billing.domain.ledger import LedgerFilter, StatementLine, parse_ledger_ref_type
from services.billing.domain.margins import ModelMargin
from services.billing.domain.statements import parse_month
from services.billing.entrypoints.rpc.base import BillingRpcs, Context, timestamp
from services.billing.entrypoints.rpc.spend_control import budget_status


class ReportingRpcs(BillingRpcs):
    """The read-only RPCs finance and the customer use."""

    async def ListLedgerEntries(
        self, request: billing_pb2.ListLedgerEntriesRequest, context: Context
    ) -> billing_pb2.ListLedgerEntriesResponse:
        page = await self._handlers.list_ledger_entries(
            parse_tenant_id(request.tenant_id),
            parse_batch_id(request.batch_id) if request.batch_id else None,
            request.cursor,
            request.limit,
            LedgerFilter(
                ref_type=parse_ledger_ref_type(request.ref_type),
                created_from=request_instant(request, "created_from"),
                created_to=request_instant(request, "created_to"),
            ),
        )
        return billing_pb2.ListLedgerEntriesResponse(
            entries=[_entry(line) for line in page.lines], next_cursor=page.next_cursor
        )

    async def ListTenants(
        self, request: billing_pb2.ListTenantsRequest, context: Context
    ) -> billing_pb2.ListTenantsResponse:
        found, next_cursor = await self._handlers.list_tenants(request.cursor, request.limit)
        return billing_pb2.ListTenantsResponse(
            tenants=[
                from_fields(
                    billing_pb2.TenantSummary,
                    tenant,
                    tenant_id=str(tenant.tenant_id),
                    created_at=timestamp(tenant.created_at),
                )
                for tenant in found
            ],
            next_cursor=next_cursor,
        )

    async def GetBatchLedger(
        self, request: billing_pb2.GetBatchLedgerRequest, context: Context
    ) -> billing_pb2.BatchLedger:
        page = await self._handlers.batch_ledger(
            parse_batch_id(request.batch_id), request.cursor, request.limit
        )
        totals = page.totals
        return from_fields(
            billing_pb2.BatchLedger,
            totals,
            batch_id=str(totals.batch_id),
            tenant_id=str(totals.tenant_id),
            entries=[_batch_transfer(line) for line in page.transfers],
            next_cursor=page.next_cursor,
        )

    async def EstimateMargin(
        self, request: billing_pb2.EstimateMarginRequest, context: Context
    ) -> billing_pb2.MarginEstimate:
        if request.batch_id:
            margin = await self._handlers.batch_margin(parse_batch_id(request.batch_id))
            return from_fields(
                billing_pb2.MarginEstimate,
                margin,
                credit_value_usd_micros=self._handlers.credit_value_usd_micros,
            )
        delivered: Counter[str] = Counter()
        for volume in request.delivered:
            delivered[volume.model] += volume.videos
        estimate = self._handlers.estimate_margin(delivered)
        return from_fields(
            billing_pb2.MarginEstimate,
            estimate,
            credit_value_usd_micros=self._handlers.credit_value_usd_micros,
        )

    async def GetStatement(
        self, request: billing_pb2.GetStatementRequest, context: Context
    ) -> billing_pb2.Statement:
        tenant_id, month = parse_tenant_id(request.tenant_id), parse_month(request.month)
        statement = await self._handlers.statement(tenant_id, month)
        budgets = await self._handlers.month_budgets(tenant_id, month.start)
        return from_fields(
            billing_pb2.Statement,
            statement,
            month=statement.month.label,
            closing_paid=statement.closing_sources.paid,
            closing_granted=statement.closing_sources.granted,
            models=[from_fields(billing_pb2.ModelUsage, usage) for usage in statement.models],
            period_start=timestamp(statement.month.start),
            period_end=timestamp(statement.month.end),
            budgets=[budget_status(status) for status in budgets],
        )

    async def GetMonthlyMargins(
        self, request: billing_pb2.GetMonthlyMarginsRequest, context: Context
    ) -> billing_pb2.MonthlyMargins:
        month = parse_month(request.month)
        report = await self._handlers.monthly_margins(month)
        return billing_pb2.MonthlyMargins(
            month=month.label,
            credit_value_usd_micros=self._handlers.credit_value_usd_micros,
            models=[_model_margin(line) for line in report.models],
            total=_model_margin(report.total),
        )

    async def Reconcile(
        self, request: billing_pb2.ReconcileRequest, context: Context
    ) -> billing_pb2.ReconcileResponse:
        checked_at = datetime.now(UTC)
        report = await self._handlers.reconcile()
        return to_message(
            billing_pb2.ReconcileResponse,
            report,
            discrepancies=[from_fields(billing_pb2.Discrepancy, found) for found in report.discrepancies],
            checked_at=timestamp(checked_at),
        )

    async def ExportLedger(
        self, request: billing_pb2.ExportLedgerRequest, context: Context
    ) -> AsyncIterator[billing_pb2.LedgerExportRow]:
        async for page in self._export(request):
            for row in page:
                yield _export_row(row)

    async def ExportLedgerPages(
        self, request: billing_pb2.ExportLedgerRequest, context: Context
    ) -> AsyncIterator[billing_pb2.LedgerExportPage]:
        async for page in self._export(request):
            yield billing_pb2.LedgerExportPage(rows=[_export_row(row) for row in page])

    def _export(self, request: billing_pb2.ExportLedgerRequest) -> AsyncIterator[list[ExportRow]]:
        return self._handlers.export_ledger(
            parse_tenant_id(request.tenant_id) if request.tenant_id else None,
            request_instant(request, "created_from"),
            request_instant(request, "created_to"),
        )


def _batch_transfer(line: BatchTransferLine) -> billing_pb2.BatchTransfer:
    return to_message(billing_pb2.BatchTransfer, line)


def _export_row(row: ExportRow) -> billing_pb2.LedgerExportRow:
    message = billing_pb2.LedgerExportRow(
        entry_id=str(row.entry_id),
        transfer_id=str(row.transfer_id),
        created_at=timestamp(row.created_at),
        tenant_id=str(row.tenant_id) if row.tenant_id else "",
        account=row.account.value,
        batch_id=str(row.batch_id) if row.batch_id else "",
        ref_type=row.ref_type.value,
        ref_id=row.ref_id,
        amount=row.amount,
        ledger_transfer_id=row.ledger_transfer_id,
    )
    if row.balance_after is not None:
        message.balance_after = row.balance_after
    return message


def _entry(line: StatementLine) -> billing_pb2.LedgerEntry:
    return to_message(billing_pb2.LedgerEntry, line)


def _model_margin(line: ModelMargin) -> billing_pb2.ModelMargin:
    return from_fields(billing_pb2.ModelMargin, line)
