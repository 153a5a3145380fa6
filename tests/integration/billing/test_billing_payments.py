"""Buying credits against a real PostgreSQL: signed Stripe Checkout events, invoices, price changes,
monthly statements and margins."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from libs.db import Database
from libs.errors import InvalidArgument
from libs.price_list import DEFAULT_PACKS, DEFAULT_PRICING, ModelPricing
from services.billing.adapters.repository import BillingRepository
from services.billing.adapters.stripe_webhooks import StripeWebhookVerifier
from services.billing.bootstrap import pack_catalog, price_list
from services.billing.domain.ids import TaskId, TenantId
from services.billing.domain.ledger import OutcomeKind, TaskOutcome
from services.billing.domain.payments import EventOutcome, InvalidSignature
from services.billing.domain.pricing import QuoteLine
from services.billing.domain.statements import Month, month_of
from services.billing.use_cases.handlers import BillingHandlers

from .billing_testkit import assert_ledger_invariants, new_batch_id

SECRET = "whsec_test_integration"
LARGEST_BIGINT = 2**63 - 1
PILOT = DEFAULT_PACKS["pilot"]


def stripe_signature(payload: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    """Stripe's scheme: `t=<unix>,v1=HMAC_SHA256(secret, "<t>.<payload>")`."""
    signed_at = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{signed_at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={signed_at},v1={digest}"


def checkout_event(
    tenant_id: TenantId,
    *,
    event_id: str | None = None,
    session_id: str | None = None,
    event_type: str = "checkout.session.completed",
    amount_total: int = PILOT.price_usd_cents,
    pack_id: str = "pilot",
) -> bytes:
    """A checkout.session.completed event as Stripe sends it (the fields billing reads)."""
    document = {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": event_type,
        "data": {
            "object": {
                "id": session_id or f"cs_test_{uuid.uuid4().hex}",
                "object": "checkout.session",
                "payment_intent": f"pi_{uuid.uuid4().hex}",
                "payment_status": "paid",
                "amount_total": amount_total,
                "currency": "usd",
                "metadata": {"tenant_id": str(tenant_id), "pack_id": pack_id},
            }
        },
    }
    return json.dumps(document).encode()


def sales_handlers(database: Database, pricing: dict[str, ModelPricing] | None = None) -> BillingHandlers:
    """Billing as a process configured with `pricing` would run it (packs and Stripe included)."""
    return BillingHandlers(
        BillingRepository(database),
        price_list(pricing or dict(DEFAULT_PRICING)),
        outcome_source=None,
        chunk_size=50,
        packs=pack_catalog(dict(DEFAULT_PACKS)),
        credit_value_usd_micros=10_000,
        stripe_verifier=StripeWebhookVerifier(SECRET, tolerance_seconds=300),
    )


async def recorded_events(database: Database, outcome: EventOutcome) -> int:
    async with database.connection() as conn:
        found = await conn.execute(
            text("SELECT count(*) FROM billing.payment_events WHERE outcome = :outcome"),
            {"outcome": outcome.value},
        )
        return int(found.scalar_one())


async def purchases_of(database: Database, tenant_id: TenantId) -> list[tuple[str, int]]:
    async with database.connection() as conn:
        rows = await conn.execute(
            text(
                "SELECT ref_id, amount FROM billing.transfers"
                " WHERE tenant_id = :tenant AND ref_type = 'purchase'"
            ),
            {"tenant": tenant_id},
        )
        return [(row.ref_id, row.amount) for row in rows]


async def test_a_signed_pilot_checkout_delivered_five_times_concurrently_credits_once(
    database: Database,
) -> None:
    handlers = sales_handlers(database)
    tenant_id = await handlers.create_tenant("pilot buyer")
    session_id = f"cs_test_{uuid.uuid4().hex}"
    payload = checkout_event(tenant_id, session_id=session_id)
    signature = stripe_signature(payload)

    results = await asyncio.gather(*(handlers.handle_stripe_event(payload, signature) for _ in range(5)))

    outcomes = sorted(result.outcome for result in results)
    assert outcomes == [EventOutcome.CREDITED] + [EventOutcome.DUPLICATE_EVENT] * 4
    assert (await handlers.get_balance(tenant_id)).available_credits == PILOT.credits
    assert await purchases_of(database, tenant_id) == [(f"pilot:{session_id}", PILOT.credits)]
    await assert_ledger_invariants(database)


async def test_a_second_event_for_an_already_credited_session_credits_nothing(database: Database) -> None:
    handlers = sales_handlers(database)
    tenant_id = await handlers.create_tenant("async payer")
    session_id = f"cs_test_{uuid.uuid4().hex}"
    first = checkout_event(tenant_id, session_id=session_id)
    second = checkout_event(
        tenant_id, session_id=session_id, event_type="checkout.session.async_payment_succeeded"
    )

    credited = await handlers.handle_stripe_event(first, stripe_signature(first))
    repeated = await handlers.handle_stripe_event(second, stripe_signature(second))

    assert (credited.outcome, credited.credits) == (EventOutcome.CREDITED, PILOT.credits)
    assert (repeated.outcome, repeated.credits) == (EventOutcome.DUPLICATE_PAYMENT, 0)
    assert (await handlers.get_balance(tenant_id)).available_credits == PILOT.credits


@pytest.mark.parametrize(
    "signature_of",
    [
        pytest.param(lambda payload: stripe_signature(payload, secret="whsec_wrong"), id="wrong-secret"),
        pytest.param(
            lambda payload: stripe_signature(payload, timestamp=int(time.time()) - 3600), id="too-old"
        ),
        pytest.param(lambda payload: "", id="unsigned"),
    ],
)
async def test_an_unverifiable_delivery_is_refused_recorded_and_credits_nothing(
    database: Database, signature_of: object
) -> None:
    handlers = sales_handlers(database)
    tenant_id = await handlers.create_tenant("tampered")
    payload = checkout_event(tenant_id)
    rejected_before = await recorded_events(database, EventOutcome.REJECTED)
    assert callable(signature_of)

    with pytest.raises(InvalidSignature):
        await handlers.handle_stripe_event(payload, signature_of(payload))

    assert (await handlers.get_balance(tenant_id)).available_credits == 0
    assert await recorded_events(database, EventOutcome.REJECTED) == rejected_before + 1


async def test_a_tampered_payload_with_a_once_valid_signature_credits_nothing(database: Database) -> None:
    handlers = sales_handlers(database)
    tenant_id = await handlers.create_tenant("tampered amount")
    genuine = checkout_event(tenant_id, pack_id="pilot")
    tampered = genuine.replace(b'"pilot"', b'"enterprise"')

    with pytest.raises(InvalidSignature):
        await handlers.handle_stripe_event(tampered, stripe_signature(genuine))

    assert await purchases_of(database, tenant_id) == []


async def test_unknown_event_types_and_wrong_amounts_are_acknowledged_and_recorded_without_credit(
    database: Database,
) -> None:
    handlers = sales_handlers(database)
    tenant_id = await handlers.create_tenant("odd events")
    unknown = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "invoice.paid", "data": {}}).encode()
    underpaid = checkout_event(tenant_id, amount_total=PILOT.price_usd_cents - 1)

    ignored = await handlers.handle_stripe_event(unknown, stripe_signature(unknown))
    refused = await handlers.handle_stripe_event(underpaid, stripe_signature(underpaid))

    assert (ignored.outcome, refused.outcome) == (EventOutcome.IGNORED, EventOutcome.REFUSED)
    assert (await handlers.get_balance(tenant_id)).available_credits == 0
    async with database.connection() as conn:
        details = (
            await conn.execute(
                text("SELECT detail FROM billing.payment_events WHERE event_id = :id"),
                {"id": json.loads(underpaid)["id"]},
            )
        ).scalar_one()
    assert "paid 99899 usd" in details


