"""The usage rules without a database: the average paid price per credit, the period, the rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from libs.errors import InvalidArgument
from services.billing.domain.ledger import RefType, parse_ledger_ref_type
from services.billing.domain.usage import MAX_USAGE_DAYS, PaidCredits, UsageDay, merge_usage, usage_period


@pytest.mark.parametrize(
    ("paid_cents", "purchased", "granted", "micros"),
    [
        (600, 300, 100, 15_000),  # $6 for 400 credits: 1.5 cents each
        (600, 400, 0, 15_000),
        (0, 0, 5_000, 0),  # granted only: worth nothing
        (0, 0, 0, 0),  # nothing received
        (1, 3, 0, 3_333),  # 10,000 / 3 micros, rounded half up
        (2, 3, 0, 6_667),
    ],
)
def test_a_credit_is_worth_what_was_paid_over_every_credit_received(
    paid_cents: int, purchased: int, granted: int, micros: int
) -> None:
    assert PaidCredits(paid_cents, purchased, granted).average_price_usd_micros == micros


def test_a_period_starts_at_its_first_utc_day_and_must_be_given_bounded_and_ordered() -> None:
    moment = datetime(2026, 12, 6, 15, 30, tzinfo=UTC)

    period = usage_period(moment, moment + timedelta(days=2))

    assert period.start == datetime(2026, 12, 6, tzinfo=UTC)
    for start, end in (
        (None, moment),
        (moment, None),
        (moment, moment - timedelta(days=1)),
        (moment - timedelta(days=MAX_USAGE_DAYS + 1), moment),
    ):
        with pytest.raises(InvalidArgument):
            usage_period(start, end)


def test_spend_and_refunds_merge_into_one_row_per_day_and_model_in_order() -> None:
    first, second = date(2026, 12, 1), date(2026, 12, 2)

    rows = merge_usage(
        {(second, "veo-3"): 20, (first, "sora-2"): 30}, {(first, "sora-2"): 10, (second, ""): 5}
    )

    assert rows == (
        UsageDay(first, "sora-2", 30, 10),
        UsageDay(second, "", 0, 5),
        UsageDay(second, "veo-3", 20, 0),
    )


def test_the_ledger_filter_takes_only_the_types_an_available_balance_shows() -> None:
    assert parse_ledger_ref_type("") is None
    assert parse_ledger_ref_type("batch_refund") is RefType.BATCH_REFUND
    for refused in ("batch_capture", "nonsense"):
        with pytest.raises(InvalidArgument):
            parse_ledger_ref_type(refused)
