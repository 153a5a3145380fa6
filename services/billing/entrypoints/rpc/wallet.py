"""gRPC calls of the wallet: top-ups and balances."""

# Method names are fixed by the generated gRPC base class.
# ruff: noqa: N802

from __future__ import annotations

from reelbatch.proto.billing.v1 import billing_pb2

from services.billing.domain.ids import parse_tenant_id
from services.billing.entrypoints.rpc.base import BillingRpcs, Context


class WalletRpcs(BillingRpcs):
    """TopUp and GetBalance."""

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
            available_credits=balance.available_credits,
            held_credits=balance.held_credits,
            debt_credits=balance.debt_credits,
        )
