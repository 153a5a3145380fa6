"""Spend alerts: a tenant's thresholds and the crossings that announce them (issue 29, ADR-125).

A low-balance alert (`credits.low`) fires when a movement takes the available credits from at or
above the threshold to below it; a budget alert (`budget.threshold`) fires when a freeze takes a
capped budget's use of the month from below `percent` of its cap to at or above it. Both are
decided from the balances and uses before and after one movement, inside the transaction that
posts it with the tenant's wallet locked, so concurrent spend sees each crossing exactly once.
Nothing is stored to re-arm an alert: a top-up or a refund moves the value back over the line, and
the next movement down crosses it again. Pure rules, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from libs.errors import InvalidArgument
from services.billing.domain.budgets import MAX_MONTHLY_CREDITS, BudgetKey

# Thresholds are credits (bounded like a cap) and whole percents of a cap.
MAX_LOW_BALANCE_CREDITS = MAX_MONTHLY_CREDITS
MIN_PERCENT, MAX_PERCENT = 1, 100


class AlertKind(StrEnum):
    """The webhook event type of an alert (the customer-facing names, ADR-125)."""

    CREDITS_LOW = "credits.low"
    BUDGET_THRESHOLD = "budget.threshold"


@dataclass(frozen=True)
class AlertThresholds:
    """A tenant's thresholds; None means that alert is off."""

    low_balance_credits: int | None = None
    budget_percent: int | None = None

    @property
    def any(self) -> bool:
        """Whether any alert is on (a freeze of a tenant without one checks nothing)."""
        return self.low_balance_credits is not None or self.budget_percent is not None


NO_ALERTS = AlertThresholds()


def validated_thresholds(low_balance_credits: int | None, budget_percent: int | None) -> AlertThresholds:
    """Thresholds as stored; InvalidArgument naming the bad field otherwise."""
    if low_balance_credits is not None and not 1 <= low_balance_credits <= MAX_LOW_BALANCE_CREDITS:
        raise InvalidArgument(
            f"low_balance_credits must be between 1 and {MAX_LOW_BALANCE_CREDITS}",
            field="low_balance_credits",
        )
    if budget_percent is not None and not MIN_PERCENT <= budget_percent <= MAX_PERCENT:
        raise InvalidArgument(
            f"budget_percent must be between {MIN_PERCENT} and {MAX_PERCENT}", field="budget_percent"
        )
    return AlertThresholds(low_balance_credits, budget_percent)


@dataclass(frozen=True)
class Crossing:
    """One alert to announce: what crossed which line, and where it stands now."""

    kind: AlertKind
    threshold_credits: int
    # credits.low: the available credits after the movement; budget.threshold: the month's use.
    value_credits: int
    budget: BudgetKey | None = None
    monthly_credits: int = 0
    percent: int = 0


def percent_line(monthly_credits: int, percent: int) -> int:
    """The use at which `percent` of a cap is reached (rounded up: 80% of 5 is 4)."""
    return -(-monthly_credits * percent // 100)


def is_low(thresholds: AlertThresholds, available: int) -> bool:
    """Whether the available credits are below the low-balance threshold (the console's banner)."""
    line = thresholds.low_balance_credits
    return line is not None and available < line


@dataclass(frozen=True)
class AlertStatus:
    """The thresholds and which side of them the tenant is on now (the console's banner)."""

    thresholds: AlertThresholds
    credits_low: bool = False
    # The capped budgets whose use this month is at or over the percent.
    budgets_reached: tuple[BudgetKey, ...] = ()


def alert_status(
    thresholds: AlertThresholds, available: int, caps: Mapping[BudgetKey, int], used: Mapping[BudgetKey, int]
) -> AlertStatus:
    """Where the tenant stands against its thresholds: below the low-balance line, and which
    budgets have reached the percent."""
    percent = thresholds.budget_percent
    reached = (
        tuple(
            key
            for key in sorted(caps, key=lambda key: key.listing_order)
            if caps[key] > 0 and used.get(key, 0) >= percent_line(caps[key], percent)
        )
        if percent is not None
        else ()
    )
    return AlertStatus(thresholds, is_low(thresholds, available), reached)


def crossings(
    thresholds: AlertThresholds,
    available_before: int,
    available_after: int,
    caps: Mapping[BudgetKey, int],
    used_before: Mapping[BudgetKey, int],
    used_after: Mapping[BudgetKey, int],
) -> list[Crossing]:
    """The alerts one movement (or one group of freezes of a tenant) crosses downward, in order:
    the low balance first, then each capped budget that reached the percent."""
    found: list[Crossing] = []
    line = thresholds.low_balance_credits
    if line is not None and available_before >= line > available_after:
        found.append(Crossing(AlertKind.CREDITS_LOW, line, available_after))
    percent = thresholds.budget_percent
    if percent is not None:
        for key in sorted(caps, key=lambda key: key.listing_order):
            cap = caps[key]
            reached = percent_line(cap, percent)
            if cap > 0 and used_before.get(key, 0) < reached <= used_after.get(key, 0):
                found.append(
                    Crossing(
                        AlertKind.BUDGET_THRESHOLD,
                        reached,
                        used_after.get(key, 0),
                        budget=key,
                        monthly_credits=cap,
                        percent=percent,
                    )
                )
    return found
