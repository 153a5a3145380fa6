"""Usage: what a tenant's batches froze and got back per UTC day and model, and what a credit cost it.

Spend per model comes from the batch's frozen lines (price x items of each model), so a day's spend
sums to the day's `batch_upfront` ledger entries; refunds are the `batch_refund` entries (each
carries its task's model) and settlement releases, which belong to no single model.

The money rule, stated once here and on the usage page: a credit is worth what the tenant paid
for all its credits divided by every credit it received, paid or granted; granted credits count
as $0, so they lower the average.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from libs.errors import InvalidArgument

# A usage query covers at most a year of days (one page, bounded work per request).
MAX_USAGE_DAYS = 366
MICROS_PER_CENT = 10_000
# The row of credits released at settlement: they belong to no single model.
RELEASED_MODEL = ""


@dataclass(frozen=True)
class UsageDay:
    """One UTC day and model: credits frozen for its items, and credits given back."""

    day: date
    model: str
    spent: int
    refunded: int


@dataclass(frozen=True)
class PaidCredits:
    """Everything a tenant received: paid for (with what it paid) and granted."""

    paid_usd_cents: int
    purchased_credits: int
    granted_credits: int

    @property
    def average_price_usd_micros(self) -> int:
        """Paid money over every credit received (granted ones at $0), rounded half up; 0 if none."""
        received = self.purchased_credits + self.granted_credits
        if received <= 0:
            return 0
        return (self.paid_usd_cents * MICROS_PER_CENT * 2 + received) // (2 * received)


@dataclass(frozen=True)
class Usage:
    """A tenant's usage over a period, and the price its credits are valued at."""

    days: tuple[UsageDay, ...]
    paid: PaidCredits


@dataclass(frozen=True)
class UsagePeriod:
    """Whole UTC days [start, end)."""

    start: datetime
    end: datetime


def usage_period(created_from: datetime | None, created_to: datetime | None) -> UsagePeriod:
    """The whole UTC days from `created_from`'s day up to `created_to`; InvalidArgument if unusable."""
    if created_from is None or created_to is None:
        raise InvalidArgument("created_from and created_to are required", field="created_from")
    start = datetime.combine(created_from.astimezone(UTC).date(), datetime.min.time(), UTC)
    end = created_to.astimezone(UTC)
    if end <= start:
        raise InvalidArgument("created_to must be after created_from", field="created_to")
    if end - start > timedelta(days=MAX_USAGE_DAYS):
        raise InvalidArgument(f"a usage period covers at most {MAX_USAGE_DAYS} days", field="created_to")
    return UsagePeriod(start, end)


def merge_usage(
    spent: dict[tuple[date, str], int], refunded: dict[tuple[date, str], int]
) -> tuple[UsageDay, ...]:
    """Spend and refunds keyed by (day, model) as rows, oldest day first, models by name."""
    keys = sorted(set(spent) | set(refunded))
    return tuple(
        UsageDay(day, model, spent.get((day, model), 0), refunded.get((day, model), 0)) for day, model in keys
    )
