"""The BillingService gRPC servicer: proto in, handler call, proto out. Errors are ServiceErrors,
which the shared interceptor turns into statuses."""

# Method names are fixed by the generated gRPC base class.
# ruff: noqa: N802

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from services.billing.domain.finance import BatchTransferLine, ExportRow
from services.billing.domain.ids import parse_batch_id, parse_task_id, parse_tenant_id
from services.billing.domain.ledger import OutcomeKind, StatementLine, TaskOutcome
from services.billing.domain.pricing import CREDIT_VALUE_USD_MICROS, QuoteLine
from services.billing.domain.settlement import BatchHold
from services.billing.handlers import BillingHandlers

SERVICE_NAME = billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name

Context = grpc.aio.ServicerContext[object, object]


class BillingServicer(billing_pb2_grpc.BillingServiceServicer):
    """Translates BillingService calls to `BillingHandlers`."""

    def __init__(self, handlers: BillingHandlers) -> None:
        self._handlers = handlers

    async def CreateTenant(
        self, request: billing_pb2.CreateTenantRequest, context: Context
    ) -> billing_pb2.CreateTenantResponse:
        tenant_id = await self._handlers.create_tenant(request.name)
        return billing_pb2.CreateTenantResponse(tenant_id=str(tenant_id))

    async def CreateApiKey(
        self, request: billing_pb2.CreateApiKeyRequest, context: Context
    ) -> billing_pb2.CreateApiKeyResponse:
        issued = await self._handlers.create_api_key(parse_tenant_id(request.tenant_id), request.api_key)
        return billing_pb2.CreateApiKeyResponse(api_key=issued.api_key, key_id=str(issued.key_id))

    async def AuthenticateApiKey(
        self, request: billing_pb2.AuthenticateApiKeyRequest, context: Context
    ) -> billing_pb2.AuthenticateApiKeyResponse:
        key = await self._handlers.authenticate_api_key(request.api_key)
        return billing_pb2.AuthenticateApiKeyResponse(tenant_id=str(key.tenant_id), key_id=str(key.key_id))

    async def TopUp(self, request: billing_pb2.TopUpRequest, context: Context) -> billing_pb2.TopUpResponse:
        result = await self._handlers.top_up(
            parse_tenant_id(request.tenant_id), request.credits, request.reference
        )
        return billing_pb2.TopUpResponse(balance=result.balance, replayed=result.replayed)

    async def GetBalance(
        self, request: billing_pb2.GetBalanceRequest, context: Context
    ) -> billing_pb2.GetBalanceResponse:
        balance = await self._handlers.get_balance(parse_tenant_id(request.tenant_id))
        return billing_pb2.GetBalanceResponse(
            available_credits=balance.available_credits, held_credits=balance.held_credits
        )

    async def GetPricing(
        self, request: billing_pb2.GetPricingRequest, context: Context
    ) -> billing_pb2.GetPricingResponse:
        return billing_pb2.GetPricingResponse(
            models=[
                billing_pb2.ModelPrice(
                    model=price.model,
                    provider=price.provider,
                    credits_per_video=price.credits_per_video,
                    provider_cost_usd_micros=price.provider_cost_usd_micros,
                )
                for price in self._handlers.price_list()
            ]
        )

    async def Quote(self, request: billing_pb2.QuoteRequest, context: Context) -> billing_pb2.QuoteResponse:
        tenant_id = parse_tenant_id(request.tenant_id) if request.tenant_id else None
        priced = await self._handlers.quote(tenant_id, _lines(request.lines))
        return billing_pb2.QuoteResponse(
            lines=[
                billing_pb2.QuoteLine(model=line.model, count=line.count, unit_price=line.unit_price)
                for line in priced.quote.lines
            ],
            total_credits=priced.quote.total,
            available_credits=priced.available_credits,
        )

    async def Reserve(
        self, request: billing_pb2.ReserveRequest, context: Context
    ) -> billing_pb2.ReserveResponse:
        reservation = await self._handlers.reserve(
            parse_tenant_id(request.tenant_id), parse_batch_id(request.batch_id), _lines(request.lines)
        )
        return billing_pb2.ReserveResponse(
            frozen_credits=reservation.frozen_credits,
            available_before=reservation.available_before,
            available_after=reservation.available_after,
            replayed=reservation.replayed,
        )

    async def Capture(
        self, request: billing_pb2.TaskChargeRequest, context: Context
    ) -> billing_pb2.TaskChargeResponse:
        return await self._charge(request, OutcomeKind.CAPTURE)

    async def Refund(
        self, request: billing_pb2.TaskChargeRequest, context: Context
    ) -> billing_pb2.TaskChargeResponse:
        return await self._charge(request, OutcomeKind.REFUND)

    async def _charge(
        self, request: billing_pb2.TaskChargeRequest, kind: OutcomeKind
    ) -> billing_pb2.TaskChargeResponse:
        outcome = TaskOutcome(
            batch_id=parse_batch_id(request.batch_id),
            task_id=parse_task_id(request.task_id),
            model=request.model,
            kind=kind,
        )
        charge = await self._handlers.charge_task(outcome)
        return billing_pb2.TaskChargeResponse(credits=charge.credits, replayed=charge.replayed)

    async def Settle(
        self, request: billing_pb2.SettleRequest, context: Context
    ) -> billing_pb2.BatchSettlement:
        return _settlement(await self._handlers.settle(parse_batch_id(request.batch_id)))

    async def GetBatchSettlement(
        self, request: billing_pb2.GetBatchSettlementRequest, context: Context
    ) -> billing_pb2.BatchSettlement:
        return _settlement(await self._handlers.get_batch_settlement(parse_batch_id(request.batch_id)))

    async def ListLedgerEntries(
        self, request: billing_pb2.ListLedgerEntriesRequest, context: Context
    ) -> billing_pb2.ListLedgerEntriesResponse:
        page = await self._handlers.list_ledger_entries(
            parse_tenant_id(request.tenant_id),
            parse_batch_id(request.batch_id) if request.batch_id else None,
            request.cursor,
            request.limit,
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
                billing_pb2.TenantSummary(
                    tenant_id=str(tenant.tenant_id),
                    name=tenant.name,
                    available_credits=tenant.available_credits,
                    held_credits=tenant.held_credits,
                    created_at=_timestamp(tenant.created_at),
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
        return billing_pb2.BatchLedger(
            batch_id=str(totals.batch_id),
            tenant_id=str(totals.tenant_id),
            upfront_total=totals.upfront_total,
            capture_total=totals.capture_total,
            refund_total=totals.refund_total,
            release_total=totals.release_total,
            net_spent=totals.net_spent,
            held_credits=totals.held_credits,
            settlement_status=totals.settlement_status,
            entries=[_batch_transfer(line) for line in page.transfers],
            next_cursor=page.next_cursor,
        )

    async def EstimateMargin(
        self, request: billing_pb2.EstimateMarginRequest, context: Context
    ) -> billing_pb2.MarginEstimate:
        delivered: Counter[str] = Counter()
        for volume in request.delivered:
            delivered[volume.model] += volume.videos
        estimate = self._handlers.estimate_margin(delivered)
        return billing_pb2.MarginEstimate(
            revenue_credits=estimate.revenue_credits,
            revenue_usd_micros=estimate.revenue_usd_micros,
            provider_cost_usd_micros=estimate.provider_cost_usd_micros,
            margin_usd_micros=estimate.margin_usd_micros,
            margin_basis_points=estimate.margin_basis_points,
            credit_value_usd_micros=CREDIT_VALUE_USD_MICROS,
        )

    async def Reconcile(
        self, request: billing_pb2.ReconcileRequest, context: Context
    ) -> billing_pb2.ReconcileResponse:
        checked_at = datetime.now(UTC)
        report = await self._handlers.reconcile()
        return billing_pb2.ReconcileResponse(
            discrepancies=[
                billing_pb2.Discrepancy(
                    invariant=found.invariant, subject=found.subject, message=found.message
                )
                for found in report.discrepancies
            ],
            accounts_checked=report.accounts_checked,
            batches_checked=report.batches_checked,
            checked_at=_timestamp(checked_at),
        )

    async def ExportLedger(
        self, request: billing_pb2.ExportLedgerRequest, context: Context
    ) -> AsyncIterator[billing_pb2.LedgerExportRow]:
        rows = self._handlers.export_ledger(
            parse_tenant_id(request.tenant_id) if request.tenant_id else None,
            request.created_from.ToDatetime(tzinfo=UTC) if request.HasField("created_from") else None,
            request.created_to.ToDatetime(tzinfo=UTC) if request.HasField("created_to") else None,
        )
        async for row in rows:
            yield _export_row(row)


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _batch_transfer(line: BatchTransferLine) -> billing_pb2.BatchTransfer:
    return billing_pb2.BatchTransfer(
        transfer_id=str(line.transfer_id),
        ref_type=line.ref_type.value,
        ref_id=line.ref_id,
        amount=line.amount,
        from_account=line.from_account.value,
        to_account=line.to_account.value,
        available_delta=line.available_delta,
        created_at=_timestamp(line.created_at),
    )


def _export_row(row: ExportRow) -> billing_pb2.LedgerExportRow:
    message = billing_pb2.LedgerExportRow(
        entry_id=str(row.entry_id),
        transfer_id=str(row.transfer_id),
        created_at=_timestamp(row.created_at),
        tenant_id=str(row.tenant_id) if row.tenant_id else "",
        account=row.account.value,
        batch_id=str(row.batch_id) if row.batch_id else "",
        ref_type=row.ref_type.value,
        ref_id=row.ref_id,
        amount=row.amount,
    )
    if row.balance_after is not None:
        message.balance_after = row.balance_after
    return message


def _lines(lines: Iterable[billing_pb2.QuoteLine]) -> list[QuoteLine]:
    return [QuoteLine(model=line.model, count=line.count, unit_price=line.unit_price) for line in lines]


def _settlement(hold: BatchHold) -> billing_pb2.BatchSettlement:
    return billing_pb2.BatchSettlement(
        batch_id=str(hold.batch_id),
        tenant_id=str(hold.tenant_id),
        item_count=hold.item_count,
        frozen_credits=hold.frozen,
        captured_credits=hold.captured,
        refunded_credits=hold.refunded,
        released_credits=hold.released,
        held_credits=hold.held,
        outcomes_applied=hold.outcomes_applied,
        settlement_status=hold.settlement_status.value,
    )


def _entry(line: StatementLine) -> billing_pb2.LedgerEntry:
    created_at = Timestamp()
    created_at.FromDatetime(line.created_at)
    return billing_pb2.LedgerEntry(
        entry_id=str(line.entry_id),
        ref_type=line.ref_type.value,
        ref_id=line.ref_id,
        batch_id=str(line.batch_id) if line.batch_id else "",
        credits_delta=line.credits_delta,
        balance_after=line.balance_after,
        created_at=created_at,
    )
