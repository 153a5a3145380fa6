"""SQL of the shared token buckets (named query strings on a raw psycopg connection, ADR-128).

A draw is one statement: the row lock of `INSERT ... ON CONFLICT DO UPDATE` serializes draws on
one bucket, and every expression of its SET sees the row as it was, so the refill, the grant and
the new level are computed from one consistent value. The rule is `libs.token_bucket.draw`; a
property test holds this statement to it. Time is PostgreSQL's clock (`clock_timestamp()`), the
one clock every replica shares, unless a test passes its own `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from libs.token_bucket import BucketState, Draw, draw

_NOW = "coalesce(CAST(%(now)s AS float8), extract(epoch FROM clock_timestamp())::float8)"
# The level before the grant: refilled since the last draw, plus what the caller gives back.
_REFILLED = """least(EXCLUDED.burst, least(EXCLUDED.burst,
    b.tokens + greatest(0, EXCLUDED.updated_at - b.updated_at) * EXCLUDED.rate) + %(returned)s)"""
_DRAW = f"""
    INSERT INTO billing.rate_buckets AS b (bucket, tokens, updated_at, rate, burst, granted)
    VALUES (%(bucket)s, %(burst)s - least(%(wanted)s, %(burst)s), {_NOW}, %(rate)s, %(burst)s,
            least(%(wanted)s, %(burst)s))
    ON CONFLICT (bucket) DO UPDATE SET
        granted = least(%(wanted)s, floor({_REFILLED})),
        tokens = {_REFILLED} - least(%(wanted)s, floor({_REFILLED})),
        updated_at = greatest(b.updated_at, EXCLUDED.updated_at),
        rate = EXCLUDED.rate,
        burst = EXCLUDED.burst
    RETURNING granted, tokens
"""
_READ = f"SELECT b.tokens, b.updated_at, {_NOW} FROM billing.rate_buckets AS b WHERE b.bucket = %(bucket)s"
# Full again (so equal to a missing row) for at least a minute: nobody drew on it lately.
_SWEEP = f"""
    DELETE FROM billing.rate_buckets
    WHERE updated_at + (burst - tokens) / greatest(rate, 1e-9) < {_NOW} - 60
"""


@dataclass(frozen=True)
class BucketDraw:
    """The tokens a draw got, and what the bucket holds after it."""

    granted: int
    tokens_left: float


async def draw_tokens(
    conn: psycopg.AsyncConnection[Any],
    bucket: str,
    *,
    wanted: int,
    rate: float,
    burst: int,
    returned: int = 0,
    now: float | None = None,
) -> BucketDraw:
    """Takes up to `wanted` tokens (after adding back `returned`); `wanted` 0 and nothing returned
    only reads the bucket, writing nothing (a read of a missing bucket answers a full one)."""
    params = {
        "bucket": bucket,
        "wanted": wanted,
        "rate": rate,
        "burst": burst,
        "returned": returned,
        "now": now,
    }
    if wanted == 0 and returned == 0:
        row = await (await conn.execute(_READ, params)).fetchone()
        if row is None:
            return BucketDraw(0, float(burst))
        state = BucketState(tokens=row[0], updated_at=row[1])
        peek: Draw = draw(state, row[2], wanted=0, rate=rate, burst=burst)
        return BucketDraw(0, peek.bucket.tokens)
    row = await (await conn.execute(_DRAW, params)).fetchone()
    assert row is not None  # an upsert always returns its row
    return BucketDraw(int(row[0]), float(row[1]))


async def sweep_full_buckets(conn: psycopg.AsyncConnection[Any], now: float | None = None) -> int:
    """Deletes buckets that have been full for a minute (a missing bucket is a full one); returns
    how many. Safe from any number of replicas at once: a draw racing it keeps its row."""
    cursor = await conn.execute(_SWEEP, {"now": now})
    return cursor.rowcount
