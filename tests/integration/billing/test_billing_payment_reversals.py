"""Payments that go back (issue 29 item 4, ADR-134) against a real PostgreSQL and the fake Stripe:
a refunded or disputed payment takes its credits back from the available credits first, what was
already spent becomes a recorded debt that refuses new batches until a payment pays it, a dispute
won returns the credits, and every delivery is idempotent."""

from __future__ import annotations

import pytest

from libs.db import Database
from services.billing.domain.ids import TenantId
from services.billing.domain.payments import EventOutcome
from services.billing.domain.pricing import QuoteLine
from services.billing.domain.reversals import DebtOutstanding
from services.billing.domain.statements import month_of
from services.billing.use_cases.handlers import BillingHandlers
from tests.fakes.stripe_checkout import FakeStripe

from .billing_testkit import Clock, assert_ledger_invariants, new_batch_id
from .stripe_testkit import GROWTH, PILOT, buy_pack, deliver, fake_stripe, stripe_call, stripe_handlers

__all__ = ["fake_stripe"]

SORA = "sora-2"  # 10 credits per video


@pytest.fixture
def billing(database: Database, clock: Clock, fake_stripe: FakeStripe) -> BillingHandlers:
    fake_stripe.take_undelivered()
    return stripe_handlers(database, clock, fake_stripe)


async def spend(handlers: BillingHandlers, tenant: TenantId, credits: int) -> None:
    await handlers.reserve(tenant, new_batch_id(), [QuoteLine(SORA, credits // 10)])


async def test_a_refund_of_a_fully_spent_pack_becomes_a_debt_that_refuses_batches_until_paid(
    billing: BillingHandlers, fake_stripe: FakeStripe, database: Database
) -> None:
    tenant = await billing.create_tenant("refunded studio")
    intent = await buy_pack(billing, fake_stripe, tenant)
    await spend(billing, tenant, 111_880)  # all but 8 credits of the pack's 111,888

    await stripe_call(fake_stripe, "/v1/refunds", {"payment_intent": intent})
    refunded, _refund_created = await deliver(billing, fake_stripe)

    assert refunded.outcome is EventOutcome.REVERSED
    assert (refunded.reversed_credits, refunded.debt_credits) == (PILOT.credits, 111_880)
    balance = await billing.get_balance(tenant)
    assert (balance.available_credits, balance.debt_credits) == (0, 111_880)
    with pytest.raises(DebtOutstanding) as refused:
        await spend(billing, tenant, 10)
    assert refused.value.details["debt_credits"] == "111880"
    await assert_ledger_invariants(database)

    # The next payment pays the debt first; the rest is spendable again.
    await buy_pack(billing, fake_stripe, tenant, "growth")
    balance = await billing.get_balance(tenant)
    assert (balance.available_credits, balance.debt_credits) == (GROWTH.credits - 111_880, 0)
    await spend(billing, tenant, 10)
    statement = await billing.statement(tenant, month_of(billing.dependencies.clock()))
    assert (statement.reversed, statement.debt_paid, statement.closing_debt) == (8, 111_880, 0)
    await assert_ledger_invariants(database)


async def test_every_refund_event_delivered_twice_and_out_of_order_takes_back_once(
    billing: BillingHandlers, fake_stripe: FakeStripe, database: Database
) -> None:
    tenant = await billing.create_tenant("partly refunded")
    intent = await buy_pack(billing, fake_stripe, tenant)
    await stripe_call(fake_stripe, "/v1/refunds", {"payment_intent": intent, "amount": "24975"})  # a quarter
    first = fake_stripe.take_undelivered()
    await stripe_call(fake_stripe, "/v1/refunds", {"payment_intent": intent, "amount": "24975"})
    second = fake_stripe.take_undelivered()

    # The later (cumulative) level first, then everything again.
    for payload, signature in second + first + second + first:
        await billing.handle_stripe_event(payload, signature)

    half = PILOT.credits * 49_950 // PILOT.price_usd_cents
    balance = await billing.get_balance(tenant)
    assert (balance.available_credits, balance.debt_credits) == (PILOT.credits - half, 0)
    await assert_ledger_invariants(database)


async def test_a_dispute_lost_keeps_the_credits_taken_and_the_debt(
    billing: BillingHandlers, fake_stripe: FakeStripe, database: Database
) -> None:
    tenant = await billing.create_tenant("disputed, lost")
    intent = await buy_pack(billing, fake_stripe, tenant)
    await spend(billing, tenant, 100_000)
    dispute = await stripe_call(fake_stripe, "/v1/test_helpers/disputes", {"payment_intent": intent})
    created, withdrawn = await deliver(billing, fake_stripe)
    assert (created.outcome, withdrawn.outcome) == (EventOutcome.REVERSED, EventOutcome.IGNORED)
    assert (created.reversed_credits, created.debt_credits) == (PILOT.credits, 100_000)

    await stripe_call(fake_stripe, f"/v1/disputes/{dispute['id']}/close", {})
    [closed] = await deliver(billing, fake_stripe)

    assert closed.outcome is EventOutcome.IGNORED
    balance = await billing.get_balance(tenant)
    assert (balance.available_credits, balance.debt_credits) == (0, 100_000)
    # Operators' reconciliation audits debt accounts too (the module's database holds other
    # tests' deliberately broken holds: only debt accounts are looked at here).
    report = await billing.reconcile()
    assert [found for found in report.discrepancies if "debt account" in found.subject] == []
    await assert_ledger_invariants(database)


async def test_a_dispute_won_returns_the_credits_to_the_debt_first(
    billing: BillingHandlers, fake_stripe: FakeStripe, database: Database
) -> None:
    tenant = await billing.create_tenant("disputed, won")
    intent = await buy_pack(billing, fake_stripe, tenant)
    await spend(billing, tenant, 100_000)
    dispute = await stripe_call(fake_stripe, "/v1/test_helpers/disputes", {"payment_intent": intent})
    await deliver(billing, fake_stripe)
    assert (await billing.get_balance(tenant)).debt_credits == 100_000

    await stripe_call(
        fake_stripe, f"/v1/disputes/{dispute['id']}", {"evidence[uncategorized_text]": "winning_evidence"}
    )
    closed, reinstated = await deliver(billing, fake_stripe)

    assert (closed.outcome, closed.reinstated_credits) == (EventOutcome.REINSTATED, PILOT.credits)
    assert reinstated.outcome is EventOutcome.IGNORED  # funds_reinstated after closed: already returned
    balance = await billing.get_balance(tenant)
    assert (balance.available_credits, balance.debt_credits) == (PILOT.credits - 100_000, 0)
    await spend(billing, tenant, 10)
    await assert_ledger_invariants(database)
