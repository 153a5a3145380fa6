"""Spend control end to end (issue 29): monthly budgets enforced by the ledger under concurrent
creates, key scopes that keep a batch-submitting key from lifting its own budget, and quotes.

The money invariants (I1-I5, and I7-I8 of spend control) are checked after every test by the
package's autouse fixture.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx

from tests.rest_api import Api, Customer

SORA = "sora-2"
PRICE = 10
CLIENTS = 50


def items(count: int, prompt: str = "a lighthouse at dusk") -> list[dict[str, str]]:
    return [{"prompt": f"{prompt} {n}", "model": SORA} for n in range(count)]


def key_with(api: Api, customer: Customer, scopes: list[str] | None, **more: str) -> Customer:
    body: dict[str, object] = {"scopes": scopes} if scopes is not None else {}
    body.update(more)
    created = api.http.post(f"/api/admin/tenants/{customer.tenant_id}/api-keys", json=body, headers=api.admin)
    assert created.status_code == 201, created.text
    return Customer(customer.tenant_id, created.json()["api_key"])


def test_fifty_clients_never_spend_past_the_budget(api: Api) -> None:
    """50 clients at once, each a batch of 3 videos (30 credits), against 10,000 credits and a
    400-credit budget: 13 are admitted (390 credits), 37 refused with budget_exceeded."""
    customer = api.new_customer(credits=10_000)
    budget = api.http.put("/api/enterprise/budget", json={"monthly_credits": 400}, headers=customer.headers)
    assert budget.status_code == 200, budget.text

    def create(_: int) -> httpx.Response:
        """One client: a 503 (a backend slow under the burst on a shared host) is retried with the
        same idempotency key, as a client does; anything else is the answer."""
        headers = {**customer.headers, "Idempotency-Key": f"client-{uuid.uuid4()}"}
        with httpx.Client(base_url=str(api.http.base_url), timeout=60) as client:
            for _ in range(20):
                answer = client.post("/api/enterprise/video-batch", json={"items": items(3)}, headers=headers)
                if answer.status_code != 503:
                    return answer
                time.sleep(float(answer.headers.get("Retry-After", "1")))
            return answer

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(create, range(CLIENTS)))

    admitted = [answer for answer in answers if answer.status_code == 202]
    refused = [answer for answer in answers if answer.status_code != 202]
    assert all(answer.status_code == 402 for answer in refused), [a.text for a in refused]
    assert {answer.json()["error"]["code"] for answer in refused} == {"budget_exceeded"}
    error = refused[0].json()["error"]
    assert error["required_credits"] == 3 * PRICE and error["remaining_credits"] < 3 * PRICE
    assert datetime.fromisoformat(error["period_end"]) > datetime.now(UTC)
    for batch in admitted:
        api.wait_until_settled(customer, batch.json()["batch_id"])
    used = api.http.get("/api/enterprise/budget", headers=customer.headers).json()
    figures = f"admitted {len(admitted)}, refused {len(refused)}, spend {used['used_credits']} / cap 400"
    print(f"issue 29 figures: {figures}")
    assert (len(admitted), len(refused), used["used_credits"]) == (13, 37, 390)
    assert used["remaining_credits"] == 10
    assert api.credits(customer)["available_credits"] == 10_000 - 390


def test_a_batches_only_key_cannot_lift_its_own_budget(api: Api) -> None:
    owner = api.new_customer(credits=500)
    submitter = key_with(api, owner, ["batches"])
    reader = key_with(api, owner, ["read"])
    treasurer = key_with(api, owner, ["billing", "read"])

    lifted = api.http.put("/api/enterprise/budget", json={"monthly_credits": None}, headers=submitter.headers)
    assert lifted.status_code == 403, lifted.text
    assert lifted.json()["error"] == {
        "code": "insufficient_scope",
        "message": "this API key lacks the `billing` scope this request needs",
        "required_scope": "billing",
    }
    assert api.http.get("/api/enterprise/budget", headers=submitter.headers).status_code == 403
    assert api.create_batch(reader, items(1)).status_code == 403
    set_by_treasurer = api.http.put(
        "/api/enterprise/budget", json={"monthly_credits": 20}, headers=treasurer.headers
    )
    assert set_by_treasurer.status_code == 200, set_by_treasurer.text
    assert api.create_batch(submitter, items(2)).status_code == 202
    over = api.create_batch(submitter, items(1))
    assert over.status_code == 402 and over.json()["error"]["code"] == "budget_exceeded"
    listed = api.http.get("/api/enterprise/api-keys", headers=reader.headers).json()["items"]
    assert {tuple(key["scopes"]) for key in listed} >= {("batches",), ("read",), ("read", "billing")}


def test_key_and_project_budgets_through_rest(api: Api) -> None:
    owner = api.new_customer(credits=500)
    submitter = key_with(api, owner, ["batches", "read"])
    keys = api.http.get("/api/enterprise/api-keys", headers=owner.headers).json()["items"]
    submitter_id = next(key["key_id"] for key in keys if key["scopes"] == ["batches", "read"])
    assert (
        api.http.put(
            f"/api/enterprise/api-keys/{submitter_id}/budget",
            json={"monthly_credits": 10},
            headers=owner.headers,
        ).json()["monthly_credits"]
        == 10
    )
    assert (
        api.http.put(
            "/api/enterprise/projects/launch/budget", json={"monthly_credits": 20}, headers=owner.headers
        ).status_code
        == 200
    )

    assert api.create_batch(submitter, items(1)).status_code == 202
    assert api.create_batch(submitter, items(1)).json()["error"]["code"] == "budget_exceeded"
    in_project = {"items": items(3), "metadata": {"project": "launch"}}
    refused = api.http.post("/api/enterprise/video-batch", json=in_project, headers=owner.headers)
    assert refused.status_code == 402 and refused.json()["error"]["remaining_credits"] == 20
    in_project["items"] = items(2)
    assert (
        api.http.post("/api/enterprise/video-batch", json=in_project, headers=owner.headers).status_code
        == 202
    )
    key_budget = api.http.get(
        f"/api/enterprise/api-keys/{submitter_id}/budget", headers=submitter.headers
    ).json()
    assert (key_budget["used_credits"], key_budget["remaining_credits"]) == (10, 0)
    budgets = api.http.get("/api/enterprise/budgets", headers=owner.headers).json()["items"]
    assert [(b["scope"], b["used_credits"]) for b in budgets] == [
        ("tenant", 30),
        ("api_key", 10),
        ("project", 20),
    ]
    month = datetime.now(UTC).strftime("%Y-%m")
    statement = api.http.get(f"/api/enterprise/statement?month={month}", headers=owner.headers).json()
    assert [(b["scope"], b["monthly_credits"], b["used_credits"]) for b in statement["budgets"]] == [
        ("tenant", None, 30),
        ("api_key", 10, 10),
        ("project", 20, 20),
    ]
    csv_lines = api.http.get(
        f"/api/enterprise/statement?month={month}&format=csv", headers=owner.headers
    ).text
    assert f"{month},budget_used,project:launch,20," in csv_lines


def test_budget_inputs_are_refused_with_precise_4xx(api: Api) -> None:
    owner = api.new_customer(credits=0)
    for body in ({"monthly_credits": -1}, {"monthly_credits": "100"}, {}, {"monthly_credits": 10**16}, [1]):
        answer = api.http.put("/api/enterprise/budget", json=body, headers=owner.headers)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error"]["code"] == "validation_error"
    unknown = api.http.put(
        f"/api/enterprise/api-keys/{uuid.uuid4()}/budget", json={"monthly_credits": 5}, headers=owner.headers
    )
    assert unknown.status_code == 404, unknown.text
    too_long = api.http.put(
        f"/api/enterprise/projects/{'p' * 513}/budget", json={"monthly_credits": 5}, headers=owner.headers
    )
    assert too_long.status_code == 422, too_long.text
    expired = api.http.post(
        f"/api/admin/tenants/{owner.tenant_id}/api-keys",
        json={"expires_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()},
        headers=api.admin,
    )
    assert expired.status_code == 422, expired.text
    unknown_scope = api.http.post(
        f"/api/admin/tenants/{owner.tenant_id}/api-keys", json={"scopes": ["root"]}, headers=api.admin
    )
    assert unknown_scope.status_code == 422, unknown_scope.text


def test_a_quote_is_charged_exactly_once_and_refused_with_another_body(api: Api) -> None:
    customer = api.new_customer(credits=1_000)
    body = {"items": items(4), "name": "quoted"}
    quoted = api.http.post("/api/enterprise/quotes", json=body, headers=customer.headers)
    assert quoted.status_code == 201, quoted.text
    quote = quoted.json()
    assert (quote["required_credits"], quote["item_prices"], quote["total_count"]) == (40, [10] * 4, 4)
    assert datetime.fromisoformat(quote["expires_at"]) > datetime.now(UTC)
    assert api.credits(customer)["available_credits"] == 1_000  # nothing frozen by a quote

    other_body = api.http.post(
        "/api/enterprise/video-batch",
        json={**body, "items": items(5), "quote_id": quote["quote_id"]},
        headers=customer.headers,
    )
    assert other_body.status_code == 409 and other_body.json()["error"]["code"] == "quote_mismatch"
    created = api.http.post(
        "/api/enterprise/video-batch", json={**body, "quote_id": quote["quote_id"]}, headers=customer.headers
    )
    assert created.status_code == 202, created.text
    assert created.json()["required_credits"] == 40
    again = api.http.post(
        "/api/enterprise/video-batch", json={**body, "quote_id": quote["quote_id"]}, headers=customer.headers
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "quote_used"
    unknown = api.http.post(
        "/api/enterprise/video-batch", json={**body, "quote_id": str(uuid.uuid4())}, headers=customer.headers
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "quote_not_found"
    malformed = api.http.post(
        "/api/enterprise/video-batch", json={**body, "quote_id": "nope"}, headers=customer.headers
    )
    assert malformed.status_code == 422
    bad_quote = api.http.post("/api/enterprise/quotes", json={"items": []}, headers=customer.headers)
    assert bad_quote.status_code == 422
    api.wait_until_settled(customer, created.json()["batch_id"])
    assert api.credits(customer)["available_credits"] == 1_000 - 40
