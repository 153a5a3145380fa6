"""The gateway's side of the shared rate limit: leases drawn from billing's buckets (ADR-128).

Two `SharedRateLimiter`s on one fake billing stand for two gateway replicas: the fake applies
billing's rule (libs/token_bucket.py) on a clock the test moves.
"""

from __future__ import annotations

import asyncio
from typing import cast

import grpc
import pytest
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from services.gateway.http.rate_limits import (
    LEASE_SECONDS,
    RateLimitReport,
    SharedBuckets,
    SharedRateLimiter,
    current_rate_limit,
    lease_size,
)
from tests.unit.gateway.gateway_fakes import FakeBilling, transport_error


class Clock:
    """One clock for billing's buckets and both replicas."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def billing(clock: Clock) -> FakeBilling:
    fake = FakeBilling()
    fake.now = clock
    return fake


def replica(billing: FakeBilling, clock: Clock, rate: float, burst: int) -> SharedRateLimiter:
    buckets = SharedBuckets(cast("billing_pb2_grpc.BillingServiceAsyncStub", billing), 1.0)
    return SharedRateLimiter(buckets, rate, burst, clock=clock)


def test_small_limits_draw_one_token_at_a_time_and_busy_keys_lease_more() -> None:
    assert lease_size(0.5, 3) == 1
    assert lease_size(50.0, 200) == 3
    assert lease_size(1000.0, 2000) == 50
    assert lease_size(1000.0, 20) == 2
    assert lease_size(1e9, 10**9) == 1000


async def test_two_replicas_admit_one_burst_between_them(billing: FakeBilling, clock: Clock) -> None:
    first, second = replica(billing, clock, 1.0, 10), replica(billing, clock, 1.0, 10)

    waits = [await (first if n % 2 else second).acquire("key") for n in range(30)]

    assert sum(wait == 0.0 for wait in waits) == 10


async def test_the_shared_limit_holds_under_load_from_both_replicas(
    billing: FakeBilling, clock: Clock
) -> None:
    rate, burst = 200.0, 100
    replicas = [replica(billing, clock, rate, burst) for _ in range(2)]
    admitted = 0
    for _ in range(200):  # 2 s in steps of 10 ms, 15 requests per replica per step
        clock.now += 0.01
        for limiter in replicas:
            waits = await asyncio.gather(*(limiter.acquire("key") for _ in range(15)))
            admitted += sum(wait == 0.0 for wait in waits)

    assert admitted <= burst + rate * 2.0
    # Leases cost at most a few tokens stranded per replica: close to the limit, not far under.
    assert admitted >= burst + rate * 2.0 - 2 * lease_size(rate, burst) * 200 * 0.1


async def test_a_lease_serves_several_requests_with_one_billing_call(
    billing: FakeBilling, clock: Clock
) -> None:
    limiter = replica(billing, clock, 1000.0, 2000)

    waits = await asyncio.gather(*(limiter.acquire("key") for _ in range(50)))

    assert set(waits) == {0.0}
    assert billing.draws == 1


async def test_an_expired_lease_gives_its_tokens_back(billing: FakeBilling, clock: Clock) -> None:
    rate, burst = 100.0, 50  # leases of 5
    first, second = replica(billing, clock, rate, burst), replica(billing, clock, rate, burst)
    await first.acquire("key")  # leases 5, spends 1: 45 left in the bucket
    clock.now += LEASE_SECONDS + 0.001
    await first.acquire("key")  # gives back 4 unspent tokens, then leases 5 again

    bucket = billing.buckets["api_key:key"]
    # 45 + refill over the pause (capped at 50) + 4 given back, capped at 50, minus the new lease.
    assert bucket.tokens == pytest.approx(45.0)
    assert await second.acquire("key") == 0.0


async def test_an_empty_bucket_is_not_asked_again_before_a_token_can_exist(
    billing: FakeBilling, clock: Clock
) -> None:
    limiter = replica(billing, clock, 0.5, 2)
    assert [await limiter.acquire("key") for _ in range(2)] == [0.0, 0.0]
    draws = billing.draws

    waits = [await limiter.acquire("key") for _ in range(5)]

    assert all(wait == pytest.approx(2.0, abs=0.01) for wait in waits)
    assert billing.draws == draws + 1
    clock.now += 2.0
    assert await limiter.acquire("key") == 0.0


async def test_the_headers_report_the_shared_level(billing: FakeBilling, clock: Clock) -> None:
    first, second = replica(billing, clock, 0.001, 4), replica(billing, clock, 0.001, 4)
    await first.acquire("key")
    report = RateLimitReport(limit=4, remaining=4)
    token = current_rate_limit.set(report)
    try:
        await second.acquire("key")
    finally:
        current_rate_limit.reset(token)

    # The other replica's request counts: 4 - 2 left, and 2 tokens to refill at 0.001/s.
    assert report.remaining == 2
    assert report.reset_seconds == 2000


async def test_a_rate_of_zero_disables_the_limit(billing: FakeBilling, clock: Clock) -> None:
    limiter = replica(billing, clock, 0.0, 1)

    assert [await limiter.acquire("key") for _ in range(5)] == [0.0] * 5
    assert billing.draws == 0


class PreviousBilling(FakeBilling):
    """A billing of the previous release: it has no TakeRateTokens."""

    async def TakeRateTokens(
        self, request: billing_pb2.TakeRateTokensRequest, timeout: float | None = None
    ) -> billing_pb2.TakeRateTokensResponse:
        raise transport_error(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")


async def test_a_billing_without_shared_buckets_leaves_the_limit_per_replica(clock: Clock) -> None:
    limiter = replica(PreviousBilling(), clock, 1.0, 3)

    waits = [await limiter.acquire("key") for _ in range(4)]

    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] > 0
