"""Monthly statements: what happened to a tenant's available balance in one calendar month (UTC).

Every line is derived from the ledger entries of the tenant's available account, so the statement
always reconciles: opening + purchases + grants - spent + refunded + released - reversed - debt_paid
+ reinstated = closing (the last three: payments that went back, ADR-134).

Paid versus granted credits: there is ONE available balance to spend; how much of it is paid and
how much granted follows a documented spending order, granted credits first (docs/decisions.md).
Credits never expire, so nothing else reduces either part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from libs.errors import InvalidArgument
from services.billing.domain.errors import LedgerInvariantViolated
from services.billing.domain.ledger import AVAILABLE_REF_TYPES, RefType

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month; its period is [start, end) in UTC."""

    year: int
    month: int

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        if self.month == 12:
            return datetime(self.year + 1, 1, 1, tzinfo=UTC)
        return datetime(self.year, self.month + 1, 1, tzinfo=UTC)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


FIRST_MONTH = Month(1970, 1)
LAST_MONTH = Month(9999, 11)


def parse_month(text: str) -> Month:
    """`YYYY-MM` as a Month; InvalidArgument otherwise."""
    found = _MONTH.match(text)
    if found is None or not 1 <= int(found.group(2)) <= 12:
        raise InvalidArgument("month must be YYYY-MM", field="month")
    month = Month(int(found.group(1)), int(found.group(2)))
    # The period must end within the calendar datetimes hold: 9999-12 would end in year 10000.
    if not FIRST_MONTH <= month <= LAST_MONTH:
        raise InvalidArgument(
            f"month must be between {FIRST_MONTH.label} and {LAST_MONTH.label}", field="month"
        )
    return month


def month_of(moment: datetime) -> Month:
    """The UTC month `moment` falls in."""
    utc = moment.astimezone(UTC)
    return Month(utc.year, utc.month)


@dataclass(frozen=True)
class ModelUsage:
    """What a tenant's videos of one model did in the month (task outcomes applied then)."""

    model: str
    videos_delivered: int
    videos_refunded: int
    credits_captured: int
    credits_refunded: int


@dataclass(frozen=True)
class CreditSources:
    """The available balance split by where the credits came from (granted credits spent first)."""

    paid: int
    granted: int


def split_by_source(purchased_total: int, granted_total: int, available_balance: int) -> CreditSources:
    """Splits a balance by source, given everything ever purchased and granted up to that moment.

    What left the balance (net of refunds) is charged to granted credits first, then to paid ones.
    """
    spent = purchased_total + granted_total - available_balance
    if spent < 0 or available_balance < 0:
        raise LedgerInvariantViolated("the balance exceeds everything ever purchased and granted")
    granted_left = granted_total - min(granted_total, spent)
    return CreditSources(paid=available_balance - granted_left, granted=granted_left)


@dataclass(frozen=True)
class Statement:
    """One month of a tenant's available balance. `spent` is frozen for batches (a positive number)."""

    month: Month
    opening_balance: int
    purchases: int
    grants: int
    spent: int
    refunded: int
    released: int
    closing_balance: int
    closing_sources: CreditSources
    models: tuple[ModelUsage, ...]
    # Payments that went back (ADR-134): credits taken from available by refunds and disputes, credits
    # of payments that paid a debt, credits returned by disputes won; the debt owed at month end.
    reversed: int = 0
    debt_paid: int = 0
    reinstated: int = 0
    closing_debt: int = 0

    @property
    def net_spent(self) -> int:
        """What the month's batches finally cost (frozen less everything given back)."""
        return self.spent - self.refunded - self.released


def build_statement(
    month: Month,
    opening_balance: int,
    movements: Mapping[RefType, int],
    closing_balance: int,
    lifetime_purchased: int,
    lifetime_granted: int,
    models: Sequence[ModelUsage],
    closing_debt: int = 0,
) -> Statement:
    """A statement from the month's signed movements of the available balance, per ref type.

    Refuses (as a bug) a month whose movements do not lead from the opening to the closing balance.
    """
    unknown = set(movements) - AVAILABLE_REF_TYPES
    if unknown:
        raise LedgerInvariantViolated(f"unexpected movements of an available balance: {sorted(unknown)}")
    statement = Statement(
        month=month,
        opening_balance=opening_balance,
        purchases=movements.get(RefType.PURCHASE, 0),
        grants=movements.get(RefType.TOPUP, 0),
        spent=-movements.get(RefType.BATCH_UPFRONT, 0),
        refunded=movements.get(RefType.BATCH_REFUND, 0),
        released=movements.get(RefType.BATCH_SETTLE, 0),
        closing_balance=closing_balance,
        closing_sources=split_by_source(lifetime_purchased, lifetime_granted, closing_balance),
        models=tuple(sorted(models, key=lambda usage: usage.model)),
        reversed=-movements.get(RefType.PAYMENT_REVERSAL, 0),
        debt_paid=-movements.get(RefType.DEBT_PAYMENT, 0),
        reinstated=movements.get(RefType.PAYMENT_REINSTATED, 0),
        closing_debt=closing_debt,
    )
    moved = (
        statement.purchases
        + statement.grants
        - statement.spent
        + statement.refunded
        + statement.released
        - statement.reversed
        - statement.debt_paid
        + statement.reinstated
    )
    if opening_balance + moved != closing_balance:
        raise LedgerInvariantViolated(
            f"statement {month.label}: {opening_balance} + {moved} != closing {closing_balance}"
        )
    return statement
