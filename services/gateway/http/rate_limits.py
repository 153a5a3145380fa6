"""Rate limits of the gateway: requests per API key, unfinished batches per tenant, failed admin sign-ins.

Both live in the memory of one gateway process, so several replicas each allow the full rate
(documented in docs/decisions.md). Both are bounded in memory: the least recently seen entries
are dropped first, which can only make a limit more lenient, never refuse a legitimate caller.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

import grpc
from reelbatch.proto.batch.v1 import batch_pb2, batch_pb2_grpc

from libs.vocabulary import OPEN_BATCH_STATUSES, values_of
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


@dataclass
class _Bucket:
    tokens: float
    updated_at: float


class TokenBucketLimiter:
    """`rate_per_second` requests per key on average, up to `burst` at once; rate 0 disables it."""

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_TRACKED_ENTRIES,
    ) -> None:
        self._rate = rate_per_second
        self._burst = float(burst)
        self._clock = clock
        self._max_entries = max_entries
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def acquire(self, key: str) -> float:
        """Takes one token for `key`: 0.0 when allowed, else the seconds until one is available."""
        if self._rate <= 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=self._burst, updated_at=now)
            self._buckets[key] = bucket
            while len(self._buckets) > self._max_entries:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated_at)
            bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
            bucket.updated_at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            wait = 0.0
        else:
            wait = (1.0 - bucket.tokens) / self._rate
        report = current_rate_limit.get()
        if report is not None:
            report.remaining = int(bucket.tokens)
            report.reset_seconds = math.ceil((self._burst - bucket.tokens) / self._rate)
        return wait


class FailedAttemptLimiter:
    """At most `max_failures` failed attempts per address within `window_seconds` (sliding window).

    Checked before the credential is even looked at, so a blocked address learns nothing more.
    """

    def __init__(
        self,
        max_failures: int,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_TRACKED_ENTRIES,
    ) -> None:
        self._max_failures = max_failures
        self._window = window_seconds
        self._clock = clock
        self._max_entries = max_entries
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> float:
        """0.0 when `address` may try; else the seconds until its oldest counted failure expires."""
        failures = self._failures.get(address)
        if failures is None:
            return 0.0
        now = self._clock()
        while failures and failures[0] <= now - self._window:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return 0.0
        if len(failures) < self._max_failures:
            return 0.0
        return failures[0] + self._window - now

    def record_failure(self, address: str) -> None:
        """Counts one failed attempt of `address`."""
        failures = self._failures.setdefault(address, deque())
        self._failures.move_to_end(address)
        failures.append(self._clock())
        while len(failures) > self._max_failures:
            failures.popleft()
        while len(self._failures) > self._max_entries:
            self._failures.popitem(last=False)

    def ensure_allowed(self, address: str) -> None:
        """Raises the 429 answer while `address` is blocked."""
        wait = self.retry_after(address)
        if wait > 0:
            raise rate_limited("too many failed authentication attempts", wait)


def client_address(scope_client: tuple[str, int] | None) -> str:
    """The peer address of a request ("unknown" when the server does not say)."""
    return scope_client[0] if scope_client else "unknown"


# A batch takes seconds to minutes: asking again sooner than this is pointless.
OPEN_BATCHES_RETRY_AFTER_SECONDS = 5


class OpenBatchLimit:
    """At most `max_open` unfinished batches per tenant (0 disables), counted by the batch service.

    The count and the create are not atomic: concurrent creates may overshoot by the number of
    requests in flight, which is acceptable for a fairness limit (not a money rule).
    """

    def __init__(
        self, batch: batch_pb2_grpc.BatchServiceAsyncStub, max_open: int, deadline_seconds: float
    ) -> None:
        self._batch = batch
        self._max_open = max_open
        self._deadline = deadline_seconds

    async def open_batches(self, tenant_id: str) -> int:
        """How many of the tenant's batches are unfinished (counted up to `max_open`)."""
        try:
            counted = await self._batch.CountOpenBatches(
                batch_pb2.CountOpenBatchesRequest(tenant_id=tenant_id, limit=self._max_open),
                timeout=self._deadline,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.UNIMPLEMENTED:
                raise
            return await self._listed_open_batches(tenant_id)
        return counted.open_batches

    async def _listed_open_batches(self, tenant_id: str) -> int:
        # A batch service of the previous release (rolling deploy) has no count: list them.
        pages = await asyncio.gather(
            *(
                self._batch.ListBatches(
                    batch_pb2.ListBatchesRequest(tenant_id=tenant_id, status=status, limit=self._max_open),
                    timeout=self._deadline,
                )
                for status in values_of(OPEN_BATCH_STATUSES)
            )
        )
        return sum(len(page.batches) for page in pages)

    async def ensure_room(self, tenant_id: str) -> None:
        """Raises 429 `rate_limited` when the tenant already has `max_open` unfinished batches."""
        if self._max_open <= 0:
            return
        if await self.open_batches(tenant_id) >= self._max_open:
            raise rate_limited(
                f"at most {self._max_open} batches may be in progress at once",
                OPEN_BATCHES_RETRY_AFTER_SECONDS,
            )
