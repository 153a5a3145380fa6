"""A whole stack whose only model renders at a fake Replicate, for the crash tests of durable
provider jobs (issue 26, ADR-110): its settings, the fake, and reads of the journal.

The fake counts the jobs its create call made: that count, not ours, proves how often we paid.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg

from tests.fakes import replicate
from tests.fakes.provider_state import FakeProvider
from tests.fakes.server import serving
from tests.rest_api import Api
from tests.stack_protocol import RunningStack

MODEL = "veo-3"
# What one job costs us at the fake provider (price list), recorded with each job.
JOB_COST_USD_MICROS = 84_000


@contextmanager
def fake_replicate() -> Iterator[FakeProvider]:
    """A fake Replicate served until the block ends (render times set per test with
    `Scenario.render_seconds`)."""
    state = replicate.replicate_state()
    with serving(replicate.replicate_app(state), state) as fake:
        yield fake


def provider_overrides(
    fake: FakeProvider, *, lease_seconds: float = 8.0, poll_seconds: float = 2.0
) -> dict[str, str]:
    """The stack's settings: one model priced at the fake Replicate, short leases and polls (a
    lease long enough for one worker polling 200 jobs on a loaded 2-core machine)."""
    pricing = {
        MODEL: {
            "provider": "replicate",
            "provider_model": "google/veo-3",
            "credits_per_video": 20,
            "provider_cost_usd_micros": JOB_COST_USD_MICROS,
            "max_attempts": 3,
        }
    }
    return {
        "REELBATCH_PRICING": json.dumps(pricing),
        "REELBATCH_REPLICATE_API_TOKEN": replicate.API_TOKEN,
        "REELBATCH_REPLICATE_BASE_URL": fake.api_url,
        "REELBATCH_PROVIDER_POLL_SECONDS": str(poll_seconds),
        "REELBATCH_PROVIDER_POLL_MAX_SECONDS": str(poll_seconds),
        "REELBATCH_PROVIDER_TIMEOUT_SECONDS": "60",
        "REELBATCH_TASK_LEASE_SECONDS": str(lease_seconds),
        "REELBATCH_WORKER_CONCURRENCY": "256",
    }


def _dsn(stack: RunningStack) -> str:
    return stack.database_url.replace("postgresql+psycopg://", "postgresql://")


def recorded_jobs(stack: RunningStack) -> int:
    """Jobs whose provider id is recorded and that are still running."""
    with psycopg.connect(_dsn(stack)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM batch.provider_jobs "
            "WHERE status = 'running' AND provider_job_id IS NOT NULL"
        ).fetchone()
    return int(row[0]) if row else 0


def job_costs(stack: RunningStack) -> list[tuple[str, int | None]]:
    """(status, cost) of every recorded provider job, by attempt."""
    with psycopg.connect(_dsn(stack)) as conn:
        rows = conn.execute(
            "SELECT status, cost_usd_micros FROM batch.provider_jobs ORDER BY attempt, submitted_at"
        ).fetchall()
    return [(str(status), cost) for status, cost in rows]


def failures(stack: RunningStack) -> list[tuple[str, str, int]]:
    """What the failed tasks said (for an assertion's message)."""
    with psycopg.connect(_dsn(stack)) as conn:
        rows = conn.execute(
            "SELECT failure_type, error_message, count(*) FROM batch.tasks WHERE status = 'failed' "
            "GROUP BY 1, 2"
        ).fetchall()
    return [(str(kind), str(message), int(count)) for kind, message, count in rows]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Polls `condition` until it holds; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


def reconciliation_findings(api: Api) -> list[dict[str, str]]:
    """The operator's reconciliation (`/api/admin/reconciliation`): every discrepancy, provider
    job findings (I9) among them."""
    answer = api.http.get("/api/admin/reconciliation", headers=api.admin)
    assert answer.status_code == 200, answer.text
    findings: list[dict[str, str]] = answer.json()["discrepancies"]
    return findings
