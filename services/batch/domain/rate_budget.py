"""A provider route's requests-per-minute budget (ADR-148): the one home of "may a create call
leave now".

Providers count requests in any minute: the Gemini API's rate-limit page says a project allowed 20
requests a minute that makes 21 within a minute gets an error, and Vertex AI publishes 50 requests
a minute per project for Veo 3.1 (10 for its preview models). A token bucket would let twice the
budget through across a refill, so the budget is a sliding log: the times of the grants still in
the window, at most `limit` of them. Every worker draws from the same log (a row in PostgreSQL,
read and written under its lock at the database's clock), so the pool as a whole stays within it.

A grant is spaced `margin_seconds` beyond the window: a call granted at t reaches the provider a
little later (the journal's intent is written in between), and the margin keeps the provider's
own window from seeing one more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Beyond the window, how long a grant still counts (see the module docstring).
GRANT_MARGIN_SECONDS = 1.0


@dataclass(frozen=True)
class RateBudget:
    """At most `limit` create calls in any `window_seconds`."""

    limit: int
    window_seconds: float = 60.0
    margin_seconds: float = GRANT_MARGIN_SECONDS

    @property
    def span_seconds(self) -> float:
        """How long a grant counts against the budget."""
        return self.window_seconds + self.margin_seconds


@dataclass(frozen=True)
class Draw:
    """The result of asking for one call: granted or not, the grants still counting (the new one
    included), and when not granted how long until one leaves the window."""

    granted: bool
    grants: tuple[float, ...]
    wait_seconds: float = 0.0


def draw(grants: Sequence[float], now: float, budget: RateBudget) -> Draw:
    """Grants one call at `now` if fewer than `limit` grants fall in the last span; otherwise
    says how long until enough of them have left it (a lowered limit waits for several)."""
    kept = tuple(sorted(grant for grant in grants if grant > now - budget.span_seconds))
    if len(kept) < budget.limit:
        return Draw(True, (*kept, now))
    oldest_to_leave = kept[len(kept) - budget.limit]
    return Draw(False, kept, max(0.0, oldest_to_leave + budget.span_seconds - now))
