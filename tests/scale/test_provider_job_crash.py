"""Scale chaos: a worker SIGKILLed while 200 tasks render at a slow (fake) provider; the next worker
resumes the recorded jobs and the provider is paid exactly once per task (issue 26, ADR-110).

About 90 s of wall time on the 2-core machine (200 jobs polled by one worker, a lease to wait out),
so `make test-scale` runs it, not `make test`; the in-doubt window is tested beside it
(test_provider_job_in_doubt.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.provider_state import FakeProvider, Scenario
from tests.invariants import wait_for_all_settled
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
from tests.stack import fresh_stack

TASKS = 200
RENDER_SECONDS = 20.0


@pytest.fixture(scope="module")
def slow_replicate() -> Iterator[FakeProvider]:
    """One fake Replicate for the module."""
    with fake_replicate() as fake:
        yield fake


def test_a_worker_killed_while_200_tasks_render_resumes_every_job_and_pays_each_once(
    slow_replicate: FakeProvider, tmp_path: Path
) -> None:
    slow_replicate.reset()
    slow_replicate.default = Scenario(render_seconds=RENDER_SECONDS)
    with fresh_stack(tmp_path, provider_overrides(slow_replicate)) as stack:
        api = Api(stack.base_url)
        customer = api.new_customer(credits=TASKS * 20)
        created = api.create_batch(customer, [{"prompt": f"take {i}", "model": MODEL} for i in range(TASKS)])
        assert created.status_code == 202, created.text
        batch_id = created.json()["batch_id"]
        # Every job created and its id recorded, none finished: all 200 mid-render.
        wait_for(lambda: recorded_jobs(stack) == TASKS, "every job recorded", timeout=RENDER_SECONDS)
        assert len(slow_replicate.jobs) == TASKS
        assert not any(job.finished for job in list(slow_replicate.jobs.values()))

        stack.kill("worker-0")
        stack.start("worker-0")

        batch = api.wait_until_settled(customer, batch_id, timeout=90)
        assert (batch["status"], batch["success_count"], batch["pending_count"]) == (
            "completed",
            TASKS,
            0,
        ), (failures(stack), stack.log("worker-0"))
        creates = slow_replicate.creates_per_prompt()
        assert sum(creates.values()) / TASKS == 1.00
        assert set(creates.values()) == {1}
        assert reconciliation_findings(api) == []
        wait_for_all_settled(stack.database_url)
