"""Failover between providers (issue 26 item 6, ADR-149): `veo-3` is sold through the Gemini API
and, as its fallback route, through fal. The Gemini API fails every call; every task succeeds on
fal, the customer pays the frozen price, and the books show each route with its jobs and cost.
A route whose account is out of quota (OpenAI's `insufficient_quota`) sends its tasks on at once.

Real processes, PostgreSQL and RabbitMQ; two fake providers following their public APIs. About
30 s (a stack to start), so `make test-scale` runs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.provider_state import FakeProvider, Scenario
from tests.invariants import check_invariants, wait_for_all_settled
from tests.provider_jobs_stack import failures, reconciliation_findings
from tests.provider_routes_stack import (
    FAL_JOB_COST,
    MODEL,
    PRICE,
    fake_fal,
    fake_openai,
    fake_veo,
    jobs_by_route,
    quota_route_overrides,
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
        print(f"books by (route, status): {books}")
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


def test_a_route_out_of_quota_sends_every_task_to_the_next_route_without_spending_an_attempt(
    providers: tuple[FakeProvider, FakeProvider], tmp_path: Path
) -> None:
    _, fal_queue = providers
    fal_queue.reset()
    with fake_openai() as openai, fresh_stack(tmp_path, quota_route_overrides(openai, fal_queue)) as stack:
        openai.default = Scenario(out_of_quota=True)
        api = Api(stack.base_url)
        customer = api.new_customer(credits=10 * TASKS)
        created = api.create_batch(
            customer, [{"prompt": f"shot {n}", "model": "sora-2"} for n in range(TASKS)]
        )
        assert created.status_code == 202, created.text
        batch = api.wait_until_settled(customer, created.json()["batch_id"], timeout=90)
        assert (batch["status"], batch["success_count"], batch["credits_spent"]) == (
            "completed",
            TASKS,
            10 * TASKS,
        ), failures(stack)
        assert fal_queue.creates_per_prompt() == {f"shot {n}": 1 for n in range(TASKS)}
        # OpenAI refused the first call(s) for quota; the worker then skipped it (its cooldown)
        # and no task was charged an attempt for the refusal beyond the one that met it.
        refused = len(openai.requests_to("/v1/videos"))
        assert 1 <= refused <= TASKS
        attempts = [task["attempts"] for task in api.tasks(customer, created.json()["batch_id"])]
        assert max(attempts) <= 2
        print(f"openai calls refused for quota: {refused}; attempts per task: {sorted(set(attempts))}")
        wait_for_all_settled(stack.database_url)
        check_invariants(stack.database_url).assert_clean()
