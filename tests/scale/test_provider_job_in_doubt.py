"""Chaos: a worker killed by its fault point between a provider's create call and the write of its
answer; the job made there is in doubt, submitted again, and reported by the audit (ADR-110).

The 200-task crash test (exactly one create per task) is tests/scale/test_provider_job_crash.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.fault_points import FAULT_POINT_VARIABLE
from services.batch.adapters.providers._lifecycle import FAULT_AFTER_CREATE
from services.batch.domain.provider_jobs import IN_DOUBT_JOB
from tests.fakes.provider_state import FakeProvider, Scenario
from tests.invariants import wait_for_all_settled
from tests.provider_jobs_stack import (
    JOB_COST_USD_MICROS,
    MODEL,
    failures,
    fake_replicate,
    job_costs,
    provider_overrides,
    reconciliation_findings,
)
from tests.rest_api import Api
from tests.stack import fresh_stack


@pytest.fixture(scope="module")
def slow_replicate() -> Iterator[FakeProvider]:
    """One fake Replicate for the module."""
    with fake_replicate() as fake:
        yield fake


def test_a_crash_between_the_create_call_and_its_record_leaves_a_job_in_doubt_that_the_audit_reports(
    slow_replicate: FakeProvider, tmp_path: Path
) -> None:
    slow_replicate.reset()
    slow_replicate.default = Scenario(render_seconds=0.5)
    with fresh_stack(
        tmp_path, provider_overrides(slow_replicate, lease_seconds=2, poll_seconds=0.3), workers=0
    ) as stack:
        api = Api(stack.base_url)
        customer = api.new_customer(credits=100)
        created = api.create_batch(customer, [{"prompt": "the only take", "model": MODEL}])
        assert created.status_code == 202, created.text
        batch_id = created.json()["batch_id"]

        stack.env[FAULT_POINT_VARIABLE] = FAULT_AFTER_CREATE
        stack.start("worker-0")
        del stack.env[FAULT_POINT_VARIABLE]
        stack.processes["worker-0"].wait(30)
        # Killed by its own fault point right after the provider made the job.
        assert stack.processes["worker-0"].returncode == -9
        assert slow_replicate.creates_per_prompt() == {"the only take": 1}

        stack.start("worker-0")
        batch = api.wait_until_settled(customer, batch_id, timeout=60)
        assert (batch["status"], batch["success_count"]) == ("completed", 1), (
            failures(stack),
            stack.log("worker-0"),
        )
        # No idempotency key at Replicate: the job in doubt could not be found again, so the
        # next attempt made a second one, and the audit says so.
        assert slow_replicate.creates_per_prompt() == {"the only take": 2}
        findings = reconciliation_findings(api)
        assert [(found["invariant"], found["subject"].split(" attempt ")[1]) for found in findings] == [
            ("I9", "1")
        ]
        assert findings[0]["message"].startswith(IN_DOUBT_JOB)
        # The job we know of carries its cost; the one in doubt has no id and no recorded cost.
        assert job_costs(stack) == [("in_doubt", None), ("succeeded", JOB_COST_USD_MICROS)]
        wait_for_all_settled(stack.database_url)
