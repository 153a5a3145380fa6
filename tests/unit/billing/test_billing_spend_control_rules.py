"""The pure rules of spend control: budget periods, the freeze's budget check, quote redemption,
key scopes (issue 29)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.errors import InvalidArgument
from services.billing.domain.api_keys import ALL_SCOPES, KeyScope, is_expired, parse_scopes, sorted_scopes
from services.billing.domain.budgets import (
    TENANT_BUDGET,
    Attribution,
    BudgetExceeded,
    BudgetKey,
    BudgetLedger,
    BudgetScope,
    Period,
    period_of,
    use_by_budget,
    validated_cap,
    validated_key,
)
from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.pricing import Quote, QuoteLine
from services.billing.domain.quotes import (
    QuoteExpired,
    QuoteMismatch,
    QuoteNotFound,
    QuoteUsed,
    new_quote,
    redeem,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
TENANT = TenantId(uuid.uuid4())
KEY = str(uuid.uuid4())


def test_a_period_is_the_utc_calendar_month_of_the_moment() -> None:
    late_in_new_york = datetime(2026, 12, 31, 20, 0, tzinfo=UTC) + timedelta(hours=5)
    assert period_of(late_in_new_york) == Period(date(2027, 1, 1))
    assert Period(date(2026, 12, 1)).end_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert Period(date(2026, 2, 1)).end == date(2026, 3, 1)


def test_a_batch_counts_against_the_tenant_its_key_and_its_project() -> None:
    keys = Attribution(api_key_id=KEY, project="launch").budget_keys()
    assert keys == (
        TENANT_BUDGET,
        BudgetKey(BudgetScope.API_KEY, KEY),
        BudgetKey(BudgetScope.PROJECT, "launch"),
    )
    assert use_by_budget([(KEY, "launch", 30), ("", "", 5)]) == {
        TENANT_BUDGET: 35,
        BudgetKey(BudgetScope.API_KEY, KEY): 30,
        BudgetKey(BudgetScope.PROJECT, "launch"): 30,
    }


def test_the_tightest_budget_refuses_and_nothing_is_counted() -> None:
    ledger = BudgetLedger(
        caps={TENANT_BUDGET: 100, BudgetKey(BudgetScope.API_KEY, KEY): 40},
        used={TENANT_BUDGET: 50, BudgetKey(BudgetScope.API_KEY, KEY): 35},
        period=period_of(NOW),
    )
    with pytest.raises(BudgetExceeded) as refused:
        ledger.admit(Attribution(api_key_id=KEY), 10)
    assert refused.value.details["budget_scope"] == "api_key"
    assert refused.value.details["remaining_credits"] == "5"
    assert refused.value.details["period_end"] == "2027-01-01T00:00:00+00:00"
    assert ledger.used[TENANT_BUDGET] == 50
    ledger.admit(Attribution(), 50)  # another key: only the tenant's budget applies
    assert ledger.status(TENANT_BUDGET).remaining_credits == 0


@given(cap=st.integers(0, 500), prices=st.lists(st.integers(1, 60), max_size=40))
def test_admitted_freezes_never_exceed_the_cap(cap: int, prices: list[int]) -> None:
    ledger = BudgetLedger(caps={TENANT_BUDGET: cap}, used={}, period=period_of(NOW))
    admitted = 0
    for price in prices:
        try:
            ledger.admit(Attribution(), price)
        except BudgetExceeded:
            assert admitted + price > cap
        else:
            admitted += price
    assert admitted == ledger.used.get(TENANT_BUDGET, 0) <= cap


def test_budget_inputs_are_validated() -> None:
    assert validated_cap(0) == 0
    with pytest.raises(InvalidArgument):
        validated_cap(-1)
    assert validated_key("project", "launch") == BudgetKey(BudgetScope.PROJECT, "launch")
    for scope, scope_id in [("tenant", "x"), ("api_key", ""), ("nope", ""), ("project", "p" * 513)]:
        with pytest.raises(InvalidArgument):
            validated_key(scope, scope_id)


def quoted(count: int = 2) -> Quote:
    return Quote(lines=(QuoteLine("sora-2", count, 10),))


def test_a_quote_is_redeemed_once_within_its_validity_with_its_body() -> None:
    stored = new_quote(TENANT, quoted(), "fp", NOW)
    batch = BatchId(uuid.uuid4())
    assert redeem(stored, TENANT, batch, quoted().lines, "fp", NOW).total == 20
    with pytest.raises(QuoteUsed):
        redeem(
            replace(stored, batch_id=batch),
            TENANT,
            batch,
            quoted().lines,
            "fp",
            NOW,
        )
    with pytest.raises(QuoteExpired):
        redeem(stored, TENANT, batch, quoted().lines, "fp", stored.expires_at)
    with pytest.raises(QuoteMismatch):
        redeem(stored, TENANT, batch, quoted().lines, "other", NOW)
    with pytest.raises(QuoteMismatch):
        redeem(stored, TENANT, batch, quoted(3).lines, "fp", NOW)
    with pytest.raises(QuoteNotFound):
        redeem(stored, TenantId(uuid.uuid4()), batch, quoted().lines, "fp", NOW)
    with pytest.raises(QuoteNotFound):
        redeem(None, TENANT, batch, quoted().lines, "fp", NOW)


def test_keys_without_scopes_keep_full_access_and_expire_at_their_time() -> None:
    assert parse_scopes([]) == ALL_SCOPES
    assert parse_scopes(["read", "batches"]) == {KeyScope.READ, KeyScope.BATCHES}
    assert sorted_scopes({KeyScope.BILLING, KeyScope.BATCHES}) == ["batches", "billing"]
    with pytest.raises(InvalidArgument):
        parse_scopes(["admin"])
    assert not is_expired(None, NOW)
    assert is_expired(NOW, NOW) and not is_expired(NOW + timedelta(seconds=1), NOW)
