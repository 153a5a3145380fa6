"""Automatic top-up (issue 29 item 5, ADR-135) against a real PostgreSQL and the fake Stripe: the
freeze that takes the available credits below the threshold asks for one purchase, the loop charges
it off-session once per crossing (Stripe Idempotency-Key), the verified `payment_intent.succeeded`
webhook credits it, and a declined card turns auto top-up off and alerts the owner."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from reelbatch.proto.events.v1 import events_pb2
from sqlalchemy import text

from libs.db import Database
from services.billing.adapters.stripe_payments import OffSessionCharge
from services.billing.domain.auto_top_up import NoSavedPaymentMethod, PurchaseStatus
from services.billing.domain.ids import TenantId
from services.billing.domain.payments import EventOutcome
from services.billing.domain.pricing import QuoteLine
from services.billing.use_cases.handlers import BillingHandlers
from tests.fakes.stripe_checkout import FakeStripe

from .billing_testkit import Clock, assert_ledger_invariants, new_batch_id
from .stripe_testkit import PILOT, buy_pack, deliver, fake_stripe, save_card, stripe_handlers

__all__ = ["fake_stripe"]

SORA = "sora-2"  # 10 credits per video
THRESHOLD = 50_000


@pytest.fixture
def billing(database: Database, clock: Clock, fake_stripe: FakeStripe) -> BillingHandlers:
    fake_stripe.take_undelivered()
    return stripe_handlers(database, clock, fake_stripe)


async def freeze(handlers: BillingHandlers, tenant: TenantId, credits: int) -> None:
    await handlers.reserve(tenant, new_batch_id(), [QuoteLine(SORA, credits // 10)])


async def tenant_with_auto_top_up(
    billing: BillingHandlers, fake: FakeStripe, card: str | None = None, max_per_month: int = 3
) -> TenantId:
    """A tenant that bought a Pilot pack in Checkout (its card saved), then turned auto top-up on."""
    tenant = await billing.create_tenant(f"auto {uuid.uuid4().hex[:6]}")
    await buy_pack(billing, fake, tenant)
    if card is not None:
        await save_card(fake, billing, tenant, card)
    status = await billing.set_auto_top_up(tenant, True, THRESHOLD, "pilot", max_per_month)
    assert status.settings.enabled and status.settings.payment_method_label.startswith("visa")
    return tenant


async def alerts_of(database: Database, tenant: TenantId) -> list[events_pb2.SpendAlert]:
    async with database.connection() as conn:
        rows = await conn.execute(text("SELECT body FROM billing.outbox WHERE routing_key = 'billing.alert'"))
        found = [events_pb2.SpendAlert.FromString(bytes(row.body)) for row in rows]
    return [alert for alert in found if alert.tenant_id == str(tenant)]


async def test_twenty_concurrent_freezes_crossing_the_threshold_buy_exactly_one_pack(
    billing: BillingHandlers, fake_stripe: FakeStripe, database: Database
) -> None:
    tenant = await tenant_with_auto_top_up(billing, fake_stripe)
    created_before = fake_stripe.intents_created

    # 111,888 - 20 x 4,000 = 31,888: the 50,000 line is crossed once, by one of the 20.
    await asyncio.gather(*(freeze(billing, tenant, 4_000) for _ in range(20)))
    # Three loop rounds at once, as three billing replicas would run them.
    await asyncio.gather(*(billing.charge_due_top_ups(10, 60.0) for _ in range(3)))
    results = await deliver(billing, fake_stripe)

    assert fake_stripe.intents_created - created_before == 1
    assert [r.outcome for r in results] == [EventOutcome.CREDITED, EventOutcome.IGNORED]
    assert results[0].credits == PILOT.credits
    assert (await billing.get_balance(tenant)).available_credits == 31_888 + PILOT.credits
    status = await billing.get_auto_top_up(tenant)
    assert [p.status for p in status.recent] == [PurchaseStatus.SUCCEEDED]
    assert status.bought_this_month == 1
    await assert_ledger_invariants(database)


async def test_a_charge_repeated_after_a_crash_is_the_same_payment_intent(
    billing: BillingHandlers, fake_stripe: FakeStripe, database: Database
) -> None:
    tenant = await tenant_with_auto_top_up(billing, fake_stripe)
    await freeze(billing, tenant, 70_000)
    [purchase] = (await billing.get_auto_top_up(tenant)).recent
    settings = (await billing.get_auto_top_up(tenant)).settings
    async with database.connection() as conn:
        key = (
            await conn.execute(
                text("SELECT crossing_key FROM billing.auto_top_ups WHERE id = :id"),
                {"id": purchase.purchase_id},
            )
        ).scalar_one()
    # The loop called Stripe, then its process died before it recorded the answer.
    payments = billing.dependencies.stripe_payments
    assert payments is not None
    first = await payments.charge(
        OffSessionCharge(
            tenant,
            str(purchase.purchase_id),
            "pilot",
            PILOT.price_usd_cents,
            settings.stripe_customer_id,
            settings.payment_method_id,
            key,
        )
    )
    created = fake_stripe.intents_created

    await billing.charge_due_top_ups(10, 60.0)  # the next process's round: same key, same intent
    results = await deliver(billing, fake_stripe)

    assert fake_stripe.intents_created == created
    [again] = (await billing.get_auto_top_up(tenant)).recent
    assert again.payment_intent == first.intent_id
    assert [r.outcome for r in results if r.event_type == "payment_intent.succeeded"] == [
        EventOutcome.CREDITED
    ]
    assert (await billing.get_balance(tenant)).available_credits == 111_888 - 70_000 + PILOT.credits
    await assert_ledger_invariants(database)


@pytest.mark.parametrize(
    ("card", "code"),
    [
        ("pm_card_chargeCustomerFail", "card_declined"),
        ("pm_card_authenticationRequired", "authentication_required"),
    ],
)
async def test_a_declined_payment_turns_auto_top_up_off_and_alerts_the_owner(
    billing: BillingHandlers, fake_stripe: FakeStripe, database: Database, card: str, code: str
) -> None:
    tenant = await tenant_with_auto_top_up(billing, fake_stripe, card=card)
    await freeze(billing, tenant, 70_000)

    await billing.charge_due_top_ups(10, 60.0)
    results = await deliver(billing, fake_stripe)  # payment_intent.payment_failed reports it again

    status = await billing.get_auto_top_up(tenant)
    assert not status.settings.enabled and code in status.settings.disabled_reason
    assert [(p.status, p.failure_code) for p in status.recent] == [(PurchaseStatus.FAILED, code)]
    assert EventOutcome.PAYMENT_FAILED in [r.outcome for r in results]
    [alert] = await alerts_of(database, tenant)
    assert (alert.alert_type, alert.failure_code, alert.pack_id) == ("auto_top_up.failed", code, "pilot")
    assert (await billing.get_balance(tenant)).available_credits == 111_888 - 70_000
    # Off: the next crossing buys nothing.
    await billing.top_up(tenant, 100_000, f"grant-{uuid.uuid4()}")
    await freeze(billing, tenant, 100_000)
    assert len((await billing.get_auto_top_up(tenant)).recent) == 1
    await assert_ledger_invariants(database)


async def test_crossings_buy_at_most_the_monthly_limit(
    billing: BillingHandlers, fake_stripe: FakeStripe, database: Database
) -> None:
    tenant = await tenant_with_auto_top_up(billing, fake_stripe, max_per_month=1)
    await freeze(billing, tenant, 70_000)
    await billing.charge_due_top_ups(10, 60.0)
    await deliver(billing, fake_stripe)
    await freeze(billing, tenant, 150_000)  # 153,776 -> 3,776: crossed again

    status = await billing.get_auto_top_up(tenant)
    assert (status.bought_this_month, len(status.recent)) == (1, 1)
    await assert_ledger_invariants(database)


async def test_turning_it_on_needs_a_saved_card(billing: BillingHandlers) -> None:
    tenant = await billing.create_tenant("no card yet")
    with pytest.raises(NoSavedPaymentMethod):
        await billing.set_auto_top_up(tenant, True, THRESHOLD, "pilot", 1)
    assert not (await billing.get_auto_top_up(tenant)).settings.enabled
