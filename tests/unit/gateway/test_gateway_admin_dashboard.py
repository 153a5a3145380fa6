"""The dashboard pages: sign-in and session cookie, CSRF on sign-out, redirects, escaping, figures."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.testclient import TestClient
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2

from services.gateway.http.admin_sessions import SESSION_COOKIE, AdminSessions
from tests.unit.gateway.gateway_fakes import ADMIN, ADMIN_TOKEN, BATCH_ID, CUSTOMER, TENANT_ID
from tests.unit.gateway.test_gateway_admin_fakes import FinanceBilling, ReportingBatch

PAGES = [
    "/admin/batches",
    f"/admin/batches/{BATCH_ID}",
    f"/admin/batches/{BATCH_ID}?tab=tasks",
    f"/admin/batches/{BATCH_ID}?tab=billing",
    f"/admin/batches/{BATCH_ID}?tab=webhooks",
    "/admin/tenants",
    f"/admin/tenants/{TENANT_ID}",
    "/admin/reconciliation",
]


@pytest.fixture
def billing() -> FinanceBilling:
    return FinanceBilling()


@pytest.fixture
def batch() -> ReportingBatch:
    return ReportingBatch()


def sign_in(
    client: TestClient, token: str = ADMIN_TOKEN, next_path: str = "/admin/batches"
) -> httpx.Response:
    response: httpx.Response = client.post(
        "/admin/sign-in",
        data={"token": token, "next": next_path},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    return response


def stat(html: str, key: str) -> str:
    found = re.search(rf'data-stat="{key}">([^<]*)<', html)
    assert found is not None, f"no stat {key}"
    return found.group(1)


@pytest.mark.parametrize("path", PAGES)
def test_pages_without_credentials_redirect_to_sign_in(client: TestClient, path: str) -> None:
    response = client.get(path, headers=CUSTOMER, follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/sign-in?next=%2Fadmin%2F")


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_for_the_admin_bearer_token(client: TestClient, path: str) -> None:
    response = client.get(path, headers=ADMIN)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_sign_in_sets_a_signed_http_only_strict_cookie_and_returns_to_the_page(client: TestClient) -> None:
    response = sign_in(client, next_path=f"/admin/batches/{BATCH_ID}?tab=billing")

    assert response.status_code == 303
    assert response.headers["location"] == f"/admin/batches/{BATCH_ID}?tab=billing"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert client.get("/admin/batches", follow_redirects=False).status_code == 200


def test_a_wrong_token_or_a_customer_key_does_not_sign_in(client: TestClient) -> None:
    wrong = sign_in(client, token="not-the-token")
    customer_key = sign_in(client, token="demo-key")

    assert wrong.status_code == 401
    assert customer_key.status_code == 401
    assert SESSION_COOKIE not in client.cookies


def test_sign_in_posted_from_another_site_is_refused(client: TestClient) -> None:
    response = client.post(
        "/admin/sign-in", data={"token": ADMIN_TOKEN}, headers={"Origin": "https://evil.example"}
    )

    assert response.status_code == 403
    assert SESSION_COOKIE not in client.cookies


def test_sign_in_never_redirects_off_the_dashboard(client: TestClient) -> None:
    response = sign_in(client, next_path="//evil.example/admin")

    assert response.headers["location"] == "/admin/batches"


def test_a_forged_or_expired_session_is_not_accepted(client: TestClient) -> None:
    expired = AdminSessions(ADMIN_TOKEN, lifetime_seconds=-1).issue()
    valid = AdminSessions(ADMIN_TOKEN).issue()
    forged = valid[:-1] + ("0" if valid[-1] != "0" else "1")

    for cookie in (expired, forged):
        client.cookies.set(SESSION_COOKIE, cookie)
        assert client.get("/admin/batches", follow_redirects=False).status_code == 303


def test_sign_out_needs_the_sessions_csrf_token(client: TestClient) -> None:
    sign_in(client)
    page = client.get("/admin/batches").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None

    forged = client.post("/admin/sign-out", data={"csrf_token": "guess"}, follow_redirects=False)
    still_in = client.get("/admin/batches", follow_redirects=False).status_code
    real = client.post("/admin/sign-out", data={"csrf_token": token.group(1)}, follow_redirects=False)

    assert forged.status_code == 403
    assert still_in == 200
    assert real.status_code == 303
    assert client.get("/admin/batches", follow_redirects=False).status_code == 303


def test_overview_shows_the_seed_demo_figures_and_whose_fault(client: TestClient) -> None:
    html = client.get(f"/admin/batches/{BATCH_ID}", headers=ADMIN).text

    figures = {
        key: stat(html, key) for key in ("total", "success", "failed", "frozen", "spent", "refunded", "net")
    }
    assert figures == {
        "total": "20",
        "success": "19",
        "failed": "1",
        "frozen": "200",
        "spent": "190",
        "refunded": "10",
        "net": "190",
    }
    assert stat(html, "margin") == "76.0%"
    assert 'data-fault="customer_input"' in html
    # A finished, settled batch does not refresh itself.
    assert 'http-equiv="refresh"' not in html


def test_a_running_batch_page_refreshes_itself(client: TestClient, batch: ReportingBatch) -> None:
    batch.batch.status, batch.batch.pending_count, batch.batch.settlement_status = "processing", 5, "pending"

    html = client.get(f"/admin/batches/{BATCH_ID}", headers=ADMIN).text

    assert 'http-equiv="refresh"' in html
    assert "● live" in html


def test_a_batch_page_links_the_batch_it_retries_and_its_retries(
    client: TestClient, batch: ReportingBatch
) -> None:
    source, retry = "0b6c1c66-8a3f-4c43-9f53-6b3c2f0f3a10", "5e2a9d0e-1f4b-4a7e-b2a8-0c3d9e4f5a61"
    batch.batch.retry_of_batch_id = source
    batch.batch.retry_batch_ids.append(retry)

    html = client.get(f"/admin/batches/{BATCH_ID}", headers=ADMIN).text
    detail = client.get(f"/api/admin/batches/{BATCH_ID}", headers=ADMIN).json()

    assert f'retry of <a class="mono" href="/admin/batches/{source}">{source[:8]}</a>' in html
    assert f'retried as <a class="mono" href="/admin/batches/{retry}">{retry[:8]}</a>' in html
    assert (detail["retry_of"], detail["retries"]) == (source, [retry])


def test_billing_tab_shows_upfront_refund_and_net(client: TestClient) -> None:
    html = client.get(f"/admin/batches/{BATCH_ID}?tab=billing", headers=ADMIN).text

    assert (stat(html, "upfront"), stat(html, "refund"), stat(html, "net-spent")) == ("200", "10", "190")


def test_values_from_the_backends_are_escaped(client: TestClient) -> None:
    tenants = client.get("/admin/tenants", headers=ADMIN).text
    billing = client.get(f"/admin/batches/{BATCH_ID}?tab=billing", headers=ADMIN).text

    assert "Acme &lt;Studios&gt;" in tenants
    assert "<Studios>" not in tenants
    assert "task-&lt;7&gt;" in billing


def test_reconciliation_page_says_whether_the_books_balance(
    client: TestClient, billing: FinanceBilling
) -> None:
    clean = client.get("/admin/reconciliation", headers=ADMIN).text
    billing.discrepancies = [billing_pb2.Discrepancy(invariant="I2", subject="ledger", message="sum 1")]
    broken = client.get("/admin/reconciliation", headers=ADMIN).text

    assert 'id="balanced"' in clean
    assert 'id="unbalanced"' in broken
    assert "sum 1" in broken


def test_unknown_batch_page_is_a_404_page(client: TestClient) -> None:
    response = client.get("/admin/batches/not-a-uuid", headers=ADMIN)

    assert response.status_code == 404
    assert "Not found" in response.text


def test_stylesheet_is_served(client: TestClient) -> None:
    response = client.get("/admin/static/admin.css")

    assert response.status_code == 200
    assert "@media (max-width: 720px)" in response.text


def test_the_batches_overview_shows_a_model_whose_breaker_is_open_as_degraded(
    client: TestClient, batch: ReportingBatch
) -> None:
    assert "Degraded models" not in client.get("/admin/batches", headers=ADMIN).text
    batch.degraded_models = [
        batch_pb2.DegradedModel(model="veo-3", state="open", failures=7, outage_seconds=42.4)
    ]
    page = client.get("/admin/batches", headers=ADMIN).text
    assert "Degraded models" in page
    assert (
        '<li data-model="veo-3"><strong>veo-3</strong>: degraded (provider down) for 42 s, 7 failures' in page
    )


def test_the_batches_overview_shows_each_provider_route_with_its_share_failures_and_cost(
    client: TestClient, batch: ReportingBatch
) -> None:
    assert "Provider routes" not in client.get("/admin/batches", headers=ADMIN).text
    batch.provider_routes = [
        batch_pb2.ProviderRouteUsage(
            model="veo-3",
            provider="fal",
            tasks=20,
            jobs=20,
            succeeded_jobs=20,
            video_share=1.0,
            cost_usd_micros=2_000_000,
        ),
        batch_pb2.ProviderRouteUsage(model="veo-3", provider="veo", tasks=20, jobs=24, failed_jobs=24),
    ]
    page = client.get("/admin/batches", headers=ADMIN).text
    assert "Provider routes" in page
    assert '<tr data-route="veo-3@fal">' in page
    assert '<td class="num" data-stat="share">100%</td>' in page
    assert '<td class="num" data-stat="cost">2.00</td>' in page
    assert '<td class="num" data-stat="failed">24</td>' in page
    listed = client.get("/api/admin/provider-routes", headers=ADMIN)
    assert listed.status_code == 200
    assert [(r["provider"], r["video_share"], r["failed_jobs"]) for r in listed.json()["items"]] == [
        ("fal", 1.0, 0),
        ("veo", 0.0, 24),
    ]
