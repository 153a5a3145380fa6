"""Admin endpoints: bearer-token authentication, tenants, keys, top-ups, cross-tenant batch reads,
the batch overview/billing/webhooks, reconciliation and the ledger exports."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import grpc
import pytest
from fastapi.testclient import TestClient
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2
from reelbatch.proto.webhook.v1 import webhook_pb2

from libs.errors import NotFound
from services.gateway.http.admin_sessions import SESSION_COOKIE, AdminSessions
from tests.unit.gateway.gateway_fakes import (
    ADMIN,
    ADMIN_TOKEN,
    BATCH_ID,
    CREATED_AT,
    CUSTOMER,
    OTHER_TENANT_ID,
    TENANT_ID,
    FakeBatch,
    FakeBilling,
    FakeWebhook,
    assert_error_shape,
    rpc_error,
    timestamp,
    transport_error,
)
from tests.unit.gateway.test_gateway_admin_fakes import FinanceBilling, ReportingBatch


@pytest.fixture
def billing() -> FinanceBilling:
    return FinanceBilling()


@pytest.fixture
def batch() -> ReportingBatch:
    return ReportingBatch()


ADMIN_ROUTES = [
    ("POST", "/api/admin/tenants", {"name": "Acme"}),
    ("POST", f"/api/admin/tenants/{TENANT_ID}/api-keys", None),
    ("POST", f"/api/admin/tenants/{TENANT_ID}/credits", {"credits": 10, "reference": "p-1"}),
    ("GET", f"/api/admin/tenants/{TENANT_ID}/credits", None),
    ("GET", "/api/admin/batches", None),
    ("GET", f"/api/admin/batches/{BATCH_ID}", None),
    ("GET", f"/api/admin/batches/{BATCH_ID}/tasks", None),
    ("GET", f"/api/admin/batches/{BATCH_ID}/billing", None),
    ("GET", f"/api/admin/batches/{BATCH_ID}/webhooks", None),
    ("GET", "/api/admin/tenants", None),
    ("GET", f"/api/admin/tenants/{TENANT_ID}/ledger", None),
    ("GET", "/api/admin/reconciliation", None),
    ("GET", "/api/admin/ledger.csv", None),
]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-value"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": ADMIN_TOKEN},
        CUSTOMER,
    ],
    ids=["none", "wrong", "longer", "basic scheme", "no scheme", "customer key"],
)
@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_admin_routes_refuse_anything_but_the_admin_token(
    client: TestClient,
    billing: FakeBilling,
    batch: FakeBatch,
    headers: dict[str, str],
    method: str,
    path: str,
    body: object,
) -> None:
    response = client.request(method, path, json=body, headers=headers)

    assert response.status_code == 401
    assert_error_shape(response.json(), "unauthorized")
    assert billing.calls == []
    assert batch.calls == []


def test_create_tenant_is_201_with_its_id(client: TestClient, billing: FakeBilling) -> None:
    response = client.post("/api/admin/tenants", json={"name": "Acme Studios"}, headers=ADMIN)

    assert response.status_code == 201
    assert response.json() == {"tenant_id": OTHER_TENANT_ID}
    assert billing.requests("CreateTenant")[0].name == "Acme Studios"


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "   "}, {"name": "a", "plan": "gold"}])
def test_create_tenant_with_a_bad_body_is_422(client: TestClient, billing: FakeBilling, body: object) -> None:
    response = client.post("/api/admin/tenants", json=body, headers=ADMIN)

    assert response.status_code == 422
    assert_error_shape(response.json(), "validation_error")
    assert billing.calls == []


def test_known_api_key_can_be_registered(client: TestClient, billing: FakeBilling) -> None:
    response = client.post(
        f"/api/admin/tenants/{TENANT_ID}/api-keys", json={"api_key": "demo-key"}, headers=ADMIN
    )

    assert response.status_code == 201
    assert response.json() == {"api_key": "demo-key", "key_id": "key-2"}
    [sent] = billing.requests("CreateApiKey")
    assert (sent.tenant_id, sent.api_key) == (TENANT_ID, "demo-key")


def test_api_key_is_generated_without_a_body(client: TestClient, billing: FakeBilling) -> None:
    response = client.post(f"/api/admin/tenants/{TENANT_ID}/api-keys", headers=ADMIN)

    assert response.status_code == 201
    assert response.json()["api_key"] == "rb_generated"
    assert billing.requests("CreateApiKey")[0].api_key == ""


def test_api_key_for_an_unknown_tenant_is_404(client: TestClient, billing: FakeBilling) -> None:
    billing.failures["CreateApiKey"] = rpc_error(NotFound("tenant not found"))

    response = client.post(f"/api/admin/tenants/{OTHER_TENANT_ID}/api-keys", headers=ADMIN)

    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")


def test_top_up_answers_the_balance_and_whether_it_was_replayed(
    client: TestClient, billing: FakeBilling
) -> None:
    first = client.post(
        f"/api/admin/tenants/{TENANT_ID}/credits",
        json={"credits": 500, "reference": "payment-1"},
        headers=ADMIN,
    )
    again = client.post(
        f"/api/admin/tenants/{TENANT_ID}/credits",
        json={"credits": 500, "reference": "payment-1-seen"},
        headers=ADMIN,
    )

    assert first.status_code == 200
    assert first.json() == {"balance": 5500, "replayed": False}
    assert again.json() == {"balance": 5500, "replayed": True}
    sent = billing.requests("TopUp")[0]
    assert (sent.tenant_id, sent.credits, sent.reference) == (TENANT_ID, 500, "payment-1")


@pytest.mark.parametrize(
    "body",
    [
        {"credits": 0, "reference": "p"},
        {"credits": -5, "reference": "p"},
        {"credits": 1.5, "reference": "p"},
        {"credits": "10", "reference": "p"},
        {"credits": 10, "reference": ""},
        {"credits": 10},
        {"credits": 10, "reference": "p", "note": "x"},
    ],
    ids=["zero", "negative", "fraction", "string", "empty reference", "no reference", "unknown field"],
)
def test_bad_top_up_is_422(client: TestClient, billing: FakeBilling, body: object) -> None:
    response = client.post(f"/api/admin/tenants/{TENANT_ID}/credits", json=body, headers=ADMIN)

    assert response.status_code == 422
    assert_error_shape(response.json(), "validation_error")
    assert billing.calls == []


def test_admin_reads_a_tenants_balance(client: TestClient, billing: FakeBilling) -> None:
    response = client.get(f"/api/admin/tenants/{TENANT_ID}/credits", headers=ADMIN)

    assert response.json() == {"available_credits": 4980, "held_credits": 20, "debt_credits": 0}
    assert billing.requests("GetBalance")[0].tenant_id == TENANT_ID


def test_admin_batch_list_spans_all_tenants_unless_filtered(client: TestClient, batch: FakeBatch) -> None:
    everyone = client.get("/api/admin/batches", headers=ADMIN)
    one = client.get("/api/admin/batches", headers=ADMIN, params={"tenant_id": TENANT_ID, "limit": 5})

    assert everyone.status_code == 200
    assert everyone.json()["items"][0]["tenant_id"] == TENANT_ID
    assert everyone.json()["items"][0]["request_id"] == "demo-1"
    assert everyone.json()["next_cursor"] == "cursor-2"
    assert one.status_code == 200
    assert [(sent.tenant_id, sent.limit) for sent in batch.requests("ListBatches")] == [
        ("", 50),
        (TENANT_ID, 5),
    ]


def test_admin_reads_any_batch_and_its_tasks_in_admin_scope(client: TestClient, batch: FakeBatch) -> None:
    batch.batch.tenant_id = OTHER_TENANT_ID

    detail = client.get(f"/api/admin/batches/{BATCH_ID}", headers=ADMIN)
    tasks = client.get(f"/api/admin/batches/{BATCH_ID}/tasks", headers=ADMIN)

    assert detail.status_code == 200
    assert detail.json()["tenant_id"] == OTHER_TENANT_ID
    assert detail.json()["batch_id"] == BATCH_ID
    assert tasks.status_code == 200
    assert tasks.json() == {"items": [], "next_cursor": None}
    assert batch.requests("GetBatch")[0].tenant_id == ""
    assert batch.requests("ListTasks")[0].tenant_id == ""


def test_admin_malformed_batch_id_is_404(client: TestClient, batch: FakeBatch) -> None:
    response = client.get("/api/admin/batches/../../etc/passwd", headers=ADMIN)

    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")
    assert batch.calls == []


def test_batch_overview_says_what_it_earned_what_was_refunded_and_whose_fault(
    client: TestClient, billing: FinanceBilling, batch: ReportingBatch
) -> None:
    response = client.get(f"/api/admin/batches/{BATCH_ID}", headers=ADMIN)

    assert response.status_code == 200
    body = response.json()
    assert (body["total_count"], body["success_count"], body["failed_count"]) == (20, 19, 1)
    assert (body["frozen_credits"], body["credits_spent"], body["refunded_credits"]) == (200, 190, 10)
    assert body["net_spent"] == 190
    assert body["margin"]["margin_percent"] == 76.0
    assert body["margin"]["provider_cost_usd_micros"] == 19 * 24_000
    assert body["failures"] == [
        {"failure_type": "content_policy", "fault": "customer_input", "count": 1, "refunded_credits": 10}
    ]
    assert body["timing"]["duration_seconds"] == 60.0
    assert body["timing"]["total_attempts"] == 21
    # The batch's real margin: billing reads what its task outcomes reported (ADR-144).
    [margin_request] = billing.requests("EstimateMargin")
    assert (margin_request.batch_id, list(margin_request.delivered)) == (BATCH_ID, [])
    assert (body["margin"]["provider_jobs"], body["margin"]["provider_cost_estimated"]) == (19, False)
    assert batch.requests("GetBatchBreakdown")[0].tenant_id == ""


def test_batch_billing_has_upfront_refund_and_net_totals_with_entries(
    client: TestClient, billing: FinanceBilling
) -> None:
    response = client.get(f"/api/admin/batches/{BATCH_ID}/billing", headers=ADMIN)

    assert response.status_code == 200
    body = response.json()
    assert (body["upfront_total"], body["capture_total"], body["refund_total"], body["net_spent"]) == (
        200,
        190,
        10,
        190,
    )
    assert [(e["ref_type"], e["credits_delta"]) for e in body["entries"]] == [
        ("batch_upfront", -200),
        ("batch_refund", 10),
    ]
    assert body["next_cursor"] is None


def test_billing_of_a_batch_billing_never_reserved_is_404(client: TestClient) -> None:
    response = client.get("/api/admin/batches/00000000-0000-4000-8000-000000000000/billing", headers=ADMIN)

    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")


def test_batch_webhooks_list_deliveries_with_their_attempts(client: TestClient, webhook: FakeWebhook) -> None:
    webhook.deliveries = [
        webhook_pb2.Delivery(
            message_id="msg_1",
            tenant_id=TENANT_ID,
            batch_id=BATCH_ID,
            event_type="batch.completed",
            url="https://customer.example/hook",
            status="delivered",
            attempts=[
                webhook_pb2.DeliveryAttempt(
                    attempt_number=1,
                    attempted_at=timestamp(CREATED_AT),
                    duration_ms=30,
                    http_status=503,
                    error_class="5xx",
                ),
                webhook_pb2.DeliveryAttempt(
                    attempt_number=2, attempted_at=timestamp(CREATED_AT), duration_ms=12, http_status=200
                ),
            ],
            created_at=timestamp(CREATED_AT),
            delivered_at=timestamp(CREATED_AT),
        )
    ]

    response = client.get(f"/api/admin/batches/{BATCH_ID}/webhooks", headers=ADMIN)

    assert response.status_code == 200
    [delivery] = response.json()["items"]
    assert delivery["status"] == "delivered"
    assert [(a["http_status"], a["error_class"]) for a in delivery["attempts"]] == [(503, "5xx"), (200, None)]
    [sent] = webhook.requests("ListDeliveries")
    assert (sent.tenant_id, sent.batch_id) == ("", BATCH_ID)


def test_batch_webhooks_answer_503_while_the_webhook_service_is_down(
    client: TestClient, webhook: FakeWebhook
) -> None:
    webhook.failures["ListDeliveries"] = transport_error(grpc.StatusCode.UNAVAILABLE)

    response = client.get(f"/api/admin/batches/{BATCH_ID}/webhooks", headers=ADMIN)

    assert response.status_code == 503
    assert_error_shape(response.json(), "unavailable")


def test_batch_list_passes_every_filter_to_the_batch_service(
    client: TestClient, batch: ReportingBatch
) -> None:
    response = client.get(
        "/api/admin/batches",
        headers=ADMIN,
        params={
            "status": "partial",
            "settlement_status": "refunded",
            "created_from": "2026-01-01T00:00:00Z",
            "created_to": "2026-02-01T00:00:00+00:00",
        },
    )

    assert response.status_code == 200
    [sent] = batch.requests("ListBatches")
    assert (sent.status, sent.settlement_status) == ("partial", "refunded")
    assert sent.created_from.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 1, tzinfo=UTC)
    assert sent.created_to.ToDatetime(tzinfo=UTC) == datetime(2026, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "params",
    [{"settlement_status": "paid"}, {"created_from": "yesterday"}, {"created_from": "2026-01-01T00:00:00"}],
    ids=["unknown settlement", "not a date", "naive date"],
)
def test_batch_list_with_a_bad_filter_is_422(
    client: TestClient, batch: ReportingBatch, params: dict[str, str]
) -> None:
    response = client.get("/api/admin/batches", headers=ADMIN, params=params)

    assert response.status_code == 422
    assert batch.calls == []


def test_task_list_filters_by_failure_type(client: TestClient, batch: ReportingBatch) -> None:
    response = client.get(
        f"/api/admin/batches/{BATCH_ID}/tasks", headers=ADMIN, params={"failure_type": "content_policy"}
    )
    unknown = client.get(
        f"/api/admin/batches/{BATCH_ID}/tasks", headers=ADMIN, params={"failure_type": "oops"}
    )

    assert response.status_code == 200
    assert batch.requests("ListTasks")[0].failure_type == "content_policy"
    assert unknown.status_code == 422


def test_tenants_are_listed_with_their_balances(client: TestClient) -> None:
    response = client.get("/api/admin/tenants", headers=ADMIN)

    assert response.status_code == 200
    assert response.json()["items"][0] | {"created_at": None} == {
        "tenant_id": TENANT_ID,
        "name": "Acme <Studios>",
        "available_credits": 4810,
        "held_credits": 0,
        "created_at": None,
    }


def test_reconciliation_lists_every_discrepancy(
    client: TestClient, billing: FinanceBilling, batch: ReportingBatch
) -> None:
    clean = client.get("/api/admin/reconciliation", headers=ADMIN).json()
    billing.discrepancies = [
        billing_pb2.Discrepancy(invariant="I2", subject="available account 7", message="balance 11 != 10")
    ]
    batch.provider_job_findings = [
        batch_pb2.ProviderJobFinding(
            check="provider_job_in_doubt", task_id="t-1", attempt=1, message="create call answer lost"
        )
    ]
    broken = client.get("/api/admin/reconciliation", headers=ADMIN).json()

    assert clean["discrepancies"] == []
    assert clean["batches_checked"] == 1
    assert broken["discrepancies"] == [
        {"invariant": "I2", "subject": "available account 7", "message": "balance 11 != 10"},
        {
            "invariant": "I9",
            "subject": "task t-1 attempt 1",
            "message": "provider_job_in_doubt: create call answer lost",
        },
    ]


def _export_row(entry_id: int, amount: int, balance_after: int | None) -> billing_pb2.LedgerExportRow:
    row = billing_pb2.LedgerExportRow(
        entry_id=str(entry_id),
        transfer_id=str(entry_id),
        created_at=timestamp(CREATED_AT),
        tenant_id=TENANT_ID,
        account="available" if balance_after is not None else "revenue",
        batch_id=BATCH_ID,
        ref_type="batch_upfront",
        ref_id=BATCH_ID,
        amount=amount,
    )
    if balance_after is not None:
        row.balance_after = balance_after
    return row


def test_ledger_export_streams_csv_for_the_date_range(client: TestClient, billing: FinanceBilling) -> None:
    billing.export = [_export_row(n, -1, 5000 - n) for n in range(1, 2502)] + [_export_row(2502, 7, None)]

    response = client.get(
        "/api/admin/ledger.csv",
        headers=ADMIN,
        params={"created_from": "2026-01-01T00:00:00Z", "created_to": "2026-01-02T00:00:00Z"},
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "ledger_from-20260101T000000_to-20260102T000000.csv" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 2502
    assert rows[0]["amount"] == "-1"
    assert rows[0]["balance_after"] == "4999"
    assert rows[-1]["balance_after"] == ""
    [sent] = billing.requests("ExportLedgerPages")
    assert sent.tenant_id == ""
    assert sent.created_from.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 1, tzinfo=UTC)


def test_customer_exports_only_its_own_ledger(client: TestClient, billing: FinanceBilling) -> None:
    billing.export = [_export_row(1, 5000, 5000)]

    response = client.get("/api/enterprise/ledger.csv", headers=CUSTOMER)
    anonymous = client.get("/api/enterprise/ledger.csv")

    assert response.status_code == 200
    assert response.text.splitlines()[0].startswith("entry_id,transfer_id,created_at")
    assert billing.requests("ExportLedgerPages")[0].tenant_id == TENANT_ID
    assert anonymous.status_code == 401


def test_a_dashboard_session_reads_the_admin_api_but_cannot_change_anything(
    client: TestClient, billing: FinanceBilling
) -> None:
    client.cookies.set(SESSION_COOKIE, AdminSessions(ADMIN_TOKEN).issue())

    read = client.get("/api/admin/tenants")
    write = client.post("/api/admin/tenants", json={"name": "Sneaky"})

    assert read.status_code == 200
    assert write.status_code == 401
    assert billing.requests("CreateTenant") == []


def test_a_session_signed_with_another_token_is_refused(client: TestClient) -> None:
    client.cookies.set(SESSION_COOKIE, AdminSessions("another-admin-token").issue())

    assert client.get("/api/admin/tenants").status_code == 401
