"""Billing over gRPC (BillingService.Quote and Reserve), in the terms of the batch domain."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from libs.rpc.errors import as_service_error, remote_error
from services.batch.domain.batch import BatchId, QuoteLine, Reservation, TenantId
from services.batch.domain.errors import BillingUnavailable, InsufficientCredits

_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _int_detail(details: dict[str, str], key: str, default: int) -> int:
    try:
        return int(details[key])
    except (KeyError, ValueError):
        return default


class GrpcBilling:
    """The `Billing` port on a gRPC channel; refusals come back as domain errors."""

    def __init__(self, channel: grpc.aio.Channel, *, deadline_seconds: float) -> None:
        self._stub = billing_pb2_grpc.BillingServiceStub(channel)
        self._deadline = deadline_seconds

    async def quote(self, tenant_id: TenantId, lines: Sequence[tuple[str, int, int]]) -> list[QuoteLine]:
        """Prices the lines; an unknown model comes back as billing's INVALID_ARGUMENT, unchanged."""
        request = billing_pb2.QuoteRequest(
            tenant_id=str(tenant_id),
            lines=[
                billing_pb2.QuoteLine(model=model, count=count, duration_seconds=duration)
                for model, count, duration in lines
            ],
        )
        try:
            response = await self._stub.Quote(request, timeout=self._deadline)
        except grpc.aio.AioRpcError as error:
            raise self._translate(error) from None
        return [
            QuoteLine(
                model=line.model,
                count=line.count,
                unit_price=line.unit_price,
                duration_seconds=line.duration_seconds,
            )
            for line in response.lines
        ]

    async def reserve(
        self, tenant_id: TenantId, batch_id: BatchId, lines: Sequence[QuoteLine]
    ) -> Reservation:
        """Freezes the batch's price; idempotent on batch_id, so a repeated call is safe."""
        request = billing_pb2.ReserveRequest(
            tenant_id=str(tenant_id),
            batch_id=str(batch_id),
            lines=[
                billing_pb2.QuoteLine(
                    model=line.model,
                    count=line.count,
                    unit_price=line.unit_price,
                    duration_seconds=line.duration_seconds,
                )
                for line in lines
            ],
        )
        try:
            response = await self._stub.Reserve(request, timeout=self._deadline)
        except grpc.aio.AioRpcError as error:
            decoded = remote_error(error)
            if decoded.reason == InsufficientCredits.reason:
                required = sum(line.count * line.unit_price for line in lines)
                raise InsufficientCredits(
                    _int_detail(decoded.details, "required_credits", required),
                    _int_detail(decoded.details, "available_credits", 0),
                ) from None
            raise self._translate(error) from None
        return Reservation(frozen_credits=response.frozen_credits, available_before=response.available_before)

    @staticmethod
    def _translate(error: grpc.aio.AioRpcError) -> Exception:
        if error.code() in _UNREACHABLE:
            return BillingUnavailable("billing is unavailable; retry")
        return as_service_error(remote_error(error))
