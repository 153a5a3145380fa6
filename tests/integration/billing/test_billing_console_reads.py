"""The customer console's billing reads against a real PostgreSQL: usage per day and model, the
filtered ledger with each refund's model, receipts, console settings, and Stripe Checkout Sessions
opened through a fake that follows Stripe's API (and paid on its hosted page)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from libs.db import Database
from libs.errors import InvalidArgument
from libs.price_list import DEFAULT_PACKS, DEFAULT_PRICING
from services.billing.adapters.repository import BillingRepository
from services.billing.adapters.stripe_checkout import StripeCheckout
from services.billing.adapters.stripe_webhooks import StripeWebhookVerifier
from services.billing.bootstrap import pack_catalog, price_list
from services.billing.domain.console_settings import ConsoleSettings
from services.billing.domain.errors import PaymentNotFound, PaymentsNotConfigured
from services.billing.domain.ids import TaskId, TenantId
from services.billing.domain.ledger import LedgerFilter, OutcomeKind, RefType, TaskOutcome
from services.billing.domain.payments import EventOutcome
from services.billing.domain.pricing import QuoteLine
from services.billing.use_cases.handlers import BillingHandlers
from tests.fakes.stripe_checkout import SECRET_KEY, FakeStripe, running_fake_stripe

from .billing_testkit import assert_ledger_invariants, new_batch_id

WEBHOOK_SECRET = "whsec_console_reads"
PILOT = DEFAULT_PACKS["pilot"]


@pytest.fixture(scope="module")
def fake_stripe() -> Iterator[FakeStripe]:
    with running_fake_stripe(WEBHOOK_SECRET) as state:
        yield state


def console_handlers(database: Database, stripe_api: str | None = None) -> BillingHandlers:
    return BillingHandlers(
        BillingRepository(database),
        price_list(dict(DEFAULT_PRICING)),
        outcome_source=None,
        chunk_size=50,
        packs=pack_catalog(dict(DEFAULT_PACKS)),
        stripe_verifier=StripeWebhookVerifier(WEBHOOK_SECRET, tolerance_seconds=300),
        checkout=StripeCheckout(SECRET_KEY, stripe_api) if stripe_api else None,
    )


async def spent_and_refunded_batch(handlers: BillingHandlers, tenant_id: TenantId) -> None:
    """A settled batch: 3 sora-2 (10 each) and 1 veo-3; one sora-2 and the veo-3 refunded."""
    batch_id = new_batch_id()
    await handlers.reserve(tenant_id, batch_id, [QuoteLine("sora-2", 3), QuoteLine("veo-3", 1)])
    await handlers.apply_task_outcomes(
        [
            TaskOutcome(batch_id, TaskId(f"{batch_id}-0"), "sora-2", OutcomeKind.CAPTURE),
            TaskOutcome(batch_id, TaskId(f"{batch_id}-1"), "sora-2", OutcomeKind.CAPTURE),
            TaskOutcome(batch_id, TaskId(f"{batch_id}-2"), "sora-2", OutcomeKind.REFUND),
            TaskOutcome(batch_id, TaskId(f"{batch_id}-3"), "veo-3", OutcomeKind.REFUND),
        ]
    )
    await handlers.settle(batch_id)


async def test_usage_per_day_and_model_sums_to_the_ledger_and_values_granted_credits_at_zero(
    database: Database,
) -> None:
    handlers = console_handlers(database)
    tenant_id = await handlers.create_tenant("usage")
    await handlers.record_invoice_payment(tenant_id, f"INV-{uuid.uuid4().hex}", "", 300, 600)
    await handlers.top_up(tenant_id, 100, "welcome-grant")
    await spent_and_refunded_batch(handlers, tenant_id)
    now = datetime.now(UTC)

    usage = await handlers.usage(tenant_id, now - timedelta(days=1), now + timedelta(minutes=1))

    by_model = {row.model: (row.spent, row.refunded) for row in usage.days}
    veo_price = DEFAULT_PRICING["veo-3"].credits_per_video
    assert by_model == {"sora-2": (30, 10), "veo-3": (veo_price, veo_price)}
    ledger = (await handlers.list_ledger_entries(tenant_id, None, "", 500)).lines
    upfront = -sum(line.credits_delta for line in ledger if line.ref_type is RefType.BATCH_UPFRONT)
    given_back = sum(
        line.credits_delta for line in ledger if line.ref_type in (RefType.BATCH_REFUND, RefType.BATCH_SETTLE)
    )
    assert sum(row.spent for row in usage.days) == upfront
    assert sum(row.refunded for row in usage.days) == given_back
    # $6.00 for 300 paid + 100 granted credits: 1.5 cents (15,000 micros) a credit.
    assert (usage.paid.paid_usd_cents, usage.paid.purchased_credits, usage.paid.granted_credits) == (
        600,
        300,
        100,
    )
    assert usage.paid.average_price_usd_micros == 15_000


async def test_a_usage_period_must_be_given_and_bounded(database: Database) -> None:
    handlers = console_handlers(database)
    tenant_id = await handlers.create_tenant("bounded usage")
    now = datetime.now(UTC)

    with pytest.raises(InvalidArgument):
        await handlers.usage(tenant_id, None, now)
    with pytest.raises(InvalidArgument):
        await handlers.usage(tenant_id, now - timedelta(days=400), now)
    with pytest.raises(InvalidArgument):
        await handlers.usage(tenant_id, now, now - timedelta(days=1))


async def test_the_ledger_filters_by_type_and_date_and_names_each_refunds_model(database: Database) -> None:
    handlers = console_handlers(database)
    tenant_id = await handlers.create_tenant("filtered ledger")
    await handlers.top_up(tenant_id, 200, "grant")
    await spent_and_refunded_batch(handlers, tenant_id)
    now = datetime.now(UTC)

    refunds = await handlers.list_ledger_entries(
        tenant_id, None, "", 50, LedgerFilter(ref_type=RefType.BATCH_REFUND)
    )
    future = await handlers.list_ledger_entries(
        tenant_id, None, "", 50, LedgerFilter(created_from=now + timedelta(hours=1))
    )
    past = await handlers.list_ledger_entries(
        tenant_id, None, "", 50, LedgerFilter(created_to=now + timedelta(hours=1))
    )

    assert sorted((line.model, line.credits_delta) for line in refunds.lines) == [
        ("sora-2", 10),
        ("veo-3", DEFAULT_PRICING["veo-3"].credits_per_video),
    ]
    assert future.lines == ()
    assert {line.ref_type for line in past.lines} == {
        RefType.TOPUP,
        RefType.BATCH_UPFRONT,
        RefType.BATCH_REFUND,
    }
    assert all(line.model is None for line in past.lines if line.ref_type is not RefType.BATCH_REFUND)


async def test_receipts_list_a_tenants_payments_and_another_tenants_payment_is_not_found(
    database: Database,
) -> None:
    handlers = console_handlers(database)
    payer = await handlers.create_tenant("payer")
    stranger = await handlers.create_tenant("stranger")
    await handlers.record_invoice_payment(payer, "INV-A", "pilot", 0, 0)
    await handlers.record_invoice_payment(payer, "INV-B", "", 700, 700)

    receipts, next_cursor = await handlers.list_receipts(payer, "", 1)
    rest, last_cursor = await handlers.list_receipts(payer, next_cursor, 1)
    receipt = await handlers.get_receipt(payer, str(rest[0].payment_id))

    assert [(r.reference, r.credits) for r in (*receipts, *rest)] == [
        ("INV-B", 700),
        ("INV-A", PILOT.credits),
    ]
    assert last_cursor == ""
    assert (receipt.pack_id, receipt.amount_usd_cents) == ("pilot", PILOT.price_usd_cents)
    for payment_id in (str(receipt.payment_id), "not-a-number", "99999999999999999999"):
        with pytest.raises(PaymentNotFound):
            await handlers.get_receipt(stranger, payment_id)


async def test_console_settings_default_to_finance_not_buying_and_are_stored(database: Database) -> None:
    handlers = console_handlers(database)
    tenant_id = await handlers.create_tenant("settings")

    default = await handlers.get_console_settings(tenant_id)
    stored = await handlers.update_console_settings(ConsoleSettings(tenant_id, finance_may_buy_credits=True))
    reread = await handlers.get_console_settings(tenant_id)

    assert (default.finance_may_buy_credits, stored.finance_may_buy_credits) == (False, True)
    assert reread == stored


async def test_a_checkout_opened_with_stripe_and_paid_on_its_page_credits_the_pack_once(
    database: Database, fake_stripe: FakeStripe
) -> None:
    handlers = console_handlers(database, fake_stripe.api_url)
    tenant_id = await handlers.create_tenant("checkout")
    received: list[EventOutcome] = []

    opened = await handlers.open_checkout(
        tenant_id, "pilot", "https://console.test/ok?s={CHECKOUT_SESSION_ID}", "https://console.test/no"
    )
    session = fake_stripe.sessions[opened.session_id]
    assert (session["amount_total"], session["metadata"]) == (
        PILOT.price_usd_cents,
        {"tenant_id": str(tenant_id), "pack_id": "pilot"},
    )
    assert opened.url.startswith(fake_stripe.api_url)
    # The hosted page's Pay button: the fake signs the completed event; deliver it to billing.
    fake_stripe.webhook_url = f"{fake_stripe.api_url}/nowhere"
    async with httpx.AsyncClient() as client:
        paid = await client.post(opened.url, follow_redirects=False)
    assert paid.headers["location"] == f"https://console.test/ok?s={opened.session_id}"
    event = fake_stripe.sent_events[-1]
    payload = json.dumps(event).encode()
    for _ in range(2):
        received.append((await handlers.handle_stripe_event(payload, fake_stripe.sign(payload))).outcome)

    assert received == [EventOutcome.CREDITED, EventOutcome.DUPLICATE_EVENT]
    assert (await handlers.get_balance(tenant_id)).available_credits == PILOT.credits
    receipts, _ = await handlers.list_receipts(tenant_id, "", 10)
    assert [(r.reference, r.payment_intent) for r in receipts] == [
        (opened.session_id, session["payment_intent"])
    ]
    await assert_ledger_invariants(database)


async def test_a_checkout_without_a_stripe_key_or_for_an_unknown_pack_is_refused(
    database: Database, fake_stripe: FakeStripe
) -> None:
    unconfigured = console_handlers(database)
    configured = console_handlers(database, fake_stripe.api_url)
    tenant_id = await configured.create_tenant("refused checkout")

    with pytest.raises(PaymentsNotConfigured):
        await unconfigured.open_checkout(tenant_id, "pilot", "https://a.test/", "https://a.test/")
    with pytest.raises(InvalidArgument):
        await configured.open_checkout(tenant_id, "no-such-pack", "https://a.test/", "https://a.test/")
    with pytest.raises(InvalidArgument):
        await configured.open_checkout(tenant_id, "pilot", "javascript:alert(1)", "https://a.test/")