async def test_an_invoice_payment_is_credited_once_per_reference(database: Database) -> None:
    handlers = sales_handlers(database)
    tenant_id = await handlers.create_tenant("invoiced")

    first = await handlers.record_invoice_payment(tenant_id, "INV-1001", "growth", 0, 0)
    replay = await handlers.record_invoice_payment(tenant_id, "INV-1001", "growth", 0, 0)
    custom = await handlers.record_invoice_payment(tenant_id, "INV-1002", "", 5_000, 5_000)

    growth = DEFAULT_PACKS["growth"].credits
    assert (first.balance, first.replayed) == (growth, False)
    assert (replay.balance, replay.credits, replay.replayed) == (growth, 0, True)
    assert custom.balance == growth + 5_000
    assert sorted(await purchases_of(database, tenant_id)) == [
        ("custom:INV-1002", 5_000),
        ("growth:INV-1001", growth),
    ]


async def test_each_batch_is_charged_and_refunded_at_the_price_frozen_when_it_was_accepted(
    database: Database,
) -> None:
    before = sales_handlers(database)
    repriced = dict(DEFAULT_PRICING)
    repriced["sora-2"] = DEFAULT_PRICING["sora-2"].model_copy(update={"credits_per_video": 15})
    after = sales_handlers(database, repriced)  # billing restarted with a new price list
    tenant_id = await before.create_tenant("repriced")
    await before.top_up(tenant_id, 1_000, "grant-1")
    old_batch, new_batch = new_batch_id(), new_batch_id()

    await before.reserve(tenant_id, old_batch, [QuoteLine("sora-2", 2)])
    await after.reserve(tenant_id, new_batch, [QuoteLine("sora-2", 2)])
    await after.apply_task_outcomes(
        [
            TaskOutcome(old_batch, TaskId(f"{old_batch}-0"), "sora-2", OutcomeKind.CAPTURE),
            TaskOutcome(old_batch, TaskId(f"{old_batch}-1"), "sora-2", OutcomeKind.REFUND),
            TaskOutcome(new_batch, TaskId(f"{new_batch}-0"), "sora-2", OutcomeKind.CAPTURE),
            TaskOutcome(new_batch, TaskId(f"{new_batch}-1"), "sora-2", OutcomeKind.REFUND),
        ]
    )
    old_hold, new_hold = await after.settle(old_batch), await after.settle(new_batch)

    assert (old_hold.frozen, old_hold.captured, old_hold.refunded) == (20, 10, 10)
    assert (new_hold.frozen, new_hold.captured, new_hold.refunded) == (30, 15, 15)
    assert (await after.get_balance(tenant_id)).available_credits == 1_000 - 10 - 15
    await assert_ledger_invariants(database)


