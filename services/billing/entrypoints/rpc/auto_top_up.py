"""gRPC calls of automatic top-up (ADR-135)."""

# Method names are fixed by the generated gRPC base class.
# ruff: noqa: N802

from __future__ import annotations

from reelbatch.proto.billing.v1 import billing_pb2

from services.billing.domain.ids import parse_tenant_id
from services.billing.entrypoints.rpc.base import BillingRpcs, Context, optional_timestamp, timestamp
from services.billing.use_cases.auto_top_up import AutoTopUpStatus


class AutoTopUpRpcs(BillingRpcs):
    """GetAutoTopUp and SetAutoTopUp."""

    async def GetAutoTopUp(
        self, request: billing_pb2.GetAutoTopUpRequest, context: Context
    ) -> billing_pb2.AutoTopUp:
        return auto_top_up_message(await self._handlers.get_auto_top_up(parse_tenant_id(request.tenant_id)))

    async def SetAutoTopUp(
        self, request: billing_pb2.SetAutoTopUpRequest, context: Context
    ) -> billing_pb2.AutoTopUp:
        status = await self._handlers.set_auto_top_up(
            parse_tenant_id(request.tenant_id),
            request.enabled,
            request.threshold_credits,
            request.pack_id,
            request.max_per_month,
        )
        return auto_top_up_message(status)


def auto_top_up_message(status: AutoTopUpStatus) -> billing_pb2.AutoTopUp:
    """The settings and purchases as the message."""
    settings = status.settings
    return billing_pb2.AutoTopUp(
        enabled=settings.enabled,
        threshold_credits=settings.threshold_credits,
        pack_id=settings.pack_id,
        max_per_month=settings.max_per_month,
        payment_method_label=settings.payment_method_label,
        disabled_reason=settings.disabled_reason,
        disabled_at=optional_timestamp(settings.disabled_at),
        bought_this_month=status.bought_this_month,
        recent=[
            billing_pb2.AutoTopUpPurchase(
                purchase_id=str(line.purchase_id),
                status=line.status.value,
                pack_id=line.pack_id,
                credits=line.credits,
                amount_usd_cents=line.amount_usd_cents,
                payment_intent=line.payment_intent,
                failure_code=line.failure_code,
                failure_message=line.failure_message,
                created_at=timestamp(line.created_at),
            )
            for line in status.recent
        ],
    )
