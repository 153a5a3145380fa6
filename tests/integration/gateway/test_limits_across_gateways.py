"""Two gateway processes in front of one billing and one batch service (real processes on
localhost ports, real PostgreSQL and RabbitMQ): one rate limit per key, one open-batch limit per
tenant, one failed sign-in limit per address, and a revoked key refused by both gateways within
200 ms (issue 27, ADR-128..130).

No worker runs, so every accepted batch stays open; the batches are cancelled at the end and the
money invariants checked once they settle.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.invariants import wait_for_all_settled
from tests.rest_api import Api, Customer
from tests.stack import Stack, fresh_stack, start_second_gateway

RATE_PER_SECOND = 5.0
BURST = 10
MAX_OPEN_BATCHES = 3
REVOCATION_BOUND_SECONDS = 0.2
# Failed operator sign-ins per address: 4 at once, then one per 2 s.
MAX_ADMIN_FAILURES = 4
ADMIN_FAILURE_WINDOW_SECONDS = 8


@dataclass
class TwoGateways:
    """The stack's gateway and a second one on its own port, sharing every backend."""

    stack: Stack
    first: Api
    second: Api

    def both(self) -> tuple[Api, Api]:
        return self.first, self.second


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoGateways]:
    overrides = {
        "REELBATCH_RATE_LIMIT_PER_SECOND": str(RATE_PER_SECOND),
        "REELBATCH_RATE_LIMIT_BURST": str(BURST),
        "REELBATCH_MAX_OPEN_BATCHES": str(MAX_OPEN_BATCHES),
        "REELBATCH_ADMIN_AUTH_MAX_FAILURES": str(MAX_ADMIN_FAILURES),
        "REELBATCH_ADMIN_AUTH_FAILURE_WINDOW_SECONDS": str(ADMIN_FAILURE_WINDOW_SECONDS),
    }
    workdir = Path(tmp_path_factory.mktemp("two-gateways"))
    with fresh_stack(workdir, overrides, workers=0) as stack:
        running = TwoGateways(stack, Api(stack.base_url), Api(start_second_gateway(stack)))
        try:
            yield running
            wait_for_all_settled(stack.database_url)
        finally:
            running.first.http.close()
            running.second.http.close()


def _admit_all(api: Api, customer: Customer, count: int) -> list[int]:
    return [
        api.http.get("/api/enterprise/credits", headers=customer.headers).status_code for _ in range(count)
    ]


def test_one_rate_limit_holds_across_both_gateways(gateways: TwoGateways) -> None:
    customer = gateways.first.new_customer(0)
    began = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        answers = pool.map(lambda api: _admit_all(api, customer, 40), [*gateways.both(), *gateways.both()])
        statuses = [status for answer in answers for status in answer]
    elapsed = time.monotonic() - began

    admitted = statuses.count(200)
    assert set(statuses) <= {200, 429}
    # Every admitted request spent a token of the one shared bucket.
    assert admitted <= BURST + RATE_PER_SECOND * elapsed
    # Counted per process, two gateways would have let twice the burst through at once.
    assert admitted >= BURST
    assert statuses.count(429) > 0


def test_the_ratelimit_headers_count_both_gateways(gateways: TwoGateways) -> None:
    customer = gateways.first.new_customer(0)
    first = gateways.first.http.get("/api/enterprise/credits", headers=customer.headers)
    second = gateways.second.http.get("/api/enterprise/credits", headers=customer.headers)

    assert int(first.headers["RateLimit-Limit"]) == BURST
    # The second gateway's answer counts the first gateway's request too.
    assert int(second.headers["RateLimit-Remaining"]) <= BURST - 2


def test_one_open_batch_limit_holds_across_both_gateways(gateways: TwoGateways) -> None:
    customer = gateways.first.new_customer(1_000)
    item = {"prompt": "A cat playing piano", "model": "sora-2"}
    answers = [
        api.create_batch(customer, [item], request_id=f"open-{uuid.uuid4()}")
        for api in [*gateways.both()] * 3
    ]
    statuses = [answer.status_code for answer in answers]

    assert statuses.count(202) == MAX_OPEN_BATCHES
    assert statuses[MAX_OPEN_BATCHES:] == [429] * (len(statuses) - MAX_OPEN_BATCHES)
    # Cancelled, the batches close: each gateway has room again (and the money settles).
    for answer in answers[:MAX_OPEN_BATCHES]:
        cancel = f"/api/enterprise/video-batch/{answer.json()['batch_id']}/cancel"
        assert gateways.second.http.post(cancel, headers=customer.headers).status_code == 200


def test_a_revoked_key_is_refused_by_both_gateways_within_200_ms(gateways: TwoGateways) -> None:
    api = gateways.first
    tenant = api.http.post("/api/admin/tenants", json={"name": "revoked-studio"}, headers=api.admin).json()
    issued = api.http.post(f"/api/admin/tenants/{tenant['tenant_id']}/api-keys", headers=api.admin).json()
    headers = {"X-API-Key": issued["api_key"]}
    # Both gateways have just resolved the key (and cache it for 2 s).
    for gateway in gateways.both():
        assert gateway.http.get("/api/enterprise/credits", headers=headers).status_code == 200

    revoked = gateways.second.http.delete(f"/api/admin/api-keys/{issued['key_id']}", headers=api.admin)
    assert revoked.status_code == 200, revoked.text
    committed = time.monotonic()
    refused_after = {}
    for name, gateway in zip(("first", "second"), gateways.both(), strict=True):
        while gateway.http.get("/api/enterprise/credits", headers=headers).status_code != 401:
            assert time.monotonic() - committed < 2, f"the {name} gateway still accepts the revoked key"
            time.sleep(0.005)
        refused_after[name] = time.monotonic() - committed

    assert max(refused_after.values()) < REVOCATION_BOUND_SECONDS, refused_after


def test_failed_sign_ins_are_counted_across_both_gateways(gateways: TwoGateways) -> None:
    wrong = {"Authorization": "Bearer not-the-admin-token"}
    attempts = [*gateways.both()] * (MAX_ADMIN_FAILURES // 2)
    failed = [api.http.get("/api/admin/tenants", headers=wrong).status_code for api in attempts]
    # Blocked on both gateways, even with the right token: the address spent its attempts on both.
    blocked = [api.http.get("/api/admin/tenants", headers=api.admin) for api in gateways.both()]

    assert failed == [401] * MAX_ADMIN_FAILURES
    assert [answer.status_code for answer in blocked] == [429, 429]
    assert all(int(answer.headers["Retry-After"]) >= 1 for answer in blocked)
    # The bucket refills: the address may sign in again (and the other tests' admin calls work).
    deadline = time.monotonic() + ADMIN_FAILURE_WINDOW_SECONDS
    while gateways.first.http.get("/api/admin/tenants", headers=gateways.first.admin).status_code == 429:
        assert time.monotonic() < deadline
        time.sleep(0.1)
