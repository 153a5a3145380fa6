"""A provider down for seconds (every call answers 503): the model's circuit breaker (ADR-113)
opens, its tasks wait without spending attempts, a probe closes it once the provider is back,
and every task succeeds; an outage past the limit fails the waiting tasks, refunded.

Real processes, PostgreSQL and RabbitMQ; a fake Replicate that goes down on command.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fakes.provider_state import FakeProvider, Scenario
from tests.invariants import wait_for_all_settled
from tests.provider_jobs_stack import MODEL, failures, fake_replicate, provider_overrides
from tests.rest_api import Api
from tests.stack import Stack, fresh_stack

TASKS = 20


@pytest.fixture(scope="module")
def replicate_fake() -> Iterator[FakeProvider]:
    """One fake Replicate for the module."""
    with fake_replicate() as fake:
        yield fake


def _overrides(fake: FakeProvider, outage_limit: float) -> dict[str, str]:
    return {
        **provider_overrides(fake, lease_seconds=4, poll_seconds=0.2),
        "REELBATCH_BREAKER_FAILURE_THRESHOLD": "3",
        "REELBATCH_BREAKER_OPEN_SECONDS": "1",
        "REELBATCH_BREAKER_OUTAGE_LIMIT_SECONDS": str(outage_limit),
        "REELBATCH_RETRY_BASE_SECONDS": "0.2",
        "REELBATCH_RETRY_MAX_SECONDS": "0.5",
        "REELBATCH_PROVIDER_HTTP_TIMEOUT_SECONDS": "2",
    }


def _breaker(stack: Stack) -> dict[str, Any]:
    with psycopg.connect(stack.database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        row = conn.execute(
            "SELECT state, opens, last_opened_at, last_closed_at FROM batch.model_breakers WHERE model = %s",
            (MODEL,),
        ).fetchone()
    assert row is not None, "the breaker never counted a failure"
    return dict(zip(("state", "opens", "opened_at", "closed_at"), row, strict=True))


def test_an_outage_of_seconds_opens_the_breaker_and_every_task_still_succeeds(
    replicate_fake: FakeProvider, tmp_path: Path
) -> None:
    replicate_fake.reset()
    replicate_fake.default = Scenario(render_seconds=0.2)
    with fresh_stack(tmp_path, _overrides(replicate_fake, outage_limit=120)) as stack:
        api = Api(stack.base_url)
        customer = api.new_customer(credits=20 * TASKS)
        started = time.monotonic()
        replicate_fake.go_down(4)
        created = api.create_batch(customer, [{"prompt": f"take {n}", "model": MODEL} for n in range(TASKS)])
        assert created.status_code == 202, created.text
        batch = api.wait_until_settled(customer, created.json()["batch_id"], timeout=90)
        elapsed = time.monotonic() - started
        assert (batch["status"], batch["success_count"]) == ("completed", TASKS), failures(stack)
        tasks = api.tasks(customer, created.json()["batch_id"])
        breaker = _breaker(stack)
        # Opened during the outage, closed by a probe once the provider answered again.
        assert breaker["state"] == "closed"
        assert breaker["opens"] >= 1
        assert breaker["closed_at"] > breaker["opened_at"]
        # Exactly one job made per task: the failed create calls made none.
        assert replicate_fake.creates_per_prompt() == {f"take {n}": 1 for n in range(TASKS)}
        attempts = sorted(task["attempts"] for task in tasks)
        print(
            f"\noutage 4s: batch done in {elapsed:.1f}s; breaker opens={breaker['opens']} "
            f"open {breaker['opened_at']:%H:%M:%S.%f} -> closed {breaker['closed_at']:%H:%M:%S.%f}; "
            f"attempts per task {attempts} (sum {sum(attempts)}); "
            f"create calls {len(replicate_fake.requests_to('/predictions'))}"
        )
        wait_for_all_settled(stack.database_url)


def test_an_outage_past_its_limit_fails_the_waiting_tasks_as_provider_error_refunded(
    replicate_fake: FakeProvider, tmp_path: Path
) -> None:
    replicate_fake.reset()
    replicate_fake.go_down(600)
    with fresh_stack(tmp_path, _overrides(replicate_fake, outage_limit=3)) as stack:
        api = Api(stack.base_url)
        customer = api.new_customer(credits=20 * TASKS)
        created = api.create_batch(customer, [{"prompt": f"take {n}", "model": MODEL} for n in range(TASKS)])
        assert created.status_code == 202, created.text
        batch = api.wait_until_settled(customer, created.json()["batch_id"], timeout=90)
        assert (batch["status"], batch["success_count"]) == ("failed", 0)
        tasks = api.tasks(customer, created.json()["batch_id"])
        assert {task["failure_type"] for task in tasks} == {"provider_error"}
        assert any("circuit breaker open" in (task["error_message"] or "") for task in tasks)
        assert _breaker(stack)["state"] != "closed"
        # The operator's overview (gateway -> batch gRPC) shows the model degraded.
        overview = api.http.get("/admin/batches", headers=api.admin)
        assert overview.status_code == 200
        assert f'<li data-model="{MODEL}"><strong>{MODEL}</strong>: degraded' in overview.text
        wait_for_all_settled(stack.database_url)
        # Every task refunded: the customer has all their credits back.
        assert api.credits(customer) == {
            "available_credits": 20 * TASKS,
            "held_credits": 0,
            "debt_credits": 0,
        }
    replicate_fake.reset()
