"""Rate limits of the gateway: requests per API key and failed sign-ins per client address.

Every limit holds across gateway replicas (issue 27): the request rate and the failed sign-ins
are token buckets billing keeps in PostgreSQL (`SharedBuckets`, ADR-128); the unfinished batches
per tenant are the batch service's to refuse, in the create's transaction (ADR-138). A replica
remembers only its current lease of each key's tokens, bounded in memory (the least recently seen
keys are dropped first, which only gives their leased tokens up).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

import grpc
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from libs.token_bucket import BucketState, draw, seconds_until_full, seconds_until_token
from services.gateway.http.errors import ApiError

MAX_TRACKED_ENTRIES = 100_000


def rate_limited(message: str, retry_after_seconds: float) -> ApiError:
    """The 429 `rate_limited` answer, with Retry-After in whole seconds (at least 1)."""
    seconds = max(1, math.ceil(retry_after_seconds))
    return ApiError(
        429,
        "rate_limited",
        message,
        extra={"retry_after_seconds": seconds},
        headers={"Retry-After": str(seconds)},
    )


@dataclass
class RateLimitReport:
    """What a response says of its caller's quota (IETF draft `RateLimit-*` headers): the burst,
    the requests left now, and the seconds until the bucket is full again. A request that no key
    limits (an unauthenticated one, an operator's) reports the whole quota."""

    limit: int
    remaining: int
    reset_seconds: int = 0

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The three headers, as ASGI header pairs."""
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_seconds).encode()),
        ]


# The report of the request being answered: set by `RequestContextMiddleware`, filled in by the
# key's rate check (a mutable report, so a dependency's copy of the context still reaches it).
current_rate_limit: ContextVar[RateLimitReport | None] = ContextVar("current_rate_limit", default=None)


@dataclass(frozen=True)
class BucketLevel:
    """A draw's answer: the tokens granted and what the shared bucket holds after it."""

    granted: int
    tokens_left: float


class SharedBuckets:
    """The token buckets every gateway replica shares, kept by billing in PostgreSQL (ADR-128).

    A billing of the previous release (a rolling deploy) answers UNIMPLEMENTED: the same rule
    then runs in this process's memory, per replica as before, until billing is upgraded.
    """

    def __init__(
        self,
        billing: billing_pb2_grpc.BillingServiceAsyncStub,
        deadline_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._billing = billing
        self._deadline = deadline_seconds
        self._clock = clock
        self._local: OrderedDict[str, BucketState] = OrderedDict()

    async def take(self, bucket: str, wanted: int, rate: float, burst: int, returned: int = 0) -> BucketLevel:
        """Up to `wanted` tokens of `bucket` after giving back `returned`; `wanted` 0 only reads it."""
        try:
            answer = await self._billing.TakeRateTokens(
                billing_pb2.TakeRateTokensRequest(
                    bucket=bucket, wanted=wanted, rate_per_second=rate, burst=burst, returned=returned
                ),
                timeout=self._deadline,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.UNIMPLEMENTED:
                raise
            return self._take_locally(bucket, wanted, rate, burst, returned)
        return BucketLevel(answer.granted, answer.tokens_left)

    def _take_locally(self, bucket: str, wanted: int, rate: float, burst: int, returned: int) -> BucketLevel:
        taken = draw(
            self._local.get(bucket), self._clock(), wanted=wanted, rate=rate, burst=burst, returned=returned
        )
        self._local[bucket] = taken.bucket
        self._local.move_to_end(bucket)
        while len(self._local) > MAX_TRACKED_ENTRIES:
            self._local.popitem(last=False)
        return BucketLevel(taken.granted, taken.bucket.tokens)


# Leased tokens not spent within this long are given back with the next draw: a token drawn from
# the shared bucket is spent soon or not at all, so the limit holds over any window within
# `rate x LEASE_SECONDS` tokens.
LEASE_SECONDS = 0.25
# A lease covers about this much of the key's full rate (so a saturating key draws ~20 times a
# second per replica), and never more than a tenth of the burst (which other replicas may need).
LEASE_RATE_SECONDS = 0.05
MIN_EMPTY_SECONDS = 0.001
# Far below what billing accepts in one draw (10,000), whatever the configured rate.
MAX_LEASE = 1000


def lease_size(rate_per_second: float, burst: int) -> int:
    """Tokens drawn at once: 1 (every request asks) for small limits, more for busy keys."""
    return max(1, min(burst // 10, math.ceil(rate_per_second * LEASE_RATE_SECONDS), MAX_LEASE))


@dataclass
class _Lease:
    """This replica's share of one key's bucket: tokens drawn and not yet spent."""

    tokens: int = 0
    expires_at: float = 0.0
    # The shared bucket's level right after our last draw, and when that was.
    shared_left: float = 0.0
    drawn_at: float = 0.0
    # The bucket held less than a token: nothing can be granted before this (only time refills it).
    empty_until: float = 0.0
    drawing: asyncio.Future[None] | None = field(default=None, repr=False)


class SharedRateLimiter:
    """`rate_per_second` requests per key on average, up to `burst` at once, across every gateway
    replica; rate 0 disables it.

    Tokens come from the key's shared bucket in leases of `lease_size` (one draw, one billing
    call, serves that many requests here); concurrent requests of one key share one draw. Every
    admitted request spent a token drawn from the shared bucket, so across all replicas a key is
    admitted at most `burst + rate x elapsed` requests; what leasing costs is that a replica may
    refuse while another still holds a few leased tokens (at most `lease_size - 1` each, for at
    most LEASE_SECONDS).
    """

    def __init__(
        self,
        buckets: SharedBuckets,
        rate_per_second: float,
        burst: int,
        *,
        scope: str = "api_key",
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_TRACKED_ENTRIES,
    ) -> None:
        self._buckets = buckets
        self._rate = rate_per_second
        self._burst = burst
        self._scope = scope
        self._clock = clock
        self._max_entries = max_entries
        self._lease_size = lease_size(rate_per_second, burst)
        self._leases: OrderedDict[str, _Lease] = OrderedDict()

    async def acquire(self, key: str) -> float:
        """Takes one token for `key`: 0.0 when allowed, else the seconds until one is available."""
        if self._rate <= 0:
            return 0.0
        lease = self._lease_of(key)
        while True:
            now = self._clock()
            if lease.tokens > 0 and now < lease.expires_at:
                lease.tokens -= 1
                self._report(lease, now)
                return 0.0
            if now < lease.empty_until:
                self._report(lease, now)
                return lease.empty_until - now
            if lease.drawing is None:
                lease.drawing = asyncio.ensure_future(self._draw(key, lease))
            # Shielded: one caller giving up does not cancel the draw the others wait for.
            await asyncio.shield(lease.drawing)

    def _lease_of(self, key: str) -> _Lease:
        lease = self._leases.get(key)
        if lease is None:
            lease = self._leases[key] = _Lease()
            while len(self._leases) > self._max_entries:
                self._leases.popitem(last=False)
        else:
            self._leases.move_to_end(key)
        return lease

    async def _draw(self, key: str, lease: _Lease) -> None:
        try:
            # An expired lease's tokens were never spent: they go back to the shared bucket.
            returned, lease.tokens = lease.tokens, 0
            level = await self._buckets.take(
                f"{self._scope}:{key}", self._lease_size, self._rate, self._burst, returned
            )
            now = self._clock()
            lease.tokens = level.granted
            lease.expires_at = now + LEASE_SECONDS
            lease.shared_left = level.tokens_left
            lease.drawn_at = now
            if level.granted == 0:
                # At least a millisecond: a level a rounding error under 1 must not be asked again at once.
                wait = seconds_until_token(level.tokens_left, self._rate)
                lease.empty_until = now + max(wait, MIN_EMPTY_SECONDS)
        finally:
            lease.drawing = None

    def _report(self, lease: _Lease, now: float) -> None:
        report = current_rate_limit.get()
        if report is None:
            return
        # The shared level as of our last draw, refilled since (other replicas' draws unseen),
        # plus what this replica still holds of it.
        shared = min(float(self._burst), lease.shared_left + max(0.0, now - lease.drawn_at) * self._rate)
        held = lease.tokens if now < lease.expires_at else 0
        level = min(float(self._burst), shared + held)
        report.remaining = int(level)
        report.reset_seconds = math.ceil(seconds_until_full(level, self._rate, self._burst))


class FailedAttemptLimiter:
    """At most `max_failures` failed attempts per address, refilled over `window_seconds`, counted
    in a bucket every gateway replica shares (`max_failures` at once, then one per
    `window_seconds / max_failures`).

    Checked before the credential is even looked at, so a blocked address learns nothing more.
    """

    def __init__(self, buckets: SharedBuckets, scope: str, max_failures: int, window_seconds: float) -> None:
        self._buckets = buckets
        self._scope = scope
        self._burst = max_failures
        self._rate = max_failures / window_seconds

    def _bucket(self, address: str) -> str:
        return f"{self._scope}:{address}"

    async def retry_after(self, address: str) -> float:
        """0.0 when `address` may try; else the seconds until it may try again."""
        level = await self._buckets.take(self._bucket(address), 0, self._rate, self._burst)
        return seconds_until_token(level.tokens_left, self._rate)

    async def record_failure(self, address: str) -> None:
        """Counts one failed attempt of `address`."""
        await self._buckets.take(self._bucket(address), 1, self._rate, self._burst)

    async def ensure_allowed(self, address: str) -> None:
        """Raises the 429 answer while `address` is blocked."""
        wait = await self.retry_after(address)
        if wait > 0:
            raise rate_limited("too many failed authentication attempts", wait)


def client_address(scope_client: tuple[str, int] | None) -> str:
    """The peer address of a request ("unknown" when the server does not say)."""
    return scope_client[0] if scope_client else "unknown"
