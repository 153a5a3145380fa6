"""A thin REST client for tests and benchmarks: what a customer and an admin do with curl."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.stack import ADMIN_TOKEN


@dataclass(frozen=True)
class Customer:
    tenant_id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}


class Api:
    """A thin REST client for the tests: what a customer and an admin would do with curl."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def new_customer(self, credits: int) -> Customer:
        tenant = self.http.post(
            "/api/admin/tenants", json={"name": f"studio-{uuid.uuid4().hex[:6]}"}, headers=self.admin
        )
        assert tenant.status_code == 201, tenant.text
        tenant_id = tenant.json()["tenant_id"]
        key = self.http.post(f"/api/admin/tenants/{tenant_id}/api-keys", headers=self.admin)
        assert key.status_code == 201, key.text
        if credits:
            topup = self.http.post(
                f"/api/admin/tenants/{tenant_id}/credits",
                json={"credits": credits, "reference": f"payment-{uuid.uuid4()}"},
                headers=self.admin,
            )
            assert topup.status_code == 200, topup.text
        return Customer(tenant_id, key.json()["api_key"])

    def create_batch(
        self, customer: Customer, items: list[dict[str, str]], request_id: str | None = None
    ) -> httpx.Response:
        headers = dict(customer.headers)
        if request_id:
            headers["X-Request-ID"] = request_id
        return self.http.post("/api/enterprise/video-batch", json={"items": items}, headers=headers)

    def create_settled_batch(self, customer: Customer, items: list[dict[str, str]]) -> str:
        """Creates a batch of `items`, waits until it is settled, and returns its id."""
        created = self.create_batch(customer, items)
        assert created.status_code == 202, created.text
        batch_id: str = created.json()["batch_id"]
        self.wait_until_settled(customer, batch_id)
        return batch_id

    def batch(self, customer: Customer, batch_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/enterprise/video-batch/{batch_id}", headers=customer.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_until_settled(
        self, customer: Customer, batch_id: str, timeout: float = 60, poll_seconds: float = 0.1
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            response = self.http.get(f"/api/enterprise/video-batch/{batch_id}", headers=customer.headers)
            # A poll answered 503 (a backend past its deadline on a busy host) is polled again, as
            # the API asks; any other answer but 200 fails at once.
            if response.status_code != 503:
                assert response.status_code == 200, response.text
                batch: dict[str, Any] = response.json()
                if batch["settlement_status"] != "pending":
                    return batch
            if time.monotonic() > deadline:
                raise AssertionError(f"batch not settled in {timeout}s: {response.text}")
            time.sleep(poll_seconds)

    def tasks(self, customer: Customer, batch_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = self.http.get(
                f"/api/enterprise/video-batch/{batch_id}/tasks", params=params, headers=customer.headers
            )
            assert page.status_code == 200, page.text
            items += page.json()["items"]
            cursor = page.json()["next_cursor"]
            if not cursor:
                return items

    def ledger(self, customer: Customer, batch_id: str | None = None) -> list[dict[str, Any]]:
        params = {"batch_id": batch_id} if batch_id else {}
        response = self.http.get("/api/enterprise/ledger", params=params, headers=customer.headers)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def credits(self, customer: Customer) -> dict[str, int]:
        response = self.http.get("/api/enterprise/credits", headers=customer.headers)
        assert response.status_code == 200, response.text
        body: dict[str, int] = response.json()
        return body
