"""When to send a request again, and after how long: one policy for the sync and async clients.

Network errors, 429 and 503 are retried; the wait is the answer's `Retry-After` when it has one
(capped by `max_wait`), else exponential back-off with full jitter. Creates are safe to repeat
because every create carries an `Idempotency-Key` that stays the same across the retries.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from reelbatch_client.errors import retry_after_seconds

RETRIED_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """`max_retries` more attempts after the first; waits between `base_wait` and `max_wait` seconds."""

    max_retries: int = 5
    base_wait: float = 0.5
    max_wait: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential back-off before retry number `attempt` (1-based)."""
        return random.uniform(0, min(self.max_wait, self.base_wait * 2 ** (attempt - 1)))

    def wait_after_response(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying this answer, or None when it is final."""
        if response.status_code not in RETRIED_STATUSES or attempt > self.max_retries:
            return None
        advised = retry_after_seconds(response.headers)
        return min(self.max_wait, advised) if advised is not None else self.backoff(attempt)

    def wait_after_error(self, error: httpx.TransportError, attempt: int) -> float | None:
        """Seconds to wait before retrying after a network error, or None when out of retries."""
        if attempt > self.max_retries:
            return None
        return self.backoff(attempt)


@dataclass
class RateLimit:
    """The API's `RateLimit-*` headers of the last answer (None where absent)."""

    limit: int | None = None
    remaining: int | None = None
    reset_seconds: int | None = None

    @classmethod
    def of(cls, response: httpx.Response) -> RateLimit:
        """Reads the three headers of an answer."""

        def number(name: str) -> int | None:
            value = response.headers.get(name)
            return int(value) if value is not None and value.isdigit() else None

        return cls(number("ratelimit-limit"), number("ratelimit-remaining"), number("ratelimit-reset"))

    def pause(self) -> float:
        """Seconds to wait before the next request so it is not refused: none while tokens remain;
        with none left, the time one token takes to come back (reset / limit: the bucket refills
        `limit` tokens in `reset` seconds). A 429 would cost a whole second of Retry-After instead."""
        if self.remaining is None or self.remaining > 0 or not self.limit or not self.reset_seconds:
            return 0.0
        return self.reset_seconds / self.limit
