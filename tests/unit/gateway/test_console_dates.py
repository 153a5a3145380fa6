"""The console's day filters: both days included, any typed value answered (never a 500)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.gateway.console.dates import DayRange


def test_a_range_runs_from_the_first_days_start_to_the_last_days_end() -> None:
    days = DayRange.parse("2026-12-01", "2026-12-06")
    assert days.start == datetime(2026, 12, 1, tzinfo=UTC)
    assert days.end == datetime(2026, 12, 7, tzinfo=UTC)
    assert days.form_values("from", "to") == {"from": "2026-12-01", "to": "2026-12-06"}


@pytest.mark.parametrize("typed", ["", "yesterday", "2026-13-01", "2026-02-30", "9" * 64])
def test_a_value_that_is_not_a_day_is_no_bound(typed: str) -> None:
    days = DayRange.parse(typed, typed)
    assert (days.start, days.end) == (None, None)
    assert days.form_values("from", "to") == {"from": "", "to": ""}


def test_the_calendars_ends_are_bounds_without_overflow() -> None:
    days = DayRange.parse("0001-01-01", "9999-12-31")
    assert days.start == datetime(1, 1, 1, tzinfo=UTC)
    assert days.end is None
