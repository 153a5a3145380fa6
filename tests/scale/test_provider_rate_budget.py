"""A route's requests-per-minute budget shared by every worker (issue 26 item 4, ADR-148): a burst
of tasks at a model whose provider allows 30 create calls a minute never meets the provider's 429.

The fake Gemini API enforces the limit itself (a 31st create call within 60 s is answered 429, as
the Gemini API does past a project's RPM) and keeps the time of every create call: its busiest
minute must hold at most 30, it must never have refused one, and the tasks beyond the first 30
waited (no attempt spent) for the next minute. Two workers draw from the one budget. About 90 s,
so `make test-scale` runs it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.provider_state import FakeProvider
from tests.invariants import check_invariants, wait_for_all_settled
from tests.provider_jobs_stack import failures
from tests.provider_routes_stack import MODEL, PRICE, fake_veo, route_overrides
from tests.rest_api import Api
from tests.stack import fresh_stack

BUDGET = 30
TASKS = 45


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeProvider]:
    with fake_veo() as fake:
        yield fake


def test_a_burst_beyond_the_budget_waits_for_the_next_minute_and_never_meets_a_429(
    gemini: FakeProvider, tmp_path: Path
) -> None:
    gemini.reset()
    gemini.create_limit = (BUDGET, 60.0)
    overrides = route_overrides(gemini, requests_per_minute=BUDGET)
    with fresh_stack(tmp_path, overrides, workers=2) as stack:
        api = Api(stack.base_url)
        customer = api.new_customer(credits=PRICE * TASKS)
        started = time.monotonic()
        created = api.create_batch(customer, [{"prompt": f"shot {n}", "model": MODEL} for n in range(TASKS)])
        assert created.status_code == 202, created.text
        batch = api.wait_until_settled(customer, created.json()["batch_id"], timeout=150)
        took = time.monotonic() - started

        assert (batch["status"], batch["success_count"]) == ("completed", TASKS), failures(stack)
        assert gemini.limit_refusals == 0
        assert gemini.busiest_window(60.0) == BUDGET
        assert len(gemini.create_times) == TASKS
        # The tasks past the budget waited for the next window (at least 61 s: a minute and the
        # grant margin), without spending an attempt on it.
        assert took > 61
        assert {task["attempts"] for task in api.tasks(customer, created.json()["batch_id"])} == {1}
        print(f"{TASKS} tasks at {BUDGET}/min: {took:.1f}s, busiest minute {gemini.busiest_window(60.0)}")
        wait_for_all_settled(stack.database_url)
        check_invariants(stack.database_url).assert_clean()
