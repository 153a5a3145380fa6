"""Budgets: monthly spend caps of a tenant, of one of its API keys and of a project (ADR-121).

A budget's period is the UTC calendar month. Spend counts in the month of the freeze: a batch's
net spend (frozen - refunded - released) belongs to the month its credits were frozen in, so a
refund or a release gives back that month's budget whenever it happens (ADR-122). Pure rules, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum

from libs.errors import FailedPrecondition, InvalidArgument

# The largest cap accepted (the ledger's balances are bigint; no tenant spends a quadrillion).
MAX_MONTHLY_CREDITS = 10**15
# A project is a batch's `metadata["project"]`: bounded as a metadata value.
MAX_PROJECT_CHARS = 512
# The control characters a batch metadata value may not hold (the batch service's rule; tab and
# line breaks are allowed there too).
_FORBIDDEN_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class BudgetScope(StrEnum):
    """What a budget caps: the whole tenant, one API key, or the batches of one project."""

    TENANT = "tenant"
    API_KEY = "api_key"
    PROJECT = "project"


@dataclass(frozen=True)
class BudgetKey:
    """Which budget: its scope and the key id or project it names ("" for the tenant's)."""

    scope: BudgetScope
    scope_id: str = ""

    @property
    def listing_order(self) -> tuple[int, str]:
        """The tenant's budget first, then keys', then projects' (each by id)."""
        return list(BudgetScope).index(self.scope), self.scope_id


TENANT_BUDGET = BudgetKey(BudgetScope.TENANT)


@dataclass(frozen=True)
class Attribution:
    """Whose budgets a batch counts against: the key that created it and its project (each optional)."""

    api_key_id: str = ""
    project: str = ""

    def budget_keys(self) -> tuple[BudgetKey, ...]:
        """The budgets this batch's spend counts against (the tenant's always)."""
        keys = [TENANT_BUDGET]
        if self.api_key_id:
            keys.append(BudgetKey(BudgetScope.API_KEY, self.api_key_id))
        if self.project:
            keys.append(BudgetKey(BudgetScope.PROJECT, self.project))
        return tuple(keys)


# A batch attributed to nobody but its tenant (its key and project unknown).
UNATTRIBUTED = Attribution()


@dataclass(frozen=True)
class Period:
    """One UTC calendar month: [start, end)."""

    start: date

    @property
    def end(self) -> date:
        """The first day of the next month (the period's exclusive end)."""
        if self.start.month == 12:
            return date(self.start.year + 1, 1, 1)
        return date(self.start.year, self.start.month + 1, 1)

    @property
    def start_at(self) -> datetime:
        """The period's start as an instant (midnight UTC)."""
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)

    @property
    def end_at(self) -> datetime:
        """The period's end as an instant (midnight UTC)."""
        end = self.end
        return datetime(end.year, end.month, end.day, tzinfo=UTC)


def period_of(moment: datetime) -> Period:
    """The UTC calendar month holding `moment` (an aware datetime)."""
    utc = moment.astimezone(UTC)
    return Period(date(utc.year, utc.month, 1))


@dataclass(frozen=True)
class BudgetStatus:
    """A budget (None: no cap) and its use in a period."""

    key: BudgetKey
    monthly_credits: int | None
    used_credits: int
    period: Period

    @property
    def remaining_credits(self) -> int | None:
        """What can still be frozen this period (never negative; None: no cap)."""
        if self.monthly_credits is None:
            return None
        return max(self.monthly_credits - self.used_credits, 0)


class BudgetExceeded(FailedPrecondition):
    """A batch whose price would take a budget's use of this period past its cap: nothing frozen."""

    reason = "budget_exceeded"

    def __init__(self, required_credits: int, status: BudgetStatus) -> None:
        remaining = status.remaining_credits or 0
        super().__init__(
            f"this batch needs {required_credits} credits but the {status.key.scope.value} budget has "
            f"{remaining} left until {status.period.end_at.isoformat()}",
            required_credits=required_credits,
            remaining_credits=remaining,
            period_end=status.period.end_at.isoformat(),
            budget_scope=status.key.scope.value,
            monthly_credits=status.monthly_credits,
        )


def validated_cap(monthly_credits: int) -> int:
    """A cap as stored: 0..MAX_MONTHLY_CREDITS (0 stops every batch); InvalidArgument otherwise."""
    if not 0 <= monthly_credits <= MAX_MONTHLY_CREDITS:
        raise InvalidArgument(
            f"monthly_credits must be between 0 and {MAX_MONTHLY_CREDITS}", field="monthly_credits"
        )
    return monthly_credits


def validated_key(scope: str, scope_id: str) -> BudgetKey:
    """A budget key from its parts; InvalidArgument for an unknown scope or a malformed id."""
    try:
        parsed = BudgetScope(scope)
    except ValueError:
        names = ", ".join(member.value for member in BudgetScope)
        raise InvalidArgument(f"scope must be one of {names}", field="scope") from None
    if parsed is BudgetScope.TENANT:
        if scope_id:
            raise InvalidArgument("the tenant budget takes no scope_id", field="scope_id")
    elif not scope_id:
        raise InvalidArgument(f"a {parsed.value} budget needs its scope_id", field="scope_id")
    elif parsed is BudgetScope.PROJECT and len(scope_id) > MAX_PROJECT_CHARS:
        raise InvalidArgument(f"a project has at most {MAX_PROJECT_CHARS} characters", field="scope_id")
    elif _FORBIDDEN_CONTROL.search(scope_id):
        # PostgreSQL cannot store NUL, and a project is a batch metadata value, which the batch
        # service refuses with these controls: such a budget could never be spent against.
        raise InvalidArgument("scope_id contains a control character", field="scope_id")
    return BudgetKey(parsed, scope_id)


@dataclass
class BudgetLedger:
    """A tenant's caps and their use in one period, updated as a group of freezes is planned.

    Built inside the freeze's transaction, after the tenant's wallet is locked (every freeze of
    the tenant takes that lock), so the use it starts from is every committed freeze's.
    """

    caps: Mapping[BudgetKey, int]
    used: dict[BudgetKey, int]
    period: Period

    def status(self, key: BudgetKey) -> BudgetStatus:
        return BudgetStatus(key, self.caps.get(key), self.used.get(key, 0), self.period)

    def admit(self, attribution: Attribution, required_credits: int) -> None:
        """Counts a freeze against its budgets, or raises BudgetExceeded (the tightest budget) and
        counts nothing."""
        keys = [key for key in attribution.budget_keys() if key in self.caps]
        over = [self.status(key) for key in keys if self.used.get(key, 0) + required_credits > self.caps[key]]
        if over:
            raise BudgetExceeded(required_credits, min(over, key=lambda s: s.remaining_credits or 0))
        for key in attribution.budget_keys():
            self.used[key] = self.used.get(key, 0) + required_credits


def use_by_budget(spend: Iterable[tuple[str, str, int]]) -> dict[BudgetKey, int]:
    """Net spend per budget from (api key id, project, net spend) rows of one tenant and period."""
    used: dict[BudgetKey, int] = {}
    for api_key_id, project, credits in spend:
        for key in Attribution(api_key_id, project).budget_keys():
            used[key] = used.get(key, 0) + credits
    return used
