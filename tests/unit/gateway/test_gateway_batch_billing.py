"""The customer's batch ledger (`GET /api/enterprise/video-batch/{id}/billing`, ADR-104): the
batch's totals and transfers with their public ids, for the batch's own tenant only."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.unit.gateway.gateway_fakes import (
    BATCH_ID,
    CUSTOMER,
    OTHER_TENANT_ID,
    TENANT_ID,
    assert_error_shape,
)
from tests.unit.gateway.test_gateway_admin_fakes import FinanceBilling

URL = f"/api/enterprise/video-batch/{BATCH_ID}/billing"


@pytest.fixture
def billing() -> FinanceBilling:
    return FinanceBilling()


def test_the_batch_ledger_shows_its_transfers_with_their_public_ids(
    client: TestClient, billing: FinanceBilling
) -> None:
    response = client.get(URL, headers=CUSTOMER, params={"limit": 2, "cursor": "7"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["tenant_id"], body["net_spent"]) == (TENANT_ID, 190)
    assert [(entry["ref_type"], entry["credits_delta"]) for entry in body["entries"]] == [
        ("batch_upfront", -200),
        ("batch_refund", 10),
    ]
    assert all("ledger_transfer_id" in entry for entry in body["entries"])
    [sent] = billing.requests("GetBatchLedger")
    assert (sent.batch_id, sent.cursor, sent.limit) == (BATCH_ID, "7", 2)


def test_another_tenants_batch_and_an_unknown_batch_are_404(
    client: TestClient, billing: FinanceBilling
) -> None:
    billing.api_keys["other-key"] = OTHER_TENANT_ID

    foreign = client.get(URL, headers={"X-API-Key": "other-key"})
    unknown = client.get(
        "/api/enterprise/video-batch/00000000-0000-4000-8000-000000000000/billing", headers=CUSTOMER
    )

    for refused in (foreign, unknown):
        assert refused.status_code == 404, refused.text
        assert_error_shape(refused.json(), "not_found")
