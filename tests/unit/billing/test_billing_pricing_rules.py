"""Quoting lines from the price list, stale quotes and affordability."""

from __future__ import annotations

import pytest

from libs.errors import ErrorCategory, InvalidArgument
from services.billing.domain.errors import InsufficientCredits, StaleQuote, UnknownModel
from services.billing.domain.pricing import (
    ModelPrice,
    QuoteLine,
    ensure_affordable,
    ensure_quote_is_current,
    quote,
)

PRICES = {
    "sora-2": ModelPrice("sora-2", "simulated", 10),
    "veo-3": ModelPrice("veo-3", "simulated", 20),
}


def test_a_quote_prices_each_line_and_totals_them() -> None:
    priced = quote([QuoteLine("sora-2", 20), QuoteLine("veo-3", 2)], PRICES)

    assert [line.unit_price for line in priced.lines] == [10, 20]
    assert (priced.total, priced.item_count) == (240, 22)


def test_an_unknown_model_is_a_validation_error_naming_the_model() -> None:
    with pytest.raises(UnknownModel) as refused:
        quote([QuoteLine("sora-2", 1), QuoteLine("dall-e", 1)], PRICES)

    assert refused.value.category is ErrorCategory.INVALID_ARGUMENT
    assert refused.value.reason == "validation_error"
    assert refused.value.details == {"model": "dall-e"}


@pytest.mark.parametrize("lines", [[], [QuoteLine("sora-2", 0)], [QuoteLine("sora-2", -1)]])
def test_empty_quotes_and_non_positive_counts_are_refused(lines: list[QuoteLine]) -> None:
    with pytest.raises(InvalidArgument):
        quote(lines, PRICES)


def test_lines_of_one_model_merge_into_one_reserved_line() -> None:
    merged = quote(
        [QuoteLine("sora-2", 2), QuoteLine("veo-3", 1), QuoteLine("sora-2", 3)], PRICES
    ).per_model()

    assert merged == {
        ("sora-2", 0, 10): QuoteLine("sora-2", 5, 10),
        ("veo-3", 0, 20): QuoteLine("veo-3", 1, 20),
    }


def test_a_quoted_price_that_changed_is_stale_but_an_unquoted_line_is_fine() -> None:
    requested = [QuoteLine("sora-2", 1, unit_price=0), QuoteLine("veo-3", 1, unit_price=20)]
    ensure_quote_is_current(requested, quote(requested, PRICES))

    stale = [QuoteLine("sora-2", 1, unit_price=9)]
    with pytest.raises(StaleQuote) as refused:
        ensure_quote_is_current(stale, quote(stale, PRICES))
    assert refused.value.reason == "stale_quote"
    assert refused.value.details["current_price"] == "10"


def test_a_freeze_larger_than_the_available_balance_is_refused_with_both_numbers() -> None:
    ensure_affordable(200, 200)
    with pytest.raises(InsufficientCredits) as refused:
        ensure_affordable(201, 200)

    assert refused.value.reason == "insufficient_credits"
    assert refused.value.category is ErrorCategory.FAILED_PRECONDITION
    assert refused.value.details == {"required_credits": "201", "available_credits": "200"}
