"""gRPC calls of the customer console: usage, receipts, Checkout Sessions and console settings."""

# Method names are fixed by the generated gRPC base class.
# ruff: noqa: N802

from __future__ import annotations

from reelbatch.proto.billing.v1 import billing_pb2

from libs.field_mapping import to_message
from libs.rpc.timestamps import request_instant
from services.billing.domain.console_settings import ConsoleSettings
from services.billing.domain.ids import parse_tenant_id
from services.billing.domain.receipts import PaymentReceipt
from services.billing.entrypoints.rpc.base import BillingRpcs, Context


class ConsoleRpcs(BillingRpcs):
    """GetUsage, ListPayments, GetPayment, CreateCheckoutSession, Get/UpdateConsoleSettings."""

    async def GetUsage(self, request: billing_pb2.GetUsageRequest, context: Context) -> billing_pb2.Usage:
        usage = await self._handlers.usage(
            parse_tenant_id(request.tenant_id),
            request_instant(request, "created_from"),
            request_instant(request, "created_to"),
        )
        return billing_pb2.Usage(
            days=[
                billing_pb2.UsageDay(
                    day=row.day.isoformat(), model=row.model, spent=row.spent, refunded=row.refunded
                )
                for row in usage.days
            ],
            paid_usd_cents=usage.paid.paid_usd_cents,
            purchased_credits=usage.paid.purchased_credits,
            granted_credits=usage.paid.granted_credits,
            average_price_usd_micros=usage.paid.average_price_usd_micros,
        )

    async def ListPayments(
        self, request: billing_pb2.ListPaymentsRequest, context: Context
    ) -> billing_pb2.ListPaymentsResponse:
        found, next_cursor = await self._handlers.list_receipts(
            parse_tenant_id(request.tenant_id), request.cursor, request.limit
        )
        return billing_pb2.ListPaymentsResponse(
            payments=[_receipt(row) for row in found], next_cursor=next_cursor
        )

    async def GetPayment(
        self, request: billing_pb2.GetPaymentRequest, context: Context
    ) -> billing_pb2.PaymentRecord:
        return _receipt(
            await self._handlers.get_receipt(parse_tenant_id(request.tenant_id), request.payment_id)
        )

    async def CreateCheckoutSession(
        self, request: billing_pb2.CreateCheckoutSessionRequest, context: Context
    ) -> billing_pb2.CheckoutSessionCreated:
        opened = await self._handlers.open_checkout(
            parse_tenant_id(request.tenant_id), request.pack_id, request.success_url, request.cancel_url
        )
        return billing_pb2.CheckoutSessionCreated(session_id=opened.session_id, url=opened.url)

    async def GetConsoleSettings(
        self, request: billing_pb2.GetConsoleSettingsRequest, context: Context
    ) -> billing_pb2.ConsoleSettings:
        return _settings(await self._handlers.get_console_settings(parse_tenant_id(request.tenant_id)))

    async def UpdateConsoleSettings(
        self, request: billing_pb2.ConsoleSettings, context: Context
    ) -> billing_pb2.ConsoleSettings:
        stored = await self._handlers.update_console_settings(
            ConsoleSettings(
                parse_tenant_id(request.tenant_id), finance_may_buy_credits=request.finance_may_buy_credits
            )
        )
        return _settings(stored)


def _receipt(row: PaymentReceipt) -> billing_pb2.PaymentRecord:
    return to_message(billing_pb2.PaymentRecord, row)


def _settings(settings: ConsoleSettings) -> billing_pb2.ConsoleSettings:
    return billing_pb2.ConsoleSettings(
        tenant_id=str(settings.tenant_id), finance_may_buy_credits=settings.finance_may_buy_credits
    )
