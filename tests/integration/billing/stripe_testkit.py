"""Billing wired to the fake Stripe (Checkout, saved cards, off-session PaymentIntents, refunds and
disputes) on a real PostgreSQL, and the steps of a payment's life a test drives through the fake:
what Stripe sends is delivered to billing's verified webhook path (`handle_stripe_event`)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from libs.db import Database
from libs.price_list import DEFAULT_PACKS, DEFAULT_PRICING
from services.billing.adapters.repository import BillingRepository
from services.billing.adapters.stripe_checkout import StripeCheckout
from services.billing.adapters.stripe_payments import StripePayments
from services.billing.adapters.stripe_webhooks import StripeWebhookVerifier
from services.billing.bootstrap import pack_catalog, price_list
from services.billing.domain.ids import TenantId
from services.billing.use_cases.handlers import BillingHandlers
from services.billing.use_cases.payments import PaymentEventResult
from tests.fakes.stripe_api import SECRET_KEY
from tests.fakes.stripe_checkout import FakeStripe, running_fake_stripe

from .billing_testkit import Clock

WEBHOOK_SECRET = "whsec_test_payments_go_back"
PILOT = DEFAULT_PACKS["pilot"]
GROWTH = DEFAULT_PACKS["growth"]
AUTH = {"Authorization": f"Bearer {SECRET_KEY}"}


@pytest.fixture(scope="module")
def fake_stripe() -> Iterator[FakeStripe]:
    with running_fake_stripe(WEBHOOK_SECRET) as state:
        yield state


def stripe_handlers(database: Database, clock: Clock, fake: FakeStripe) -> BillingHandlers:
    """Billing as a process with Stripe configured at the fake would run it."""
    return BillingHandlers(
        BillingRepository(database),
        price_list(dict(DEFAULT_PRICING)),
        outcome_source=None,
        chunk_size=50,
        clock=clock,
        packs=pack_catalog(dict(DEFAULT_PACKS)),
        credit_value_usd_micros=10_000,
        stripe_verifier=StripeWebhookVerifier(WEBHOOK_SECRET, tolerance_seconds=300),
        checkout=StripeCheckout(SECRET_KEY, fake.api_url),
        stripe_payments=StripePayments(SECRET_KEY, fake.api_url),
    )


async def deliver(handlers: BillingHandlers, fake: FakeStripe) -> list[PaymentEventResult]:
    """Delivers what Stripe sent since the last call to billing's webhook path, in order."""
    return [
        await handlers.handle_stripe_event(payload, signature)
        for payload, signature in fake.take_undelivered()
    ]


async def stripe_call(fake: FakeStripe, path: str, form: dict[str, str]) -> dict[str, object]:
    """A call to the fake's API as a Stripe dashboard or the card network would make it."""
    async with httpx.AsyncClient(base_url=fake.api_url, timeout=10) as client:
        answer = await client.post(path, data=form, headers=AUTH)
    assert answer.status_code == 200, answer.text
    found: dict[str, object] = answer.json()
    return found


async def buy_pack(
    handlers: BillingHandlers, fake: FakeStripe, tenant: TenantId, pack_id: str = "pilot"
) -> str:
    """Buys a pack through Checkout (its card is saved for off-session use); the PaymentIntent id."""
    opened = await handlers.open_checkout(tenant, pack_id, "https://studio.test/ok", "https://studio.test/no")
    async with httpx.AsyncClient(base_url=fake.api_url, timeout=10) as client:
        paid = await client.post(f"/c/pay/{opened.session_id}")
    assert paid.status_code == 303, paid.text
    delivered = await deliver(handlers, fake)
    assert [result.outcome.value for result in delivered] == ["credited"]
    intent = fake.sessions[opened.session_id]["payment_intent"]
    assert isinstance(intent, str)
    return intent


async def save_card(fake: FakeStripe, handlers: BillingHandlers, tenant: TenantId, token: str) -> None:
    """Saves a test card (Stripe's token) on the tenant's Stripe Customer, as a card paid with in
    Checkout would be (the customer is created the way billing creates it)."""
    async with handlers.dependencies.repository.transaction() as tx:
        customer = (await tx.auto_top_up.settings(tenant)).stripe_customer_id
    if not customer:
        from services.billing.use_cases.auto_top_up import customer_for_checkout

        customer = await customer_for_checkout(handlers.dependencies, tenant)
    await stripe_call(fake, f"/v1/payment_methods/{token}/attach", {"customer": customer})
