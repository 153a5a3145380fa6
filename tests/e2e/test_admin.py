"""Admin and finance end to end: reconciliation over real data, exports, and the admin gate."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import psycopg
import pytest

from tests.rest_api import Api, Customer
from tests.stack import Stack

ADMIN_READS = [
    "/api/admin/batches",
    "/api/admin/tenants",
    "/api/admin/reconciliation",
    "/api/admin/ledger.csv",
]


@pytest.fixture(scope="module")
def settled_batch(api: Api) -> tuple[Customer, str]:
    customer = api.new_customer(1000)
    items = [{"prompt": f"clip {n}", "model": "sora-2"} for n in range(4)] + [
        {"prompt": "refused #fail", "model": "sora-2"}
    ]
    response = api.create_batch(customer, items)
    assert response.status_code == 202, response.text
    batch_id: str = response.json()["batch_id"]
    api.wait_until_settled(customer, batch_id)
    return customer, batch_id


@pytest.fixture
def inflated_balance(stack: Stack, settled_batch: tuple[Customer, str]) -> Iterator[str]:
    """One tenant's balance raised by a credit behind the ledger's back (undone afterwards)."""
    customer, _ = settled_batch
    dsn = stack.database_url.replace("postgresql+psycopg://", "postgresql://")
    change = "UPDATE billing.accounts SET balance = balance + %s WHERE kind = 'available' AND tenant_id = %s"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(change, (1, customer.tenant_id))
    yield customer.tenant_id
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(change, (-1, customer.tenant_id))


def test_reconciliation_finds_nothing_after_a_settled_batch(
    api: Api, settled_batch: tuple[Customer, str]
) -> None:
    report = api.http.get("/api/admin/reconciliation", headers=api.admin)

    assert report.status_code == 200, report.text
    assert report.json()["discrepancies"] == []
    assert report.json()["batches_checked"] >= 1


def test_reconciliation_reports_a_balance_changed_behind_the_ledger(api: Api, inflated_balance: str) -> None:
    report = api.http.get("/api/admin/reconciliation", headers=api.admin).json()

    mine = [found for found in report["discrepancies"] if inflated_balance in found["subject"]]
    assert [found["invariant"] for found in mine] == ["I2", "I2"]
    assert any("!= sum of entries" in found["message"] for found in mine)


def test_batch_overview_and_billing_agree_with_the_customer_view(
    api: Api, settled_batch: tuple[Customer, str]
) -> None:
    customer, batch_id = settled_batch

    overview = api.http.get(f"/api/admin/batches/{batch_id}", headers=api.admin).json()
    billing = api.http.get(f"/api/admin/batches/{batch_id}/billing", headers=api.admin).json()

    assert (overview["success_count"], overview["failed_count"], overview["net_spent"]) == (4, 1, 40)
    assert overview["failures"] == [
        {"failure_type": "content_policy", "fault": "customer_input", "count": 1, "refunded_credits": 10}
    ]
    assert (billing["upfront_total"], billing["capture_total"], billing["refund_total"]) == (50, 40, 10)
    assert billing["net_spent"] == 40
    assert len(billing["entries"]) == 6
    assert sum(entry["credits_delta"] for entry in billing["entries"]) == -40
    assert api.credits(customer)["available_credits"] == 1000 - 40


def test_ledger_exports_match_the_ledger(api: Api, settled_batch: tuple[Customer, str]) -> None:
    customer, _ = settled_batch

    everything = api.http.get("/api/admin/ledger.csv", headers=api.admin)
    own = api.http.get("/api/enterprise/ledger.csv", headers=customer.headers)
    future = api.http.get(
        "/api/admin/ledger.csv", headers=api.admin, params={"created_from": "2999-01-01T00:00:00Z"}
    )

    all_rows = list(csv.DictReader(io.StringIO(everything.text)))
    own_rows = list(csv.DictReader(io.StringIO(own.text)))
    assert sum(int(row["amount"]) for row in all_rows) == 0
    assert {row["tenant_id"] for row in own_rows} == {customer.tenant_id}
    assert [row["ref_type"] for row in own_rows] == ["topup", "batch_upfront", "batch_refund"]
    assert own_rows[-1]["balance_after"] == str(1000 - 40)
    assert future.text.strip().splitlines() == [
        ",".join(csv.DictReader(io.StringIO(everything.text)).fieldnames or [])
    ]


@pytest.mark.parametrize("path", ADMIN_READS)
def test_admin_api_refuses_a_customer_key_and_no_key(
    api: Api, settled_batch: tuple[Customer, str], path: str
) -> None:
    customer, _ = settled_batch

    assert api.http.get(path).status_code == 401
    assert api.http.get(path, headers=customer.headers).status_code == 401
    assert api.http.get(path, headers={"Authorization": f"Bearer {customer.api_key}"}).status_code == 401
