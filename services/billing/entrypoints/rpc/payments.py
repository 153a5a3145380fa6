"""gRPC calls of packs and payments (offline invoices, Stripe webhooks)."""

# Method names are fixed by the generated gRPC base class.
# ruff: noqa: N802

from __future__ import annotations

from reelbatch.proto.billing.v1 import billing_pb2

from libs.field_mapping import from_fields, to_message
from services.billing.domain.ids import parse_tenant_id
from services.billing.entrypoints.rpc.base import BillingRpcs, Context


class PaymentRpcs(BillingRpcs):
    """ListPacks, HandleStripeEvent and RecordPayment."""

    async def ListPacks(
        self, request: billing_pb2.ListPacksRequest, context: Context
    ) -> billing_pb2.ListPacksResponse:
        credit_value = self._handlers.credit_value_usd_micros
        return billing_pb2.ListPacksResponse(
            packs=[
                from_fields(
                    billing_pb2.CreditPack, pack, bonus_basis_points=pack.bonus_basis_points(credit_value)
                )
                for pack in self._handlers.packs()
            ],
            credit_value_usd_micros=credit_value,
        )

    async def HandleStripeEvent(
        self, request: billing_pb2.HandleStripeEventRequest, context: Context
    ) -> billing_pb2.HandleStripeEventResponse:
        result = await self._handlers.handle_stripe_event(request.payload, request.signature)
        return to_message(billing_pb2.HandleStripeEventResponse, result)

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
        return from_fields(billing_pb2.RecordPaymentResponse, result)
