"""MemoizedQuotes: billing's prices reused for a moment per tenant, forgotten on a stale quote."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import cast

import pytest

from libs.errors import InvalidArgument
from services.batch.adapters.billing_client import GrpcBilling, MemoizedQuotes
from services.batch.domain.batch import (
    BatchId,
    QuoteLine,
    RequestedLine,
    Reservation,
    ReservationTerms,
    TenantId,
)
from services.batch.domain.errors import PriceChanged

TENANT = TenantId(uuid.uuid4())
OTHER = TenantId(uuid.uuid4())


class CountingBilling:
    """Prices sora-2 at `price` (default length 8 s, per video); refuses unknown models."""

    def __init__(self) -> None:
        self.price = 10
        self.quotes = 0
        self.stale = False

    async def quote(self, tenant_id: TenantId, lines: Sequence[RequestedLine]) -> list[QuoteLine]:
        self.quotes += 1
        if any(line.model != "sora-2" for line in lines):
            raise InvalidArgument("unknown model", field="model")
        return [QuoteLine(line.model, line.count, self.price, line.duration_seconds or 8) for line in lines]

    async def reserve(
        self, tenant_id: TenantId, batch_id: BatchId, lines: Sequence[QuoteLine], terms: ReservationTerms
    ) -> Reservation:
        if self.stale:
            raise PriceChanged("the price changed")
        return Reservation(
            frozen_credits=sum(line.count * line.unit_price for line in lines), available_before=0
        )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def memo(billing: CountingBilling, clock: Clock) -> MemoizedQuotes:
    return MemoizedQuotes(cast(GrpcBilling, billing), ttl_seconds=1.0, clock=clock)


async def test_a_tenants_prices_are_asked_once_per_ttl_whatever_the_counts() -> None:
    billing, clock = CountingBilling(), Clock()
    quotes = memo(billing, clock)

    first = await quotes.quote(TENANT, [RequestedLine("sora-2", 10, 0)])
    clock.now += 0.9
    again = await quotes.quote(TENANT, [RequestedLine("sora-2", 3, 0)])

    assert first == [QuoteLine("sora-2", 10, 10, 8)]
    assert again == [QuoteLine("sora-2", 3, 10, 8)]
    assert billing.quotes == 1
    clock.now += 0.2
    billing.price = 12
    assert await quotes.quote(TENANT, [RequestedLine("sora-2", 3, 0)]) == [QuoteLine("sora-2", 3, 12, 8)]
    assert billing.quotes == 2


async def test_another_tenant_another_duration_or_an_unknown_model_asks_billing() -> None:
    billing, clock = CountingBilling(), Clock()
    quotes = memo(billing, clock)
    await quotes.quote(TENANT, [RequestedLine("sora-2", 1, 0)])

    await quotes.quote(OTHER, [RequestedLine("sora-2", 1, 0)])
    await quotes.quote(TENANT, [RequestedLine("sora-2", 1, 0), RequestedLine("sora-2", 1, 12)])
    for _ in range(2):
        with pytest.raises(InvalidArgument):
            await quotes.quote(TENANT, [RequestedLine("veo-9", 1, 0)])

    assert billing.quotes == 5


async def test_a_stale_quote_refusal_forgets_the_remembered_prices() -> None:
    billing, clock = CountingBilling(), Clock()
    quotes = memo(billing, clock)
    lines = await quotes.quote(TENANT, [RequestedLine("sora-2", 2, 0)])
    billing.stale = True

    with pytest.raises(PriceChanged):
        await quotes.reserve(TENANT, BatchId(uuid.uuid4()), lines)
    await quotes.quote(TENANT, [RequestedLine("sora-2", 2, 0)])

    assert billing.quotes == 2
