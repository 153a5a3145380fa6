"""gRPC calls of task outcomes and settlement."""

# Method names are fixed by the generated gRPC base class.
# ruff: noqa: N802

from __future__ import annotations

from reelbatch.proto.billing.v1 import billing_pb2

from services.billing.domain.ids import parse_batch_id, parse_task_id
from services.billing.domain.ledger import OutcomeKind, TaskOutcome
from services.billing.domain.settlement import BatchHold
from services.billing.entrypoints.rpc.base import BillingRpcs, Context


class SettlementRpcs(BillingRpcs):
    """Capture, Refund, Settle and GetBatchSettlement."""

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


def _settlement(hold: BatchHold) -> billing_pb2.BatchSettlement:
    return billing_pb2.BatchSettlement(
        **hold.credit_totals(),
        item_count=hold.item_count,
        held_credits=hold.held,
        outcomes_applied=hold.outcomes_applied,
    )