async def test_the_monthly_statement_reconciles_and_splits_paid_from_granted_credits(
    database: Database,
) -> None:
    handlers = sales_handlers(database)
    tenant_id = await handlers.create_tenant("statement")
    await handlers.record_invoice_payment(tenant_id, f"INV-{uuid.uuid4().hex}", "", 300, 300)
    await handlers.top_up(tenant_id, 50, "welcome-grant")
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
    this_month = month_of(datetime.now(UTC))
    following = Month(this_month.year + this_month.month // 12, this_month.month % 12 + 1)

    statement = await handlers.statement(tenant_id, this_month)
    later = await handlers.statement(tenant_id, following)

    balance = (await handlers.get_balance(tenant_id)).available_credits
    assert (statement.opening_balance, statement.purchases, statement.grants) == (0, 300, 50)
    assert (statement.spent, statement.refunded, statement.released) == (50, 30, 0)
    assert statement.closing_balance == balance == 330
    # 20 credits left the wallet for good: charged to the 50 granted first.
    assert (statement.closing_sources.paid, statement.closing_sources.granted) == (300, 30)
    assert [(m.model, m.videos_delivered, m.videos_refunded) for m in statement.models] == [
        ("sora-2", 2, 1),
        ("veo-3", 0, 1),
    ]
    assert (later.opening_balance, later.closing_balance, later.spent) == (330, 330, 0)


async def test_monthly_margins_reproduce_the_seed_margins_from_frozen_provider_costs(
    database: Database,
) -> None:
    # Models of this test only, priced like the seed's Sora-2 and Veo-Pro, so other tests' captures
    # in the shared database do not enter the lines compared here.
    sora, veo = f"sora-2-{uuid.uuid4().hex[:6]}", f"veo-pro-{uuid.uuid4().hex[:6]}"
    pricing = {sora: DEFAULT_PRICING["sora-2"], veo: DEFAULT_PRICING["veo-3-pro"]}
    handlers = sales_handlers(database, pricing)
    tenant_id = await handlers.create_tenant("margins")
    await handlers.top_up(tenant_id, 10_000, "margin-grant")
    batch_id = new_batch_id()
    await handlers.reserve(tenant_id, batch_id, [QuoteLine(sora, 4), QuoteLine(veo, 2)])
    await handlers.apply_task_outcomes(
        [TaskOutcome(batch_id, TaskId(f"{batch_id}-s{i}"), sora, OutcomeKind.CAPTURE) for i in range(3)]
        + [TaskOutcome(batch_id, TaskId(f"{batch_id}-s3"), sora, OutcomeKind.REFUND)]
        + [TaskOutcome(batch_id, TaskId(f"{batch_id}-v{i}"), veo, OutcomeKind.CAPTURE) for i in range(2)]
    )

    report = await handlers.monthly_margins(month_of(datetime.now(UTC)))

    lines = {line.model: line for line in report.models if line.model in (sora, veo)}
    assert lines[sora].margin_basis_points == 7_600
    assert lines[veo].margin_basis_points == 5_800
    # By hand: 3 x 10 credits + 2 x 50 credits = 130 credits = $1.30; cost 3 x $0.024 + 2 x $0.21 = $0.492.
    revenue = lines[sora].revenue_usd_micros + lines[veo].revenue_usd_micros
    cost = lines[sora].provider_cost_usd_micros + lines[veo].provider_cost_usd_micros
    assert (revenue, cost) == (1_300_000, 492_000)
    assert (lines[sora].videos, lines[veo].videos) == (3, 2)


async def test_a_credit_that_would_take_a_balance_past_bigint_is_refused_and_moves_nothing(
    database: Database,
) -> None:
    handlers = sales_handlers(database)
    tenant_id = await handlers.create_tenant("whale")
    await handlers.top_up(tenant_id, 2**62, "grant-1")
    batch_id = new_batch_id()
    await handlers.reserve(tenant_id, batch_id, [QuoteLine("sora-2", 1)])  # 10 credits held
    # available + held reach the largest bigint exactly: still a balance the ledger holds.
    filled = await handlers.top_up(tenant_id, 2**62 - 1, "grant-2")
    assert filled.balance == LARGEST_BIGINT - 10

    # Held credits count: a refund of them must never overflow `available` afterwards.
    with pytest.raises(InvalidArgument, match="largest balance"):
        await handlers.top_up(tenant_id, 1, "grant-3")
    with pytest.raises(InvalidArgument, match="largest balance"):
        await handlers.record_invoice_payment(tenant_id, "INV-OVER", "", 1, 1)

    await handlers.apply_task_outcomes(
        [TaskOutcome(batch_id, TaskId(f"{batch_id}-0"), "sora-2", OutcomeKind.REFUND)]
    )
    await handlers.settle(batch_id)
    balance = await handlers.get_balance(tenant_id)
    assert (balance.available_credits, balance.held_credits) == (LARGEST_BIGINT, 0)
    assert await purchases_of(database, tenant_id) == []
    await assert_ledger_invariants(database)
