"""The rules of spend alerts (ADR-125): a crossing is a move from one side of the line to the other
in one movement; nothing fires while the value stays on one side, and nothing needs re-arming."""

from __future__ import annotations

import pytest

from libs.errors import InvalidArgument
from services.billing.domain.alerts import (
    AlertKind,
    AlertThresholds,
    crossings,
    is_low,
    percent_line,
    validated_thresholds,
)
from services.billing.domain.budgets import TENANT_BUDGET, BudgetKey, BudgetScope

LOW = AlertThresholds(low_balance_credits=100)
KEY = BudgetKey(BudgetScope.API_KEY, "k")


@pytest.mark.parametrize(
    ("before", "after", "fires"),
    [
        (150, 99, True),
        (100, 99, True),
        (150, 100, False),
        (99, 50, False),
        (50, 150, False),
        (150, 120, False),
    ],
)
def test_the_low_balance_alert_fires_only_when_a_movement_goes_below_the_line(
    before: int, after: int, fires: bool
) -> None:
    found = crossings(LOW, before, after, {}, {}, {})
    assert [c.kind for c in found] == ([AlertKind.CREDITS_LOW] if fires else [])
    if fires:
        assert (found[0].threshold_credits, found[0].value_credits) == (100, after)


def test_the_budget_alert_fires_for_each_capped_budget_that_reaches_the_percent() -> None:
    thresholds = AlertThresholds(budget_percent=80)
    caps = {TENANT_BUDGET: 1_000, KEY: 100}
    found = crossings(thresholds, 0, 0, caps, {TENANT_BUDGET: 790, KEY: 70}, {TENANT_BUDGET: 800, KEY: 79})
    assert [(c.budget, c.threshold_credits, c.value_credits) for c in found] == [(TENANT_BUDGET, 800, 800)]
    again = crossings(thresholds, 0, 0, caps, {TENANT_BUDGET: 800, KEY: 79}, {TENANT_BUDGET: 900, KEY: 80})
    assert [(c.budget, c.percent, c.monthly_credits) for c in again] == [(KEY, 80, 100)]


def test_a_zero_cap_and_a_percent_rounded_up() -> None:
    assert percent_line(5, 80) == 4 and percent_line(3, 50) == 2
    assert crossings(AlertThresholds(budget_percent=50), 0, 0, {TENANT_BUDGET: 0}, {}, {}) == []


def test_the_banner_state_and_the_bounds() -> None:
    assert is_low(LOW, 99) and not is_low(LOW, 100) and not is_low(AlertThresholds(), 0)
    assert validated_thresholds(1, 100) == AlertThresholds(1, 100)
    for low, percent in ((0, None), (None, 0), (None, 101), (-5, None)):
        with pytest.raises(InvalidArgument):
            validated_thresholds(low, percent)
