"""Budgets, quotes and key scopes against a real PostgreSQL (issue 29).

The budget is checked in the transaction that freezes a batch, after the tenant's wallet is locked,
so concurrent freezes can never push a month's spend past its cap; a quote freezes its own price
once, within its validity, whatever the price list says by then.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from libs.db import Database
from libs.errors import InvalidArgument, NotFound, Unauthenticated
from libs.price_list import DEFAULT_PRICING
from services.billing.adapters.repository import BillingRepository
from services.billing.bootstrap import price_list
from services.billing.domain.budgets import Attribution, BudgetExceeded, BudgetScope
from services.billing.domain.errors import ApiKeyNotFound, InsufficientCredits
from services.billing.domain.ids import BatchId, TaskId
from services.billing.domain.ledger import OutcomeKind, TaskOutcome
from services.billing.domain.pricing import QuoteLine
from services.billing.domain.quotes import (
    QUOTE_VALIDITY,
    QuoteExpired,
    QuoteMismatch,
    QuoteNotFound,
    QuoteUsed,
)
from services.billing.use_cases.handlers import BillingHandlers

from .billing_testkit import Clock, assert_ledger_invariants, funded_tenant, new_batch_id

SORA = "sora-2"
PRICE = 10  # sora-2 credits per video in the default price list


def sora(count: int, unit_price: int = 0) -> list[QuoteLine]:
    return [QuoteLine(SORA, count, unit_price)]


def refund(batch_id: BatchId, task: str) -> TaskOutcome:
    return TaskOutcome(
        batch_id=batch_id, task_id=TaskId(f"{batch_id}-{task}"), model=SORA, kind=OutcomeKind.REFUND
    )


async def test_a_batch_over_the_tenant_budget_is_refused_and_charged_nothing(
    handlers: BillingHandlers, database: Database
) -> None:
    tenant = await funded_tenant(handlers, 1_000)
    await handlers.set_budget(tenant, "tenant", "", 100)

    await handlers.reserve(tenant, new_batch_id(), sora(5))
    with pytest.raises(BudgetExceeded) as refused:
        await handlers.reserve(tenant, new_batch_id(), sora(6))

    assert refused.value.details["required_credits"] == "60"
    assert refused.value.details["remaining_credits"] == "50"
    assert refused.value.details["period_end"].endswith("+00:00")
    assert (await handlers.get_balance(tenant)).available_credits == 950
    [status] = await handlers.get_budgets(tenant, "tenant")
    assert (status.monthly_credits, status.used_credits, status.remaining_credits) == (100, 50, 50)
    await assert_ledger_invariants(database)


async def test_a_refund_gives_back_the_budget_of_the_month_of_the_freeze(
    handlers: BillingHandlers, clock: Clock, database: Database
) -> None:
    clock.now = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    tenant = await funded_tenant(handlers, 1_000)
    await handlers.set_budget(tenant, "tenant", "", 100)
    november = new_batch_id()
    await handlers.reserve(tenant, november, sora(10))
    with pytest.raises(BudgetExceeded):
        await handlers.reserve(tenant, new_batch_id(), sora(1))

    clock.now = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
    # A new month: the cap is whole again; November's refund gives back November's budget only.
    await handlers.charge_task(refund(november, "a"))
    [december] = await handlers.get_budgets(tenant, "tenant")
    assert (december.used_credits, december.remaining_credits) == (0, 100)
    await handlers.reserve(tenant, new_batch_id(), sora(10))
    with pytest.raises(BudgetExceeded):
        await handlers.reserve(tenant, new_batch_id(), sora(1))

    clock.now = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    [back_in_november] = await handlers.get_budgets(tenant, "tenant")
    assert back_in_november.used_credits == 90
    await handlers.reserve(tenant, new_batch_id(), sora(1))
    await assert_ledger_invariants(database)


async def test_key_and_project_budgets_count_only_their_own_batches(
    handlers: BillingHandlers, database: Database
) -> None:
    tenant = await funded_tenant(handlers, 1_000)
    key = (await handlers.create_api_key(tenant)).key_id
    other_key = (await handlers.create_api_key(tenant)).key_id
    await handlers.set_budget(tenant, "api_key", str(key), 30)
    await handlers.set_budget(tenant, "project", "launch", 20)
    by_key = Attribution(api_key_id=str(key))

    await handlers.reserve(tenant, new_batch_id(), sora(3), by_key)
    with pytest.raises(BudgetExceeded) as over_key:
        await handlers.reserve(tenant, new_batch_id(), sora(1), by_key)
    await handlers.reserve(tenant, new_batch_id(), sora(5), Attribution(api_key_id=str(other_key)))
    await handlers.reserve(
        tenant, new_batch_id(), sora(2), Attribution(api_key_id=str(other_key), project="launch")
    )
    with pytest.raises(BudgetExceeded) as over_project:
        await handlers.reserve(tenant, new_batch_id(), sora(1), Attribution(project="launch"))

    assert over_key.value.details["budget_scope"] == BudgetScope.API_KEY.value
    assert over_project.value.details["budget_scope"] == BudgetScope.PROJECT.value
    statuses = {
        (s.key.scope.value, s.key.scope_id): s.used_credits for s in await handlers.get_budgets(tenant)
    }
    assert statuses == {("tenant", ""): 100, ("api_key", str(key)): 30, ("project", "launch"): 20}
    await assert_ledger_invariants(database)


async def test_budgets_are_validated_and_keys_must_be_the_tenants(handlers: BillingHandlers) -> None:
    tenant = await funded_tenant(handlers, 0)
    stranger = await funded_tenant(handlers, 0)
    strangers_key = (await handlers.create_api_key(stranger)).key_id

    for scope, scope_id, cap in [
        ("tenant", "", -1),
        ("tenant", "", 10**16),
        ("tenant", "x", 5),
        ("galaxy", "", 5),
        ("project", "", 5),
        ("project", "p" * 513, 5),
        ("api_key", "not-a-uuid", 5),
    ]:
        with pytest.raises(InvalidArgument):
            await handlers.set_budget(tenant, scope, scope_id, cap)
    with pytest.raises(ApiKeyNotFound):
        await handlers.set_budget(tenant, "api_key", str(strangers_key), 5)
    removed = await handlers.set_budget(tenant, "tenant", "", None)
    assert removed.monthly_credits is None and removed.remaining_credits is None


async def test_fifty_concurrent_freezes_never_spend_past_the_budget(
    handlers: BillingHandlers, database: Database
) -> None:
    """The figures of issue 29's concurrency test at the ledger: 50 batches of 3 videos (30 credits
    each, 1,500 in all) against 10,000 credits and a 400-credit budget: 13 admitted, 37 refused."""
    tenant = await funded_tenant(handlers, 10_000)
    await handlers.set_budget(tenant, "tenant", "", 400)

    outcomes = await asyncio.gather(
        *(handlers.reserve(tenant, new_batch_id(), sora(3)) for _ in range(50)), return_exceptions=True
    )

    refused = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert all(isinstance(outcome, BudgetExceeded) for outcome in refused), refused
    admitted = len(outcomes) - len(refused)
    [status] = await handlers.get_budgets(tenant, "tenant")
    assert (admitted, len(refused), status.used_credits) == (13, 37, 390)
    assert (await handlers.get_balance(tenant)).available_credits == 10_000 - 390
    await assert_ledger_invariants(database)


async def test_insufficient_credits_is_still_refused_under_a_larger_budget(handlers: BillingHandlers) -> None:
    tenant = await funded_tenant(handlers, 20)
    await handlers.set_budget(tenant, "tenant", "", 1_000)
    with pytest.raises(InsufficientCredits):
        await handlers.reserve(tenant, new_batch_id(), sora(3))


async def test_a_quote_is_honoured_once_at_its_price_even_after_a_price_change(
    handlers: BillingHandlers, database: Database, clock: Clock
) -> None:
    tenant = await funded_tenant(handlers, 1_000)
    stored = await handlers.create_quote(tenant, sora(4), "body-1")
    assert stored.total == 4 * PRICE and stored.expires_at == clock.now + QUOTE_VALIDITY

    raised = dict(DEFAULT_PRICING)
    raised[SORA] = raised[SORA].model_copy(update={"credits_per_video": 25})
    repriced = BillingHandlers(
        BillingRepository(database), price_list(raised), outcome_source=None, chunk_size=200, clock=clock
    )
    batch = new_batch_id()
    quoted_lines = list(stored.lines)
    reserved = await repriced.reserve(
        tenant, batch, quoted_lines, quote_id=stored.quote_id, fingerprint="body-1"
    )
    assert reserved.frozen_credits == 4 * PRICE
    # The same batch again is a replay, not a second use.
    again = await repriced.reserve(
        tenant, batch, quoted_lines, quote_id=stored.quote_id, fingerprint="body-1"
    )
    assert again.replayed and again.frozen_credits == 4 * PRICE
    with pytest.raises(QuoteUsed):
        await repriced.reserve(
            tenant, new_batch_id(), quoted_lines, quote_id=stored.quote_id, fingerprint="body-1"
        )
    # Without a quote the new price applies.
    assert (await repriced.reserve(tenant, new_batch_id(), sora(1))).frozen_credits == 25
    assert (await handlers.get_quote(tenant, str(stored.quote_id))).batch_id == batch
    await assert_ledger_invariants(database)


async def test_a_quote_is_refused_after_expiry_with_another_body_or_by_another_tenant(
    handlers: BillingHandlers, database: Database, clock: Clock
) -> None:
    tenant = await funded_tenant(handlers, 1_000)
    stranger = await funded_tenant(handlers, 1_000)
    stored = await handlers.create_quote(tenant, sora(2), "body-2")
    lines = list(stored.lines)

    with pytest.raises(QuoteMismatch):
        await handlers.reserve(tenant, new_batch_id(), lines, quote_id=stored.quote_id, fingerprint="body-3")
    with pytest.raises(QuoteMismatch):
        await handlers.reserve(
            tenant,
            new_batch_id(),
            [replace(lines[0], count=3)],
            quote_id=stored.quote_id,
            fingerprint="body-2",
        )
    with pytest.raises(QuoteNotFound):
        await handlers.reserve(
            stranger, new_batch_id(), lines, quote_id=stored.quote_id, fingerprint="body-2"
        )
    with pytest.raises(NotFound):
        await handlers.get_quote(stranger, str(stored.quote_id))
    with pytest.raises(QuoteNotFound):
        await handlers.reserve(tenant, new_batch_id(), lines, quote_id=uuid.uuid4(), fingerprint="body-2")
    clock.now += QUOTE_VALIDITY + timedelta(seconds=1)
    with pytest.raises(QuoteExpired):
        await handlers.reserve(tenant, new_batch_id(), lines, quote_id=stored.quote_id, fingerprint="body-2")
    assert (await handlers.get_balance(tenant)).available_credits == 1_000
    assert (await handlers.get_quote(tenant, str(stored.quote_id))).batch_id is None
    await assert_ledger_invariants(database)


async def test_concurrent_creates_citing_one_quote_use_it_once(
    handlers: BillingHandlers, database: Database
) -> None:
    tenant = await funded_tenant(handlers, 1_000)
    stored = await handlers.create_quote(tenant, sora(2), "body-4")

    outcomes = await asyncio.gather(
        *(
            handlers.reserve(
                tenant, new_batch_id(), list(stored.lines), quote_id=stored.quote_id, fingerprint="body-4"
            )
            for _ in range(10)
        ),
        return_exceptions=True,
    )

    assert sum(not isinstance(outcome, BaseException) for outcome in outcomes) == 1
    assert all(isinstance(o, QuoteUsed) for o in outcomes if isinstance(o, BaseException))
    assert (await handlers.get_balance(tenant)).available_credits == 1_000 - 2 * PRICE
    await assert_ledger_invariants(database)


async def test_api_keys_carry_scopes_and_stop_at_their_expiry(
    handlers: BillingHandlers, clock: Clock
) -> None:
    tenant = await funded_tenant(handlers, 0)
    everything = await handlers.create_api_key(tenant)
    batches_only = await handlers.create_api_key(
        tenant, scopes=["batches"], expires_at=clock.now + timedelta(hours=1)
    )

    full = await handlers.authenticate_api_key(everything.api_key)
    limited = await handlers.authenticate_api_key(batches_only.api_key)
    assert {scope.value for scope in full.scopes} == {"batches", "read", "billing"}
    assert {scope.value for scope in limited.scopes} == {"batches"}
    assert limited.expires_at == clock.now + timedelta(hours=1)

    clock.now += timedelta(hours=1)
    with pytest.raises(Unauthenticated):
        await handlers.authenticate_api_key(batches_only.api_key)
    with pytest.raises(InvalidArgument):
        await handlers.create_api_key(tenant, scopes=["root"])
    with pytest.raises(InvalidArgument):
        await handlers.create_api_key(tenant, expires_at=clock.now - timedelta(seconds=1))
