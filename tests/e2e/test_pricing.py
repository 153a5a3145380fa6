"""Buying credits end to end: price list and quote, a Stripe pilot purchase, grants, batches with
failures, the monthly statement (JSON and CSV), offline payments and the margin report."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx

from tests.rest_api import Api, Customer
from tests.stack import STRIPE_WEBHOOK_SECRET

WEBHOOK = "/api/payments/stripe/webhook"
PILOT_PRICE_CENTS = 99_900
PILOT_CREDITS = 111_888


def signed(payload: bytes, secret: str = STRIPE_WEBHOOK_SECRET) -> dict[str, str]:
    """Headers of a delivery signed with Stripe's scheme: t=<unix>,v1=HMAC_SHA256(secret, "t.payload")."""
    now = int(time.time())
    digest = hmac.new(secret.encode(), f"{now}.".encode() + payload, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={now},v1={digest}", "Content-Type": "application/json"}


def pilot_checkout_completed(customer: Customer) -> bytes:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": "checkout.session.completed",
            "data": {
                "object": {
                    "id": f"cs_test_{uuid.uuid4().hex}",
                    "object": "checkout.session",
                    "payment_intent": f"pi_{uuid.uuid4().hex}",
                    "payment_status": "paid",
                    "amount_total": PILOT_PRICE_CENTS,
                    "currency": "usd",
                    "metadata": {"tenant_id": customer.tenant_id, "pack_id": "pilot"},
                }
            },
        }
    ).encode()


def this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def test_the_create_quote_matches_the_published_price_list(api: Api) -> None:
    customer = api.new_customer(credits=1_000)
    prices = api.http.get("/api/enterprise/pricing", headers=customer.headers)
    assert prices.status_code == 200, prices.text
    per_video = {item["model"]: item["credits_per_video"] for item in prices.json()["items"]}
    assert per_video["sora-2"] == 10
    assert "provider_cost_usd_micros" not in prices.text

    for model in ("sora-2", "veo-3-pro"):
        accepted = api.create_batch(customer, [{"prompt": "a quiet harbour", "model": model}] * 2)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["cost_per_video"] == per_video[model]
        assert accepted.json()["required_credits"] == 2 * per_video[model]
        api.wait_until_settled(customer, accepted.json()["batch_id"])


def test_packs_give_twelve_twenty_and_twenty_seven_percent_more_credits(api: Api) -> None:
    customer = api.new_customer(credits=0)
    packs = api.http.get("/api/enterprise/packs", headers=customer.headers)
    assert packs.status_code == 200, packs.text
    catalog = {pack["pack_id"]: pack for pack in packs.json()["items"]}
    assert catalog["pilot"]["price_usd_cents"] == PILOT_PRICE_CENTS
    assert [pack["bonus_percent"] for pack in packs.json()["items"]] == [12.0, 20.0, 27.0]


def test_a_pilot_checkout_delivered_five_times_at_once_credits_once_and_a_tampered_one_nothing(
    api: Api,
) -> None:
    customer = api.new_customer(credits=0)
    payload = pilot_checkout_completed(customer)
    headers = signed(payload)

    with ThreadPoolExecutor(max_workers=5) as pool:
        responses = list(
            pool.map(lambda _: api.http.post(WEBHOOK, content=payload, headers=headers), range(5))
        )
    tampered_payload = payload.replace(b'"pilot"', b'"enterprise"')
    tampered = api.http.post(WEBHOOK, content=tampered_payload, headers=headers)
    wrong_secret = pilot_checkout_completed(customer)
    forged = api.http.post(WEBHOOK, content=wrong_secret, headers=signed(wrong_secret, "whsec_forged"))

    assert [response.status_code for response in responses] == [200] * 5
    assert (
        sorted(response.json()["outcome"] for response in responses) == ["credited"] + ["duplicate_event"] * 4
    )
    assert (tampered.status_code, tampered.json()["error"]["code"]) == (400, "invalid_signature")
    assert forged.status_code == 400
    assert api.credits(customer)["available_credits"] == PILOT_CREDITS
    purchases = [entry for entry in api.ledger(customer) if entry["ref_type"] == "purchase"]
    assert len(purchases) == 1 and purchases[0]["ref_id"].startswith("pilot:cs_test_")


