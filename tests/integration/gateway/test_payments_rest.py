"""Payments that go back and automatic top-up through REST (issue 29 items 4-5), on the whole system
as processes (PostgreSQL, RabbitMQ, real gRPC) with the fake Stripe posting its signed events to
the gateway's webhook, as Stripe does: a crossing buys one pack off-session, a refund of that pack
once spent becomes a debt that refuses the next create with 402 `debt_outstanding`, paying clears
it, and a declined card turns automatic top-up off. The money invariants (I1-I11) hold afterwards.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.stripe_api import SECRET_KEY
from tests.fakes.stripe_checkout import FakeStripe, running_fake_stripe, stack_settings, webhook_url_of
from tests.invariants import check_invariants, wait_for_all_settled
from tests.rest_api import Api, Customer
from tests.stack import STRIPE_WEBHOOK_SECRET, Stack, fresh_stack

MINI = {"name": "Mini", "price_usd_cents": 1000, "credits": 100}
STRIPE = {"Authorization": f"Bearer {SECRET_KEY}"}


@pytest.fixture(scope="module")
def fake_stripe() -> Iterator[FakeStripe]:
    with running_fake_stripe(STRIPE_WEBHOOK_SECRET) as state:
        yield state


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake_stripe: FakeStripe) -> Iterator[Stack]:
    overrides = {
        **stack_settings(fake_stripe),
        "REELBATCH_PACKS": json.dumps({"mini": MINI}),
        "REELBATCH_AUTO_TOP_UP_INTERVAL_SECONDS": "0.2",
    }

    def send_payments_here(stack: Stack) -> None:
        fake_stripe.webhook_url = webhook_url_of(stack.base_url)

    with fresh_stack(
        Path(tmp_path_factory.mktemp("payments")), overrides, before_start=send_payments_here
    ) as s:
        yield s


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[Api]:
    client = Api(stack.base_url)
    yield client
    client.http.close()


def eventually(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def with_saved_card(
    api: Api, fake: FakeStripe, customer: Customer, card: str, threshold: int
) -> dict[str, Any]:
    """Turns automatic top-up on after the tenant's card was saved with Stripe (billing creates the
    Stripe customer at the first attempt, which is refused for want of a card)."""
    body = {"enabled": True, "threshold_credits": threshold, "pack_id": "mini", "max_per_month": 1}
    refused = api.http.put("/api/enterprise/auto-top-up", json=body, headers=customer.headers)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "no_saved_payment_method"
    [stripe_customer] = [
        c for c, v in fake.customers.items() if v["metadata"]["tenant_id"] == customer.tenant_id
    ]
    attached = httpx.post(
        f"{fake.api_url}/v1/payment_methods/{card}/attach", data={"customer": stripe_customer}, headers=STRIPE
    )
    assert attached.status_code == 200, attached.text
    enabled = api.http.put("/api/enterprise/auto-top-up", json=body, headers=customer.headers)
    assert enabled.status_code == 200, enabled.text
    settings: dict[str, Any] = enabled.json()
    return settings


def create(api: Api, customer: Customer, videos: int) -> httpx.Response:
    return api.create_batch(customer, [{"prompt": f"shot {n}", "model": "sora-2"} for n in range(videos)])


def test_a_crossing_buys_one_pack_whose_refund_becomes_a_debt_until_paid(
    api: Api, stack: Stack, fake_stripe: FakeStripe
) -> None:
    customer = api.new_customer(credits=50)
    assert with_saved_card(api, fake_stripe, customer, "pm_card_visa", threshold=40)["enabled"]

    first = create(api, customer, 1)  # 50 -> 40: not below the line
    crossing = create(api, customer, 1)  # 40 -> 30: below it, one pack bought
    assert (first.status_code, crossing.status_code) == (202, 202)
    purchase = eventually(
        lambda: [
            p
            for p in api.http.get("/api/enterprise/auto-top-up", headers=customer.headers).json()[
                "recent_purchases"
            ]
            if p["status"] == "succeeded"
        ],
        "the automatic top-up to be credited",
    )[0]
    eventually(lambda: api.credits(customer)["available_credits"] == 130, "the pack's credits")

    spent = create(api, customer, 13)  # every credit, pack included
    assert spent.status_code == 202, spent.text
    api.wait_until_settled(customer, spent.json()["batch_id"])
    refund = httpx.post(
        f"{fake_stripe.api_url}/v1/refunds",
        data={"payment_intent": purchase["payment_intent"]},
        headers=STRIPE,
    )
    assert refund.status_code == 200, refund.text

    eventually(lambda: api.credits(customer)["debt_credits"] == 100, "the refund's debt")
    assert api.credits(customer) == {"available_credits": 0, "held_credits": 0, "debt_credits": 100}
    refused = create(api, customer, 1)
    assert refused.status_code == 402, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["debt_credits"]) == ("debt_outstanding", 100)

    paid = api.http.post(
        f"/api/admin/tenants/{customer.tenant_id}/payments",
        json={"pack_id": "mini", "reference": f"inv-{uuid.uuid4()}"},
        headers=api.admin,
    )
    assert paid.status_code == 200, paid.text
    assert api.credits(customer) == {"available_credits": 0, "held_credits": 0, "debt_credits": 0}
    api.http.post(
        f"/api/admin/tenants/{customer.tenant_id}/credits",
        json={"credits": 10, "reference": f"grant-{uuid.uuid4()}"},
        headers=api.admin,
    )
    again = create(api, customer, 1)
    assert again.status_code == 202, again.text
    api.wait_until_settled(customer, again.json()["batch_id"])
    # The reversal took nothing from available (all spent): it is on the debt account, not this ledger.
    ledger = {entry["ref_type"] for entry in api.ledger(customer)}
    assert {"purchase", "debt_payment"} <= ledger
    wait_for_all_settled(stack.database_url)
    check_invariants(stack.database_url).assert_clean()


def test_a_declined_card_turns_auto_top_up_off(api: Api, stack: Stack, fake_stripe: FakeStripe) -> None:
    customer = api.new_customer(credits=50)
    with_saved_card(api, fake_stripe, customer, "pm_card_chargeCustomerFail", threshold=45)

    assert create(api, customer, 1).status_code == 202  # 50 -> 40: crossed

    settings = eventually(
        lambda: (
            (found := api.http.get("/api/enterprise/auto-top-up", headers=customer.headers).json())[
                "disabled_reason"
            ]
            and found
        ),
        "automatic top-up to turn itself off",
    )
    assert settings["enabled"] is False and "card_declined" in settings["disabled_reason"]
    assert [p["failure_code"] for p in settings["recent_purchases"]] == ["card_declined"]
    assert api.credits(customer)["available_credits"] == 40
    wait_for_all_settled(stack.database_url)
    check_invariants(stack.database_url).assert_clean()
