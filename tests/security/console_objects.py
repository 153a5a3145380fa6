"""Objects of a tenant that the console's matrices put in the money and developer routes' paths:
a payment, an API key, a webhook endpoint, a webhook message (made through the operator and
customer APIs, as a customer would have them)."""

from __future__ import annotations

import time
import uuid

import psycopg

from tests.rest_api import Api, Customer

# One payment and one message per tenant are enough (reading them changes nothing).
_payments: dict[str, str] = {}
_messages: dict[str, str] = {}


def fresh_api_key(api: Api, customer: Customer) -> str:
    """A new API key of the tenant (revoking it leaves the tenant's own key working); its id."""
    created = api.http.post(f"/api/admin/tenants/{customer.tenant_id}/api-keys", headers=api.admin)
    assert created.status_code == 201, created.text
    return str(created.json()["key_id"])


def fresh_endpoint(api: Api, customer: Customer) -> str:
    """A new webhook endpoint of the tenant (to a port nothing listens on); its id."""
    created = api.http.post(
        "/api/enterprise/webhook-endpoints",
        # A URL of its own: a tenant registers one URL once (endpoint_already_registered).
        json={"url": f"http://127.0.0.1:9/hooks/{uuid.uuid4().hex[:12]}"},
        headers=customer.headers,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["endpoint_id"])


def a_message(api: Api, customer: Customer) -> str:
    """A webhook message of the tenant: an endpoint, then a batch whose events it is sent."""
    if customer.tenant_id not in _messages:
        fresh_endpoint(api, customer)
        created = api.create_batch(customer, [{"prompt": "A quiet pond", "model": "sora-2"}])
        assert created.status_code == 202, created.text
        api.wait_until_settled(customer, created.json()["batch_id"])
        deadline = time.monotonic() + 30
        while customer.tenant_id not in _messages:
            assert time.monotonic() < deadline, "no webhook message in time"
            page = api.http.get("/api/enterprise/webhook-messages", headers=customer.headers)
            assert page.status_code == 200, page.text
            if page.json()["items"]:
                _messages[customer.tenant_id] = str(page.json()["items"][0]["message_id"])
            time.sleep(0.1)
    return _messages[customer.tenant_id]


def a_payment(api: Api, database_url: str, customer: Customer) -> str:
    """A payment of the tenant (an invoice of a pack); its id."""
    if customer.tenant_id not in _payments:
        paid = api.http.post(
            f"/api/admin/tenants/{customer.tenant_id}/payments",
            json={"reference": f"INV-{uuid.uuid4().hex[:8]}", "pack_id": "pilot"},
            headers=api.admin,
        )
        assert paid.status_code == 200, paid.text
        with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
            row = conn.execute(
                "SELECT max(id) FROM billing.payments WHERE tenant_id = %s", (customer.tenant_id,)
            ).fetchone()
        assert row is not None and row[0] is not None
        _payments[customer.tenant_id] = str(row[0])
    return _payments[customer.tenant_id]
