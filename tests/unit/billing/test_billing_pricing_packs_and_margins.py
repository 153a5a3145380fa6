"""Pure rules of buying credits: packs, Stripe events, the seed's margins."""

from __future__ import annotations

import uuid

import pytest

from libs.errors import InvalidArgument
from libs.price_list import DEFAULT_PACKS, DEFAULT_PRICING
from services.billing.bootstrap import pack_catalog, price_list
from services.billing.domain.margins import CapturedVolume, margin_report
from services.billing.domain.packs import UnknownPack, find_pack, packs_by_price
from services.billing.domain.payments import (
    CheckoutSession,
    PaymentRefused,
    checkout_payment,
    parse_stripe_event,
)
from services.billing.domain.pricing import estimate_margin

CATALOG = pack_catalog(dict(DEFAULT_PACKS))
TENANT = str(uuid.uuid4())


def session(**changes: object) -> CheckoutSession:
    fields: dict[str, object] = {
        "session_id": "cs_test_1",
        "payment_intent": "pi_1",
        "payment_status": "paid",
        "amount_total": 99_900,
        "currency": "usd",
        "metadata": {"tenant_id": TENANT, "pack_id": "pilot"},
    }
    fields.update(changes)
    return CheckoutSession(**fields)  # type: ignore[arg-type]


def test_the_default_packs_give_twelve_twenty_and_twenty_seven_percent_more_credits() -> None:
    packs = packs_by_price(CATALOG)
    assert [pack.pack_id for pack in packs] == ["pilot", "growth", "enterprise"]
    assert [pack.bonus_basis_points(10_000) for pack in packs] == [1_200, 2_000, 2_700]
    assert packs[0].price_usd_cents == 99_900 and packs[0].list_price_credits(10_000) == 99_900


def test_a_dearer_credit_shrinks_the_pack_bonus() -> None:
    assert find_pack(CATALOG, "pilot").bonus_basis_points(8_000) < 0


def test_an_unknown_pack_is_a_validation_error() -> None:
    with pytest.raises(UnknownPack):
        find_pack(CATALOG, "platinum")


def test_a_paid_session_for_the_pack_price_becomes_a_payment_keyed_by_the_session() -> None:
    payment = checkout_payment(session(), CATALOG["pilot"])
    assert (payment.credits, payment.key, payment.ref_id) == (
        111_888,
        "purchase:stripe:cs_test_1",
        "pilot:cs_test_1",
    )
    assert str(payment.tenant_id) == TENANT


@pytest.mark.parametrize(
    "changes",
    [{"amount_total": 100}, {"currency": "eur"}, {"metadata": {"tenant_id": "nobody", "pack_id": "pilot"}}],
)
def test_a_session_that_did_not_pay_the_pack_price_to_a_known_tenant_is_refused(
    changes: dict[str, object],
) -> None:
    with pytest.raises(PaymentRefused):
        checkout_payment(session(**changes), CATALOG["pilot"])


def test_stripe_events_other_than_checkout_payments_carry_no_session() -> None:
    event = parse_stripe_event({"id": "evt_1", "type": "customer.created", "data": {"object": {}}})
    assert (event.event_type, event.checkout) == ("customer.created", None)
    with pytest.raises(InvalidArgument):
        parse_stripe_event({"type": "checkout.session.completed"})


def test_the_default_price_list_reproduces_the_seed_margins() -> None:
    prices = price_list(dict(DEFAULT_PRICING))
    assert prices["sora-2"].credits_per_video == 10
    assert estimate_margin({"sora-2": 100}, prices).margin_basis_points == 7_600
    assert estimate_margin({"veo-3-pro": 100}, prices).margin_basis_points == 5_800


def test_a_mixed_month_margin_matches_the_hand_computation() -> None:
    report = margin_report(
        [
            CapturedVolume("sora-2", videos=30, credits=300, provider_cost_usd_micros=30 * 24_000),
            CapturedVolume("veo-3-pro", videos=10, credits=500, provider_cost_usd_micros=10 * 210_000),
        ],
        credit_value_usd_micros=10_000,
    )
    # Revenue 800 credits = $8.00; cost $0.72 + $2.10 = $2.82; margin $5.18 = 64.75%.
    assert (report.total.revenue_usd_micros, report.total.provider_cost_usd_micros) == (8_000_000, 2_820_000)
    assert report.total.margin_basis_points == 6_475
    assert [line.margin_basis_points for line in report.models] == [7_600, 5_800]
