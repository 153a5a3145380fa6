"""Spend alerts end to end (issue 29 item 3, ADR-125): thresholds set through REST; a crossing under
concurrent creates is one signed `credits.low` (or `budget.threshold`) webhook, re-armed by a top-up.

The money invariants are checked after every test by the package's autouse fixture.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from tests.rest_api import Api, Customer

Received = list[tuple[dict[str, str], bytes]]
SORA = "sora-2"  # 10 credits per video
CLIENTS = 20


def items(count: int) -> list[dict[str, str]]:
    return [{"prompt": f"a lighthouse at dusk {n}", "model": SORA} for n in range(count)]


def subscribe(api: Api, customer: Customer, url: str, event_type: str) -> str:
    """Registers the receiver for one event type; returns the endpoint's signing secret."""
    endpoint = api.http.post(
        "/api/enterprise/webhook-endpoints",
        json={"url": url, "event_types": [event_type]},
        headers=customer.headers,
    )
    assert endpoint.status_code == 201, endpoint.text
    return str(endpoint.json()["secret"])


def create_concurrently(api: Api, customer: Customer, clients: int, videos: int) -> list[httpx.Response]:
    """`clients` creates at once, each retried on 503 with its idempotency key (a shared host)."""

    def create(_: int) -> httpx.Response:
        headers = {**customer.headers, "Idempotency-Key": f"client-{uuid.uuid4()}"}
        with httpx.Client(base_url=str(api.http.base_url), timeout=60) as client:
            for _ in range(20):
                answer = client.post(
                    "/api/enterprise/video-batch", json={"items": items(videos)}, headers=headers
                )
                if answer.status_code != 503:
                    return answer
                time.sleep(float(answer.headers.get("Retry-After", "1")))
            return answer

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(create, range(clients)))


def verified(received: Received, secret: str, event_type: str, count: int) -> list[dict[str, Any]]:
    """Waits for `count` deliveries of `event_type`, checks each signature, then that no more come."""
    deadline = time.monotonic() + 30
    while len(mine := [(h, b) for h, b in received if json.loads(b)["type"] == event_type]) < count:
        assert time.monotonic() < deadline, f"{len(mine)} of {count} {event_type} webhooks arrived"
        time.sleep(0.05)
    time.sleep(1.5)  # a duplicate would be delivered by now
    mine = [(h, b) for h, b in received if json.loads(b)["type"] == event_type]
    assert len(mine) == count, [b for _, b in mine]
    return [Webhook(secret).verify(body, headers) for headers, body in mine]


def test_twenty_concurrent_creates_crossing_the_low_balance_line_send_one_signed_alert(
    api: Api, receiver: tuple[str, Received]
) -> None:
    url, received = receiver
    customer = api.new_customer(credits=1_000)
    secret = subscribe(api, customer, url, "credits.low")
    set_to = api.http.put(
        "/api/enterprise/alerts", json={"low_balance_credits": 500}, headers=customer.headers
    )
    assert set_to.status_code == 200, set_to.text
    assert set_to.json() == {"low_balance_credits": 500, "budget_percent": None}

    answers = create_concurrently(api, customer, CLIENTS, 3)  # 20 x 30 credits: 1000 -> 400
    assert [answer.status_code for answer in answers] == [202] * CLIENTS, [a.text for a in answers]

    [alert] = verified(received, secret, "credits.low", 1)
    assert alert["data"]["threshold_credits"] == 500
    assert 400 <= alert["data"]["available_credits"] < 500
    assert api.credits(customer)["available_credits"] == 400

    # A top-up takes the balance back over the line: the next crossing alerts again.
    topup = api.http.post(
        f"/api/admin/tenants/{customer.tenant_id}/credits",
        json={"credits": 300, "reference": f"payment-{uuid.uuid4()}"},
        headers=api.admin,
    )
    assert topup.status_code == 200, topup.text
    assert api.create_batch(customer, items(3)).status_code == 202  # 700 -> 670: above
    assert api.create_batch(customer, items(20)).status_code == 202  # 670 -> 470: crossed
    first, second = verified(received, secret, "credits.low", 2)
    assert second["data"]["available_credits"] == 470
    assert first["data"]["alert_id"] != second["data"]["alert_id"]


def test_the_budget_alert_fires_once_at_80_percent(api: Api, receiver: tuple[str, Received]) -> None:
    url, received = receiver
    customer = api.new_customer(credits=5_000)
    secret = subscribe(api, customer, url, "budget.threshold")
    assert api.http.put(
        "/api/enterprise/budget", json={"monthly_credits": 1_000}, headers=customer.headers
    ).is_success
    assert api.http.put(
        "/api/enterprise/alerts", json={"budget_percent": 80}, headers=customer.headers
    ).is_success

    answers = create_concurrently(api, customer, 10, 9)  # 10 x 90 credits: 900 of 1000
    assert [answer.status_code for answer in answers] == [202] * 10, [a.text for a in answers]

    [alert] = verified(received, secret, "budget.threshold", 1)
    data = alert["data"]
    assert (data["budget_scope"], data["threshold_percent"], data["monthly_credits"]) == ("tenant", 80, 1_000)
    assert data["threshold_credits"] == 800 and 800 <= data["used_credits"] <= 900
    read = api.http.get("/api/enterprise/alerts", headers=customer.headers)
    assert read.json() == {"low_balance_credits": None, "budget_percent": 80}


def test_bad_thresholds_are_a_422_and_a_batches_key_cannot_change_them(api: Api) -> None:
    customer = api.new_customer(credits=0)
    for body in ({"low_balance_credits": 0}, {"budget_percent": 101}, {"budget_percent": "80"}, {"other": 1}):
        answer = api.http.put("/api/enterprise/alerts", json=body, headers=customer.headers)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error"]["errors"], answer.text
    key = api.http.post(
        f"/api/admin/tenants/{customer.tenant_id}/api-keys", json={"scopes": ["batches"]}, headers=api.admin
    )
    submitter = Customer(customer.tenant_id, key.json()["api_key"])
    refused = api.http.put(
        "/api/enterprise/alerts", json={"low_balance_credits": 5}, headers=submitter.headers
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope"
