"""Billing over gRPC (BillingService.Quote and Reserve), in the terms of the batch domain."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import grpc
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from libs.expiring_cache import ExpiringCache
from libs.rpc.errors import as_service_error, remote_error
from services.batch.domain.batch import BatchId, QuoteLine, Reservation, TenantId
from services.batch.domain.errors import BillingUnavailable, InsufficientCredits, PriceChanged

_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# How long billing's price for a (tenant, model, duration) is reused without asking again.
QUOTE_MEMO_SECONDS = 1.0
QUOTE_MEMO_ENTRIES = 10_000


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
            if decoded.reason == PriceChanged.reason:
                raise PriceChanged(decoded.message, **decoded.details) from None
            raise self._translate(error) from None
        return Reservation(frozen_credits=response.frozen_credits, available_before=response.available_before)

    @staticmethod
    def _translate(error: grpc.aio.AioRpcError) -> Exception:
        if error.code() in _UNREACHABLE:
            return BillingUnavailable("billing is unavailable; retry")
        return as_service_error(remote_error(error))


class MemoizedQuotes:
    """The `Billing` port with billing's quotes remembered for `ttl_seconds` per (tenant, model,
    requested duration): a busy tenant's creates cost one Quote call a second, not one each.

    Safe because Reserve re-prices every line and refuses a quoted price that is not today's
    (stale_quote), so a remembered price can delay a price change by at most `ttl_seconds`, never
    freeze a wrong amount; a stale_quote answer also forgets everything remembered. Only
    successful answers are remembered: an unknown model or tenant is asked about every time.
    """

    def __init__(
        self,
        billing: GrpcBilling,
        *,
        ttl_seconds: float = QUOTE_MEMO_SECONDS,
        max_entries: int = QUOTE_MEMO_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._billing = billing
        # (tenant, model, requested duration) -> (unit price, duration priced).
        self._prices: ExpiringCache[tuple[TenantId, str, int], tuple[int, int]] = ExpiringCache(
            ttl_seconds, max_entries, clock
        )

    async def quote(self, tenant_id: TenantId, lines: Sequence[tuple[str, int, int]]) -> list[QuoteLine]:
        """Billing's quote, from memory when every line's price was learnt in the last `ttl_seconds`."""
        remembered: list[QuoteLine] = []
        for model, count, duration in lines:
            price = self._prices.get((tenant_id, model, duration))
            if price is None:
                break
            remembered.append(
                QuoteLine(model=model, count=count, unit_price=price[0], duration_seconds=price[1])
            )
        else:
            return remembered
        priced = await self._billing.quote(tenant_id, lines)
        for (model, _, duration), line in zip(lines, priced, strict=True):
            self._prices.put((tenant_id, model, duration), (line.unit_price, line.duration_seconds))
        return priced

    async def reserve(
        self, tenant_id: TenantId, batch_id: BatchId, lines: Sequence[QuoteLine]
    ) -> Reservation:
        """`GrpcBilling.reserve`; a PriceChanged refusal forgets every remembered price."""
        try:
            return await self._billing.reserve(tenant_id, batch_id, lines)
        except PriceChanged:
            self._prices.clear()
            raise
