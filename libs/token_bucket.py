"""The token bucket every shared limit uses (issue 27, ADR-128): one rule, stated here in Python.

A bucket holds at most `burst` tokens and gains `rate` tokens per second; a new bucket is full. A
draw first adds back what an earlier draw gave up (`returned`), then grants as many whole tokens
as it wants and the bucket holds. Billing keeps the buckets in PostgreSQL and applies this rule in
one statement (`services/billing/adapters/sql/limits.py`, checked against this function by a
property test); fakes in tests apply it in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BucketState:
    """What a bucket holds (`tokens`) as of `updated_at` (seconds, the clock of whoever keeps it)."""

    tokens: float
    updated_at: float


@dataclass(frozen=True)
class Draw:
    """A draw's result: the whole tokens granted and the bucket after it."""

    granted: int
    bucket: BucketState


def draw(
    bucket: BucketState | None, now: float, *, wanted: int, rate: float, burst: int, returned: int = 0
) -> Draw:
    """Refills `bucket` (None: a new, full one) to `now`, adds `returned`, grants up to `wanted`.

    Time never runs backwards for a bucket: a `now` earlier than its last update adds nothing
    (replicas' clocks may disagree by a little; billing uses PostgreSQL's clock anyway).
    """
    if bucket is None:
        tokens = float(burst)
        updated_at = now
    else:
        elapsed = max(0.0, now - bucket.updated_at)
        tokens = min(float(burst), bucket.tokens + elapsed * rate)
        updated_at = max(bucket.updated_at, now)
    tokens = min(float(burst), tokens + returned)
    granted = min(wanted, math.floor(tokens))
    return Draw(granted, BucketState(tokens - granted, updated_at))


def seconds_until_token(tokens_left: float, rate: float) -> float:
    """How long until a bucket holding `tokens_left` holds one whole token (0.0 when it does)."""
    if tokens_left >= 1.0 or rate <= 0:
        return 0.0
    return (1.0 - tokens_left) / rate


def seconds_until_full(tokens_left: float, rate: float, burst: int) -> float:
    """How long until the bucket is full again (for the RateLimit-Reset header)."""
    if rate <= 0:
        return 0.0
    return max(0.0, burst - tokens_left) / rate