def test_the_monthly_statement_sums_exactly_to_the_wallet_balance(api: Api) -> None:
    customer = api.new_customer(credits=0)
    payload = pilot_checkout_completed(customer)
    assert api.http.post(WEBHOOK, content=payload, headers=signed(payload)).status_code == 200
    grant = api.http.post(
        f"/api/admin/tenants/{customer.tenant_id}/credits",
        json={"credits": 500, "reference": f"promo-{uuid.uuid4()}"},
        headers=api.admin,
    )
    assert grant.status_code == 200, grant.text
    for prompts in (["ok", "ok #fail", "ok"], ["ok #fail", "ok", "ok #fail", "ok"]):
        accepted = api.create_batch(customer, [{"prompt": p, "model": "sora-2"} for p in prompts])
        assert accepted.status_code == 202, accepted.text
        api.wait_until_settled(customer, accepted.json()["batch_id"])

    response = api.http.get(
        "/api/enterprise/statement", params={"month": this_month()}, headers=customer.headers
    )
    assert response.status_code == 200, response.text
    statement = response.json()
    as_csv = api.http.get(
        "/api/enterprise/statement",
        params={"month": this_month()},
        headers={**customer.headers, "Accept": "text/csv"},
    )

    balance = api.credits(customer)["available_credits"]
    assert (statement["purchases"], statement["grants"], statement["spent"]) == (PILOT_CREDITS, 500, 70)
    assert statement["refunded"] + statement["released"] == 30
    assert statement["closing_balance"] == balance == PILOT_CREDITS + 500 - 40
    moved = statement["purchases"] + statement["grants"] - statement["spent"]
    assert statement["opening_balance"] + moved + statement["refunded"] + statement["released"] == balance
    # Granted credits are spent first: 40 left the wallet, all of it from the 500 granted.
    assert (statement["closing_paid_credits"], statement["closing_granted_credits"]) == (PILOT_CREDITS, 460)
    assert statement["models"] == [
        {
            "model": "sora-2",
            "videos_delivered": 4,
            "videos_refunded": 3,
            "credits_captured": 40,
            "credits_refunded": 30,
        }
    ]
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    rows = {
        row["line"]: int(row["credits"])
        for row in csv.DictReader(io.StringIO(as_csv.text))
        if not row["model"]
    }
    assert rows["closing_balance"] == balance
    assert (
        rows["opening_balance"]
        + rows["purchases"]
        + rows["grants"]
        - rows["spent"]
        + rows["refunded"]
        + rows["released"]
        == rows["closing_balance"]
    )


def test_an_offline_invoice_payment_is_credited_once(api: Api) -> None:
    customer = api.new_customer(credits=0)
    reference = f"INV-{uuid.uuid4().hex[:8]}"
    body = {"reference": reference, "pack_id": "growth"}
    path = f"/api/admin/tenants/{customer.tenant_id}/payments"

    first = api.http.post(path, json=body, headers=api.admin)
    again = api.http.post(path, json=body, headers=api.admin)

    assert first.status_code == 200, first.text
    assert (first.json()["replayed"], again.json()["replayed"]) == (False, True)
    assert api.credits(customer)["available_credits"] == first.json()["balance"] == 599_880


def test_the_monthly_margin_report_shows_the_seed_margins(api: Api) -> None:
    customer = api.new_customer(credits=1_000)
    accepted = api.create_batch(
        customer, [{"prompt": "ok", "model": "sora-2"}, {"prompt": "ok", "model": "veo-3-pro"}]
    )
    assert accepted.status_code == 202, accepted.text
    api.wait_until_settled(customer, accepted.json()["batch_id"])

    report = api.http.get("/api/admin/margins", params={"month": this_month()}, headers=api.admin)

    assert report.status_code == 200, report.text
    lines = {line["model"]: line for line in report.json()["items"]}
    assert lines["sora-2"]["margin_percent"] == 76.0
    assert lines["veo-3-pro"]["margin_percent"] == 58.0
    total = report.json()["total"]
    assert total["revenue_usd_micros"] == sum(line["revenue_usd_micros"] for line in lines.values())
    assert total["provider_cost_usd_micros"] == sum(
        line["provider_cost_usd_micros"] for line in lines.values()
    )


def create_items(api: Api, customer: Customer, items: list[dict[str, object]]) -> httpx.Response:
    """POSTs a batch whose items may carry non-string fields (duration_seconds)."""
    return api.http.post("/api/enterprise/video-batch", json={"items": items}, headers=customer.headers)


def test_a_batch_mixing_durations_freezes_each_item_at_its_own_price_and_refunds_it_so(api: Api) -> None:
    customer = api.new_customer(credits=1_000)
    prices = api.http.get("/api/enterprise/pricing", headers=customer.headers).json()["items"]
    fast = next(item for item in prices if item["model"] == "veo-3-fast")
    assert (fast["pricing_unit"], fast["credits_per_second"], fast["default_seconds"]) == ("second", 2, 6)

    refused = create_items(api, customer, [{"prompt": "a harbour", "model": "sora-2", "duration_seconds": 5}])
    assert refused.status_code == 422, refused.text
    too_long = create_items(
        api, customer, [{"prompt": "a harbour", "model": "veo-3-fast", "duration_seconds": 9}]
    )
    assert too_long.status_code == 422, too_long.text

    items: list[dict[str, object]] = [
        {"prompt": "ok", "model": "veo-3-fast", "duration_seconds": 4},  # 8
        {"prompt": "ok #fail", "model": "veo-3-fast", "duration_seconds": 8},  # 16, refunded
        {"prompt": "ok", "model": "veo-3-fast"},  # default 6 s: 12
        {"prompt": "ok", "model": "sora-2"},  # 10 per video
    ]
    accepted = create_items(api, customer, items)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["required_credits"] == 8 + 16 + 12 + 10
    assert accepted.json()["cost_per_video"] is None
    batch_id = accepted.json()["batch_id"]
    api.wait_until_settled(customer, batch_id)

    refunds = [entry for entry in api.ledger(customer, batch_id) if entry["ref_type"] == "batch_refund"]
    assert [entry["credits_delta"] for entry in refunds] == [16]
    assert api.credits(customer)["available_credits"] == 1_000 - (8 + 12 + 10)
