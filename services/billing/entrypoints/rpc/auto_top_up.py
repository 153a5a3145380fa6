"""gRPC calls of automatic top-up (ADR-135)."""

# Method names are fixed by the generated gRPC base class.
# ruff: noqa: N802

from __future__ import annotations

from reelbatch.proto.billing.v1 import billing_pb2

from libs.field_mapping import to_message
from services.billing.domain.ids import parse_tenant_id
from services.billing.entrypoints.rpc.base import BillingRpcs, Context
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
    return to_message(
        billing_pb2.AutoTopUp,
        status.settings,
        bought_this_month=status.bought_this_month,
        recent=[to_message(billing_pb2.AutoTopUpPurchase, line) for line in status.recent],
    )
