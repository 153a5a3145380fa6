"""Admin endpoints: bearer-token authentication, tenants, keys, top-ups, cross-tenant batch reads."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from libs.errors import NotFound
from tests.unit.gateway.gateway_fakes import (
    ADMIN,
    ADMIN_TOKEN,
    BATCH_ID,
    CUSTOMER,
    OTHER_TENANT_ID,
    TENANT_ID,
    FakeBatch,
    FakeBilling,
    assert_error_shape,
    rpc_error,
)

ADMIN_ROUTES = [
    ("POST", "/api/admin/tenants", {"name": "Acme"}),
    ("POST", f"/api/admin/tenants/{TENANT_ID}/api-keys", None),
    ("POST", f"/api/admin/tenants/{TENANT_ID}/credits", {"credits": 10, "reference": "p-1"}),
    ("GET", f"/api/admin/tenants/{TENANT_ID}/credits", None),
    ("GET", "/api/admin/batches", None),
    ("GET", f"/api/admin/batches/{BATCH_ID}", None),
    ("GET", f"/api/admin/batches/{BATCH_ID}/tasks", None),
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

    assert response.json() == {"available_credits": 4980, "held_credits": 20}
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
