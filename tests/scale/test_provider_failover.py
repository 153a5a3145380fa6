"""Failover between providers (issue 26 item 6, ADR-149): `veo-3` is sold through the Gemini API
and, as its fallback route, through fal. The Gemini API fails every call; every task succeeds on
fal, the customer pays the frozen price, and the books show each route with its jobs and cost.

Real processes, PostgreSQL and RabbitMQ; two fake providers following their public APIs. About
30 s (a stack to start), so `make test-scale` runs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.provider_state import FakeProvider
from tests.invariants import check_invariants, wait_for_all_settled
from tests.provider_jobs_stack import failures, reconciliation_findings
from tests.provider_routes_stack import (
    FAL_JOB_COST,
    MODEL,
    PRICE,
    fake_fal,
    fake_veo,
    jobs_by_route,
    route_overrides,
)
from tests.rest_api import Api
from tests.stack import fresh_stack

TASKS = 20


@pytest.fixture(scope="module")
def providers() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    """The model's own route (a fake Gemini API) and its fallback (a fake fal)."""
    with fake_veo() as gemini, fake_fal() as fal_queue:
        yield gemini, fal_queue


def test_with_the_first_route_failing_every_call_every_task_succeeds_on_the_second_at_its_frozen_price(
    providers: tuple[FakeProvider, FakeProvider], tmp_path: Path
) -> None:
    gemini, fal_queue = providers
    gemini.reset()
    fal_queue.reset()
    gemini.go_down(3600)  # every call of the Gemini API answers 503
    with fresh_stack(tmp_path, route_overrides(gemini, fal_queue)) as stack:
        api = Api(stack.base_url)
        customer = api.new_customer(credits=PRICE * TASKS)
        created = api.create_batch(customer, [{"prompt": f"take {n}", "model": MODEL} for n in range(TASKS)])
        assert created.status_code == 202, created.text
        assert created.json()["required_credits"] == PRICE * TASKS
        batch = api.wait_until_settled(customer, created.json()["batch_id"], timeout=90)

        assert (batch["status"], batch["success_count"], batch["pending_count"]) == ("completed", TASKS, 0), (
            failures(stack)
        )
        # Charged the frozen price, whichever route made the videos.
        assert (batch["frozen_credits"], batch["credits_spent"], batch["refunded_credits"]) == (
            PRICE * TASKS,
            PRICE * TASKS,
            0,
        )
        # The fallback made exactly one job per task (its own count); the first made none.
        assert fal_queue.creates_per_prompt() == {f"take {n}": 1 for n in range(TASKS)}
        assert gemini.jobs == {}
        assert len(gemini.requests_to(":predictLongRunning")) >= 1

        # The books: the first route's refused create calls cost nothing, the second's jobs each
        # cost its own price list entry.
        books = jobs_by_route(stack)
        assert books[("fal", "succeeded")] == (TASKS, TASKS * FAL_JOB_COST)
        assert {status for provider, status in books if provider == "veo"} == {"refused"}
        assert sum(cost for (provider, _), (_, cost) in books.items() if provider == "veo") == 0

        routes = api.http.get("/api/admin/provider-routes", headers=api.admin)
        assert routes.status_code == 200, routes.text
        by_provider = {route["provider"]: route for route in routes.json()["items"]}
        assert (by_provider["fal"]["video_share"], by_provider["fal"]["cost_usd_micros"]) == (
            1.0,
            TASKS * FAL_JOB_COST,
        )
        assert (by_provider["veo"]["video_share"], by_provider["veo"]["succeeded_jobs"]) == (0.0, 0)
        assert by_provider["veo"]["failed_jobs"] == books[("veo", "refused")][0]
        page = api.http.get("/admin/batches", headers=api.admin)
        assert f'<tr data-route="{MODEL}@fal">' in page.text

        assert reconciliation_findings(api) == []
        wait_for_all_settled(stack.database_url)
        check_invariants(stack.database_url).assert_clean()
