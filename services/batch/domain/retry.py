"""Backoff between attempts of a task: exponential, capped, with full jitter."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    """Delay before attempt n+1 is uniform in [0, min(cap, base * 2**(n-1))]."""

    base_seconds: float
    cap_seconds: float

    def ceiling(self, failed_attempt: int) -> float:
        """The largest delay after the `failed_attempt`-th attempt (1-based)."""
        if failed_attempt < 1:
            raise ValueError("attempts are counted from 1")
        # Bounded exponent: 2**64 is already far past any cap.
        return min(self.cap_seconds, self.base_seconds * 2.0 ** min(failed_attempt - 1, 64))

    def delay(self, failed_attempt: int, uniform: Callable[[], float] = random.random) -> float:
        """A jittered delay; full jitter spreads retries of many tasks failing together."""
        return uniform() * self.ceiling(failed_attempt)
