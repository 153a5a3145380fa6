"""The BillingService gRPC servicer: proto in, handler call, proto out. Errors are ServiceErrors,
which the shared interceptor turns into statuses."""

# Method names are fixed by the generated gRPC base class.
# ruff: noqa: N802

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from libs.errors import InvalidArgument, ServiceError
from libs.rpc.errors import status_code_for
from libs.rpc.timestamps import request_instant
from services.billing.domain.api_keys import AdminKeyInfo, ApiKeyInfo
from services.billing.domain.finance import BatchTransferLine, ExportRow
from services.billing.domain.ids import parse_batch_id, parse_task_id, parse_tenant_id
from services.billing.domain.ledger import OutcomeKind, StatementLine, TaskOutcome
from services.billing.domain.margins import ModelMargin
from services.billing.domain.pricing import QuoteLine
from services.billing.domain.settlement import BatchHold
from services.billing.domain.statements import parse_month
from services.billing.domain.video_access import VideoAccess
from services.billing.use_cases.handlers import BillingHandlers
from services.billing.use_cases.reservations import ReservationRequest

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

    async def ListApiKeys(
        self, request: billing_pb2.ListApiKeysRequest, context: Context
    ) -> billing_pb2.ListApiKeysResponse:
        keys = await self._handlers.list_api_keys(parse_tenant_id(request.tenant_id))
        return billing_pb2.ListApiKeysResponse(keys=[_api_key_info(key) for key in keys])

    async def GetApiKey(
        self, request: billing_pb2.GetApiKeyRequest, context: Context
    ) -> billing_pb2.ApiKeyInfo:
        key = await self._handlers.get_api_key(
            parse_tenant_id(request.tenant_id), _parse_key_id(request.key_id)
        )
        return _api_key_info(key)

    async def RevokeApiKey(
        self, request: billing_pb2.RevokeApiKeyRequest, context: Context
    ) -> billing_pb2.ApiKeyInfo:
        tenant_id = parse_tenant_id(request.tenant_id) if request.tenant_id else None
        key = await self._handlers.revoke_api_key(tenant_id, _parse_key_id(request.key_id))
        return _api_key_info(key)

    async def CreateAdminKey(
        self, request: billing_pb2.CreateAdminKeyRequest, context: Context
    ) -> billing_pb2.CreateAdminKeyResponse:
        issued, role = await self._handlers.create_admin_key(request.role, request.name)
        return billing_pb2.CreateAdminKeyResponse(
            api_key=issued.api_key, key_id=str(issued.key_id), role=role.value
        )

    async def AuthenticateAdminKey(
        self, request: billing_pb2.AuthenticateAdminKeyRequest, context: Context
    ) -> billing_pb2.AuthenticateAdminKeyResponse:
        key = await self._handlers.authenticate_admin_key(request.api_key)
        return billing_pb2.AuthenticateAdminKeyResponse(key_id=str(key.key_id), role=key.role.value)

    async def RevokeAdminKey(
        self, request: billing_pb2.RevokeAdminKeyRequest, context: Context
    ) -> billing_pb2.AdminKeyInfo:
        return _admin_key_info(await self._handlers.revoke_admin_key(_parse_key_id(request.key_id)))

    async def ListAdminKeys(
        self, request: billing_pb2.ListAdminKeysRequest, context: Context
    ) -> billing_pb2.ListAdminKeysResponse:
        keys = await self._handlers.list_admin_keys()
        return billing_pb2.ListAdminKeysResponse(keys=[_admin_key_info(key) for key in keys])

    async def RecordVideoAccess(
        self, request: billing_pb2.VideoAccess, context: Context
    ) -> billing_pb2.RecordVideoAccessResponse:
        occurred_at = (
            request.occurred_at.ToDatetime(tzinfo=UTC)
            if request.HasField("occurred_at")
            else datetime.now(UTC)
        )
        access_id = await self._handlers.record_video_access(
            VideoAccess(
                tenant_id=request.tenant_id,
                key_id=request.key_id,
                client_address=request.client_address,
                batch_id=request.batch_id,
                task_id=request.task_id,
                mode=request.mode,
                via=request.via,
                result=request.result,
                occurred_at=occurred_at,
            )
        )
        return billing_pb2.RecordVideoAccessResponse(access_id=str(access_id))

    async def ListVideoAccess(
        self, request: billing_pb2.ListVideoAccessRequest, context: Context
    ) -> billing_pb2.ListVideoAccessResponse:
        entries, next_cursor = await self._handlers.list_video_access(
            request.tenant_id, request.batch_id, request.cursor, request.limit
        )
        return billing_pb2.ListVideoAccessResponse(
            entries=[_video_access(entry) for entry in entries], next_cursor=next_cursor
        )

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
                    credits_per_second=price.credits_per_second or 0,
                    min_seconds=price.min_seconds if price.per_second else 0,
                    max_seconds=price.max_seconds if price.per_second else 0,
                    default_seconds=price.default_seconds if price.per_second else 0,
                )
                for price in self._handlers.price_list()
            ]
        )

    async def Quote(self, request: billing_pb2.QuoteRequest, context: Context) -> billing_pb2.QuoteResponse:
        tenant_id = parse_tenant_id(request.tenant_id) if request.tenant_id else None
        priced = await self._handlers.quote(tenant_id, _lines(request.lines))
        return billing_pb2.QuoteResponse(
            lines=[
                billing_pb2.QuoteLine(
                    model=line.model,
                    count=line.count,
                    unit_price=line.unit_price,
                    duration_seconds=line.duration_seconds,
                )
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

    async def ReserveMany(
        self, request: billing_pb2.ReserveManyRequest, context: Context
    ) -> billing_pb2.ReserveManyResponse:
        asked: list[ReservationRequest] = []
        malformed: dict[int, ServiceError] = {}
        for index, item in enumerate(request.reservations):
            try:
                asked.append(
                    ReservationRequest(
                        parse_tenant_id(item.tenant_id),
                        parse_batch_id(item.batch_id),
                        tuple(_lines(item.lines)),
                    )
                )
            except ServiceError as refused:
                malformed[index] = refused
        decided = iter(await self._handlers.reserve_many(asked))
        response = billing_pb2.ReserveManyResponse()
        for index in range(len(request.reservations)):
            outcome = malformed.get(index) or next(decided)
            answer = response.outcomes.add()
            if isinstance(outcome, ServiceError):
                answer.refused.CopyFrom(_refusal(outcome))
            else:
                answer.reserved.CopyFrom(
                    billing_pb2.ReserveResponse(
                        frozen_credits=outcome.frozen_credits,
                        available_before=outcome.available_before,
                        available_after=outcome.available_after,
                        replayed=outcome.replayed,
                    )
                )
        return response

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
            unit_price=request.unit_price,
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
            credit_value_usd_micros=self._handlers.credit_value_usd_micros,
        )

    async def ListPacks(
        self, request: billing_pb2.ListPacksRequest, context: Context
    ) -> billing_pb2.ListPacksResponse:
        credit_value = self._handlers.credit_value_usd_micros
        return billing_pb2.ListPacksResponse(
            packs=[
                billing_pb2.CreditPack(
                    pack_id=pack.pack_id,
                    name=pack.name,
                    price_usd_cents=pack.price_usd_cents,
                    credits=pack.credits,
                    bonus_basis_points=pack.bonus_basis_points(credit_value),
                )
                for pack in self._handlers.packs()
            ],
            credit_value_usd_micros=credit_value,
        )

    async def HandleStripeEvent(
        self, request: billing_pb2.HandleStripeEventRequest, context: Context
    ) -> billing_pb2.HandleStripeEventResponse:
        result = await self._handlers.handle_stripe_event(request.payload, request.signature)
        return billing_pb2.HandleStripeEventResponse(
            event_id=result.event_id,
            event_type=result.event_type,
            outcome=result.outcome.value,
            tenant_id=str(result.tenant_id) if result.tenant_id else "",
            credits=result.credits,
        )

    async def RecordPayment(
        self, request: billing_pb2.RecordPaymentRequest, context: Context
    ) -> billing_pb2.RecordPaymentResponse:
        result = await self._handlers.record_invoice_payment(
            parse_tenant_id(request.tenant_id),
            request.reference,
            request.pack_id,
            request.credits,
            request.amount_usd_cents,
        )
        return billing_pb2.RecordPaymentResponse(
            balance=result.balance, credits=result.credits, replayed=result.replayed
        )

    async def GetStatement(
        self, request: billing_pb2.GetStatementRequest, context: Context
    ) -> billing_pb2.Statement:
        statement = await self._handlers.statement(
            parse_tenant_id(request.tenant_id), parse_month(request.month)
        )
        return billing_pb2.Statement(
            month=statement.month.label,
            opening_balance=statement.opening_balance,
            purchases=statement.purchases,
            grants=statement.grants,
            spent=statement.spent,
            refunded=statement.refunded,
            released=statement.released,
            closing_balance=statement.closing_balance,
            closing_paid=statement.closing_sources.paid,
            closing_granted=statement.closing_sources.granted,
            models=[
                billing_pb2.ModelUsage(
                    model=usage.model,
                    videos_delivered=usage.videos_delivered,
                    videos_refunded=usage.videos_refunded,
                    credits_captured=usage.credits_captured,
                    credits_refunded=usage.credits_refunded,
                )
                for usage in statement.models
            ],
            period_start=_timestamp(statement.month.start),
            period_end=_timestamp(statement.month.end),
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
            request_instant(request, "created_from"),
            request_instant(request, "created_to"),
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


def _refusal(error: ServiceError) -> billing_pb2.Refusal:
    return billing_pb2.Refusal(
        code=status_code_for(error).name, reason=error.reason, message=error.message, details=error.details
    )


def _lines(lines: Iterable[billing_pb2.QuoteLine]) -> list[QuoteLine]:
    return [
        QuoteLine(
            model=line.model,
            count=line.count,
            unit_price=line.unit_price,
            duration_seconds=line.duration_seconds,
        )
        for line in lines
    ]


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


def _parse_key_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument("key_id must be a UUID", field="key_id") from None


def _optional_timestamp(moment: datetime | None) -> Timestamp | None:
    return None if moment is None else _timestamp(moment)


def _api_key_info(key: ApiKeyInfo) -> billing_pb2.ApiKeyInfo:
    return billing_pb2.ApiKeyInfo(
        key_id=str(key.key_id),
        tenant_id=str(key.tenant_id),
        prefix=key.prefix,
        created_at=_timestamp(key.created_at),
        last_used_at=_optional_timestamp(key.last_used_at),
        revoked_at=_optional_timestamp(key.revoked_at),
    )


def _admin_key_info(key: AdminKeyInfo) -> billing_pb2.AdminKeyInfo:
    return billing_pb2.AdminKeyInfo(
        key_id=str(key.key_id),
        role=key.role.value,
        name=key.name,
        prefix=key.prefix,
        created_at=_timestamp(key.created_at),
        last_used_at=_optional_timestamp(key.last_used_at),
        revoked_at=_optional_timestamp(key.revoked_at),
    )


def _video_access(entry: VideoAccess) -> billing_pb2.VideoAccess:
    return billing_pb2.VideoAccess(
        access_id=str(entry.access_id),
        tenant_id=entry.tenant_id,
        key_id=entry.key_id,
        client_address=entry.client_address,
        batch_id=entry.batch_id,
        task_id=entry.task_id,
        mode=entry.mode,
        via=entry.via,
        result=entry.result,
        occurred_at=_timestamp(entry.occurred_at),
    )


def _model_margin(line: ModelMargin) -> billing_pb2.ModelMargin:
    return billing_pb2.ModelMargin(
        model=line.model,
        videos=line.videos,
        revenue_credits=line.revenue_credits,
        revenue_usd_micros=line.revenue_usd_micros,
        provider_cost_usd_micros=line.provider_cost_usd_micros,
        margin_usd_micros=line.margin_usd_micros,
        margin_basis_points=line.margin_basis_points,
    )
