"""The whole embedded system (`reelbatch run`, its PostgreSQL included) SIGKILLed while every task
renders at a slow (fake) provider, then started again on the same data folder: every task ends,
the provider was asked for exactly one job per task (its own count), I1-I9 hold and the audit
finds no double provider job (issue 26, ADR-110).

About a minute (an embedded PostgreSQL started twice, renders to wait out), so `make test-scale`
runs it; `tests/chaos/test_embedded_crash.py` is the simulated-provider version in `make test`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.embedded_stack import EmbeddedStack
from tests.fakes.provider_state import FakeProvider, Scenario
from tests.invariants import check_invariants, wait_for_all_settled
from tests.provider_jobs_stack import (
    MODEL,
    failures,
    fake_replicate,
    provider_overrides,
    reconciliation_findings,
    recorded_jobs,
    wait_for,
)
from tests.rest_api import Api

TASKS = 40
RENDER_SECONDS = 15.0


@pytest.fixture(scope="module")
def slow_replicate() -> Iterator[FakeProvider]:
    """A fake Replicate outliving every restart of the system (it runs in the test process)."""
    with fake_replicate() as fake:
        yield fake


def test_the_embedded_system_killed_mid_render_pays_each_job_once_after_a_restart(
    slow_replicate: FakeProvider, tmp_path: Path
) -> None:
    slow_replicate.reset()
    slow_replicate.default = Scenario(render_seconds=RENDER_SECONDS)
    stack = EmbeddedStack(
        tmp_path, overrides=provider_overrides(slow_replicate, lease_seconds=4, poll_seconds=1)
    )
    try:
        stack.start_all()
        api = Api(stack.base_url)
        customer = api.new_customer(credits=TASKS * 20)
        request_id = f"embedded-crash-{uuid.uuid4().hex[:8]}"
        items = [{"prompt": f"take {n}", "model": MODEL} for n in range(TASKS)]
        created = api.create_batch(customer, items, request_id=request_id)
        assert created.status_code == 202, created.text
        batch_id = created.json()["batch_id"]
        # Every job created and its id recorded, none finished: all mid-render.
        wait_for(lambda: recorded_jobs(stack) == TASKS, "every job recorded", timeout=RENDER_SECONDS)
        assert len(slow_replicate.jobs) == TASKS
        assert not any(job.finished for job in list(slow_replicate.jobs.values()))

        # The whole machine goes down: the process and its database, with no cleanup at all.
        stack.kill()
        stack.kill_postgres()
        api.http.close()

        stack.start()
        stack.wait_ready()
        api = Api(stack.base_url)
        batch = api.wait_until_settled(customer, batch_id, timeout=120)
        assert (batch["status"], batch["success_count"], batch["pending_count"]) == ("completed", TASKS, 0), (
            failures(stack),
            stack.log(),
        )
        creates = slow_replicate.creates_per_prompt()
        print(f"provider create calls per task: {sum(creates.values()) / TASKS:.2f}")
        assert sum(creates.values()) / TASKS == 1.00
        assert set(creates.values()) == {1}
        assert reconciliation_findings(api) == []

        # I5: the same request again is the same batch, charged once.
        again = api.create_batch(customer, items, request_id=request_id)
        assert again.json()["batch_id"] == batch_id
        assert api.credits(customer) == {"available_credits": 0, "held_credits": 0, "debt_credits": 0}

        wait_for_all_settled(stack.database_url)
        check_invariants(stack.database_url).assert_clean()
        api.http.close()
    finally:
        codes = stack.stop_all()
    assert codes == {"reelbatch": 0}, stack.log()
