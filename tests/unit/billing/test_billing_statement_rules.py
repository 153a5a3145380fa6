"""Monthly statement rules: months in UTC, reconciliation, and the paid/granted spending order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.errors import InvalidArgument
from services.billing.domain.errors import LedgerInvariantViolated
from services.billing.domain.ledger import RefType
from services.billing.domain.statements import Month, build_statement, month_of, parse_month, split_by_source


def test_a_month_spans_utc_midnight_to_utc_midnight_and_december_rolls_over() -> None:
    december = parse_month("2025-12")
    assert (december.start, december.end) == (
        datetime(2025, 12, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    late_evening_in_new_york = datetime(2025, 11, 30, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert month_of(late_evening_in_new_york) == december


@pytest.mark.parametrize(
    "text",
    ["2025-13", "2025-1", "25-01", "2025-00", "", "2025-01-01", "9999-12", "0000-01", "1969-12", "10000-01"],
)
def test_a_malformed_month_is_a_validation_error(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_month(text)


def test_the_last_month_whose_end_a_datetime_holds_is_accepted() -> None:
    last = parse_month("9999-11")

    assert (last.start, last.end) == (datetime(9999, 11, 1, tzinfo=UTC), datetime(9999, 12, 1, tzinfo=UTC))


def test_a_statement_adds_up_from_opening_to_closing() -> None:
    movements = {
        RefType.PURCHASE: 1_000,
        RefType.TOPUP: 100,
        RefType.BATCH_UPFRONT: -300,
        RefType.BATCH_REFUND: 40,
        RefType.BATCH_SETTLE: 10,
    }
    statement = build_statement(Month(2025, 3), 50, movements, 900, 1_000, 150, [])
    assert (statement.spent, statement.net_spent) == (300, 250)
    # 250 left the wallet for good: the 150 granted first, then 100 of the 1,000 paid.
    assert (statement.closing_sources.paid, statement.closing_sources.granted) == (900, 0)


def test_a_statement_that_does_not_add_up_is_refused_as_a_bug() -> None:
    with pytest.raises(LedgerInvariantViolated):
        build_statement(Month(2025, 3), 0, {RefType.PURCHASE: 10}, 11, 10, 0, [])


@given(
    purchased=st.integers(0, 10**9),
    granted=st.integers(0, 10**9),
    data=st.data(),
)
def test_granted_credits_are_spent_before_paid_ones(
    purchased: int, granted: int, data: st.DataObject
) -> None:
    balance = data.draw(st.integers(0, purchased + granted))
    sources = split_by_source(purchased, granted, balance)
    assert sources.paid + sources.granted == balance
    assert 0 <= sources.granted <= granted and 0 <= sources.paid <= purchased
    # Paid credits are touched only once every granted credit is gone.
    assert sources.paid == purchased or sources.granted == 0
