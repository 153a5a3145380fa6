"""The multi-host test's customers: requests spread over every gateway, each answer recorded.

A `Client` sends each request to the next gateway in turn (as a load balancer would) and keeps
every answer with its tenant and times, so the test can check afterwards that each tenant's
request rate held across all gateways together (`rate_limit_check`). Creates carry an
`X-Request-ID` and are sent again on 429 or 503 with the same id (I5: never a second batch).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.stack import ADMIN_TOKEN

# Answers that say "try again": the rate limit, or a backend briefly unavailable (a replica
# killed, the broker restarting).
RETRY_STATUSES = (429, 503)
TRANSPORT_ATTEMPTS = 3


@dataclass(frozen=True)
class Answer:
    """One request of a tenant and its answer."""

    tenant: str
    gateway: int
    path: str
    sent: float
    received: float
    status: int
    code: str | None


@dataclass(frozen=True)
class Tenant:
    """A customer: its id and API key."""

    tenant_id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}


@dataclass
class Client:
    """Round robin over the gateways; every answer of a tenant's key is recorded."""

    gateway_urls: list[str]
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._http = [httpx.AsyncClient(base_url=url, timeout=60) for url in self.gateway_urls]
        self._next = itertools.cycle(range(len(self._http)))

    async def close(self) -> None:
        for http in self._http:
            await http.aclose()

    async def send(self, tenant: Tenant | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request to the next gateway; with a `tenant`, its key is sent and the answer kept."""
        gateway = next(self._next)
        headers = dict(kwargs.pop("headers", {}))
        headers.update(tenant.headers if tenant else {"Authorization": f"Bearer {ADMIN_TOKEN}"})
        for attempt in range(TRANSPORT_ATTEMPTS):
            sent = time.monotonic()
            try:
                response = await self._http[gateway].request(method, path, headers=headers, **kwargs)
                break
            except (httpx.RemoteProtocolError, httpx.ConnectError, httpx.ReadError):
                # A kept-alive connection the gateway closed as we reused it (uvicorn closes idle
                # ones after 5 s): the request never reached it. Every request here may be sent
                # again (reads, and creates under their request id).
                if attempt == TRANSPORT_ATTEMPTS - 1:
                    raise
        if tenant is not None:
            code = None
            if response.status_code >= 400 and response.headers.get("content-type", "").startswith(
                "application/json"
            ):
                code = response.json().get("error", {}).get("code")
            self.answers.append(
                Answer(tenant.tenant_id, gateway, path, sent, time.monotonic(), response.status_code, code)
            )
        return response

    async def new_tenant(self, credits: int) -> Tenant:
        """A tenant with an API key and `credits` granted (operator calls, retried when unavailable)."""
        created = await self._admin(
            "POST", "/api/admin/tenants", json={"name": f"host-{uuid.uuid4().hex[:6]}"}
        )
        tenant_id = created["tenant_id"]
        key = await self._admin("POST", f"/api/admin/tenants/{tenant_id}/api-keys")
        await self._admin(
            "POST",
            f"/api/admin/tenants/{tenant_id}/credits",
            json={"credits": credits, "reference": f"grant-{uuid.uuid4()}"},
        )
        return Tenant(tenant_id, key["api_key"])

    async def _admin(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        # Operator writes here are keyed (the top-up by its reference); a tenant or key created
        # twice after a lost answer would only leave an unused one behind.
        for _ in range(50):
            response = await self.send(None, method, path, **kwargs)
            if response.status_code not in RETRY_STATUSES:
                assert response.status_code in (200, 201), response.text
                body: dict[str, Any] = response.json()
                return body
            await asyncio.sleep(0.2)
        raise AssertionError(f"{method} {path} kept failing: {response.text}")

    async def create_batch(self, tenant: Tenant, items: list[dict[str, str]]) -> str:
        """Creates a batch, sending it again with the same request id while the answer says to."""
        request_id = f"create-{uuid.uuid4()}"
        deadline = time.monotonic() + 60
        while True:
            response = await self.send(
                tenant,
                "POST",
                "/api/enterprise/video-batch",
                json={"items": items},
                headers={"X-Request-ID": request_id},
            )
            if response.status_code == 202:
                batch_id: str = response.json()["batch_id"]
                return batch_id
            assert response.status_code in RETRY_STATUSES, response.text
            assert time.monotonic() < deadline, f"create kept failing: {response.text}"
            await asyncio.sleep(float(response.headers.get("Retry-After", "0.2")) / 4)

    async def batch(self, tenant: Tenant, batch_id: str) -> dict[str, Any] | None:
        """The batch as the API shows it; None when the answer says to try again."""
        response = await self.send(tenant, "GET", f"/api/enterprise/video-batch/{batch_id}")
        if response.status_code in RETRY_STATUSES:
            return None
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_until_settled(
        self, tenant: Tenant, batch_id: str, timeout: float, every: float = 1.5
    ) -> dict[str, Any]:
        """Polls (alternating gateways, and listing the tenant's webhook endpoints as a console
        would) until the batch is settled."""
        deadline = time.monotonic() + timeout
        while True:
            batch = await self.batch(tenant, batch_id)
            listed = await self.send(tenant, "GET", "/api/enterprise/webhook-endpoints")
            assert listed.status_code in (200, *RETRY_STATUSES), listed.text
            if batch is not None and batch["settlement_status"] != "pending":
                return batch
            assert time.monotonic() < deadline, f"batch {batch_id} not settled in {timeout} s: {batch}"
            await asyncio.sleep(every)

    async def hammer(self, tenant: Tenant, requests: int, concurrency: int) -> tuple[float, float]:
        """Sends `requests` reads of the tenant's credits as fast as `concurrency` allows, over every
        gateway; returns the window (first sent, last received)."""
        remaining = itertools.count()
        started = time.monotonic()

        async def sender() -> None:
            while next(remaining) < requests:
                await self.send(tenant, "GET", "/api/enterprise/credits")

        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return started, time.monotonic()


@dataclass(frozen=True)
class LimitCheck:
    """A tenant's requests within a window against its rate limit across every gateway."""

    admitted: int
    refused: int
    unavailable: int
    seconds: float
    allowed: float

    @property
    def held(self) -> bool:
        return self.admitted <= self.allowed


def rate_limit_check(
    answers: list[Answer], tenant_id: str, window: tuple[float, float], rate: float, burst: int
) -> LimitCheck:
    """Counts the tenant's requests sent and answered within `window`: admitted (any answer but
    the rate limit's 429 or a 503), refused (429 `rate_limited`) and unavailable (503). A token
    bucket admits at most `burst + rate x seconds` of them, whichever gateway each reached.

    Only requests wholly inside the window count: each took its token (or was refused) between
    its sending and its answer. The window must start with no token of the tenant leased to any
    gateway (a lease lasts 0.25 s, ADR-128), so idle the tenant a moment before it.
    """
    start, end = window
    inside = [a for a in answers if a.tenant == tenant_id and a.sent >= start and a.received <= end]
    refused = sum(1 for a in inside if a.status == 429 and a.code == "rate_limited")
    unavailable = sum(1 for a in inside if a.status == 503)
    seconds = end - start
    return LimitCheck(
        len(inside) - refused - unavailable, refused, unavailable, seconds, burst + rate * seconds
    )
