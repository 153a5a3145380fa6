"""Shared limits: draws from the token buckets every gateway replica shares (ADR-128)."""

from __future__ import annotations

import math

from libs.errors import InvalidArgument
from services.billing.adapters.sql.limits import BucketDraw
from services.billing.use_cases.dependencies import Dependencies

MAX_BUCKET_NAME_CHARS = 200
# A lease never needs more; a bigger number is a caller's bug, not a request to honour.
MAX_TOKENS_PER_DRAW = 10_000


async def take_rate_tokens(
    deps: Dependencies, bucket: str, wanted: int, rate: float, burst: int, returned: int = 0
) -> BucketDraw:
    """Up to `wanted` tokens of `bucket` (refilled at `rate` per second up to `burst`), after
    adding back `returned` unused ones; `wanted` 0 only reads it."""
    if not 1 <= len(bucket) <= MAX_BUCKET_NAME_CHARS:
        raise InvalidArgument(f"bucket must be 1..{MAX_BUCKET_NAME_CHARS} characters", field="bucket")
    if not 0 <= wanted <= MAX_TOKENS_PER_DRAW:
        raise InvalidArgument(f"wanted must be 0..{MAX_TOKENS_PER_DRAW}", field="wanted")
    if not 0 <= returned <= MAX_TOKENS_PER_DRAW:
        raise InvalidArgument(f"returned must be 0..{MAX_TOKENS_PER_DRAW}", field="returned")
    if not (math.isfinite(rate) and rate > 0):
        raise InvalidArgument("rate_per_second must be a positive number", field="rate_per_second")
    if burst < 1:
        raise InvalidArgument("burst must be at least 1", field="burst")
    return await deps.repository.draw_rate_tokens(
        bucket, wanted=wanted, rate=rate, burst=burst, returned=returned
    )


async def sweep_rate_buckets(deps: Dependencies) -> int:
    """Deletes buckets that are full again (any replica may run it at any time)."""
    return await deps.repository.sweep_rate_buckets()
