"""Provider spend in the books (issue 26 item 2, ADR-144), on a real PostgreSQL: the outcome write
sums each task's billed provider jobs from the journal into its task-outcome event, the operator's
page lists the jobs with what each is billed, and the audit flags an attempt billed twice.

Jobs are journaled through the worker's own journal (`ProviderJobs.journal`), as an adapter does.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from reelbatch.proto.events.v1 import events_pb2

from libs.db import Database
from services.batch.adapters.sql.queueing import DispatchWindows
from services.batch.adapters.sql.store import BatchStore
from services.batch.domain.batch import BatchId, TaskStatus
from services.batch.domain.execution import ClaimedTask, TaskOutcome
from services.batch.domain.provider import FailureType, ProviderFailure
from services.batch.domain.provider_jobs import DOUBLE_JOB, ProviderJobStatus
from services.batch.use_cases.outcomes import write_outcomes
from tests.integration.batch.test_worker_transactions import _model, _queued_batch

JOB = 84_000
FAILED = ProviderFailure(FailureType.PROVIDER_ERROR, "the render crashed")


@pytest.fixture
async def repository(batch_database_url: str) -> AsyncIterator[BatchStore]:
    database = Database(batch_database_url, pool_size=3)
    try:
        yield BatchStore.open(
            database, DispatchWindows(chunk_size=100, batch_window_chunks=8, tenant_window_chunks=32)
        )
    finally:
        await database.close()


async def _job(
    repository: BatchStore,
    task: ClaimedTask,
    attempt: int,
    end: ProviderJobStatus,
    *,
    failures_billed: bool = False,
    failure: ProviderFailure | None = None,
) -> str:
    """One journaled job of the task's attempt, as an adapter writes it; its provider job id."""
    journal = repository.provider_jobs.journal(
        task_id=task.task_id,
        batch_id=task.batch_id,
        attempt=attempt,
        model=task.model,
        claim_token=task.claim_token,
        cost_usd_micros=JOB,
        failures_billed=failures_billed,
    )
    job_id = f"job-{uuid.uuid4().hex[:10]}"
    await journal.intend("replicate", None)
    await journal.submitted(job_id, job_id)
    if end is not ProviderJobStatus.RUNNING:
        await journal.finished(end, failure)
    return job_id


def _succeeded(task: ClaimedTask, attempts: int, unjournaled: int = 0) -> TaskOutcome:
    return TaskOutcome(
        task.task_id,
        task.claim_token,
        TaskStatus.SUCCEEDED,
        attempts,
        video_url=f"http://v/{task.task_id}.mp4",
        unjournaled_cost_usd_micros=unjournaled,
    )


async def _outcome_events(sql: psycopg.AsyncConnection[Any], batch_id: BatchId) -> dict[str, Any]:
    rows = await (
        await sql.execute(
            "SELECT body FROM batch.outbox WHERE message_type = 'reelbatch.proto.events.v1.TaskOutcomes'"
        )
    ).fetchall()
    by_task: dict[str, Any] = {}
    for (body,) in rows:
        message = events_pb2.TaskOutcomes.FromString(body)
        if message.batch_id == str(batch_id):
            for succeeded in message.succeeded:
                by_task[succeeded.task_id] = succeeded
            for failed in message.failed:
                by_task[failed.task_id] = failed
    return by_task


async def test_each_outcome_event_carries_what_the_tasks_billed_provider_jobs_cost(
    repository: BatchStore, sql: psycopg.AsyncConnection[Any]
) -> None:
    model = _model()
    batch_id, ids = await _queued_batch(sql, model, 5)
    (claim,) = await repository.claims.claim_dispatches([(batch_id, ids)], 30.0, slot_limits={model: 10})
    retried, failures_billed, doubled, simulated, refused = claim.claimed
    # A job that failed at a provider that does not bill failures, then one that delivered.
    await _job(repository, retried, 1, ProviderJobStatus.FAILED, failure=FAILED)
    await _job(repository, retried, 2, ProviderJobStatus.SUCCEEDED)
    # The same at a provider that bills failures (Replicate bills compute time): two billed jobs.
    await _job(repository, failures_billed, 1, ProviderJobStatus.FAILED, failures_billed=True, failure=FAILED)
    await _job(repository, failures_billed, 2, ProviderJobStatus.SUCCEEDED, failures_billed=True)
    # Two jobs for one attempt (a crash between create and record, say): both billed.
    await _job(repository, doubled, 1, ProviderJobStatus.ABANDONED)
    await _job(repository, doubled, 1, ProviderJobStatus.SUCCEEDED)
    # A create refused by the provider: no job exists there, nothing is billed.
    refusal = ProviderFailure(FailureType.CONTENT_POLICY, "blocked", transient=False)
    await _job(repository, refused, 1, ProviderJobStatus.REFUSED, failure=refusal)

    await write_outcomes(
        repository.claims,
        [
            _succeeded(retried, 2),
            _succeeded(failures_billed, 2),
            _succeeded(doubled, 1),
            # The simulated provider journals nothing: it bills its video with the outcome.
            _succeeded(simulated, 1, unjournaled=24_000),
            TaskOutcome(
                refused.task_id, refused.claim_token, TaskStatus.FAILED, 1, FailureType.CONTENT_POLICY, "no"
            ),
        ],
    )

    events = await _outcome_events(sql, batch_id)
    spend = {
        name: (events[str(task.task_id)].provider_cost_usd_micros, events[str(task.task_id)].provider_jobs)
        for name, task in [
            ("retried", retried),
            ("failures_billed", failures_billed),
            ("doubled", doubled),
            ("simulated", simulated),
            ("refused", refused),
        ]
    }
    assert spend == {
        "retried": (JOB, 1),
        "failures_billed": (2 * JOB, 2),
        "doubled": (2 * JOB, 2),
        "simulated": (24_000, 1),
        "refused": (0, 0),
    }
    # Reported as known, even when 0: billing tells "nothing billed" from "not reported".
    assert events[str(refused.task_id)].HasField("provider_cost_usd_micros")
    stored = await (
        await sql.execute(
            "SELECT sum(provider_cost_usd_micros), sum(provider_jobs) FROM batch.tasks WHERE batch_id = %s",
            (batch_id,),
        )
    ).fetchone()
    assert stored == (5 * JOB + 24_000, 6)

    findings = [found for found in await repository.provider_jobs.audit() if found.task_id in set(ids)]
    # Only the attempt holding two billed jobs; a failed job its provider does not bill is no double.
    assert [(found.check, found.task_id, found.attempt) for found in findings] == [
        (DOUBLE_JOB, doubled.task_id, 1)
    ]
    assert "$0.08 paid beyond the first" in findings[0].message


async def test_the_operator_pages_through_a_batchs_jobs_in_task_order_with_what_each_is_billed(
    repository: BatchStore, sql: psycopg.AsyncConnection[Any]
) -> None:
    model = _model()
    batch_id, ids = await _queued_batch(sql, model, 2)
    (claim,) = await repository.claims.claim_dispatches([(batch_id, ids)], 30.0, slot_limits={model: 10})
    first, second = sorted(claim.claimed, key=lambda task: task.batch_index)
    failed_job = await _job(repository, first, 1, ProviderJobStatus.FAILED, failure=FAILED)
    delivered = await _job(repository, first, 2, ProviderJobStatus.SUCCEEDED)
    running = await _job(repository, second, 1, ProviderJobStatus.RUNNING)

    page, cursor = await repository.provider_jobs.of_batch(batch_id, None, 2)
    assert [(job.batch_index, job.attempt, job.provider_job_id, job.status) for job in page] == [
        (0, 1, failed_job, ProviderJobStatus.FAILED),
        (0, 2, delivered, ProviderJobStatus.SUCCEEDED),
    ]
    assert [job.billed_usd_micros for job in page] == [0, JOB]
    assert page[0].failure_type == "provider_error" and page[0].error_message == "the render crashed"
    assert cursor is not None
    rest, end = await repository.provider_jobs.of_batch(batch_id, cursor, 2)
    assert [(job.batch_index, job.provider_job_id, job.billed_usd_micros) for job in rest] == [
        (1, running, JOB)
    ]
    assert end is None


async def test_a_task_cancelled_while_queued_again_after_a_crash_still_reports_its_running_job(
    repository: BatchStore, sql: psycopg.AsyncConnection[Any]
) -> None:
    model = _model()
    batch_id, ids = await _queued_batch(sql, model, 1)
    (claim,) = await repository.claims.claim_dispatches([(batch_id, ids)], 30.0, slot_limits={model: 10})
    (task,) = claim.claimed
    await _job(repository, task, 1, ProviderJobStatus.RUNNING)
    # Its worker died: the lease expired and recovery put the task back in the queue.
    await sql.execute(
        "UPDATE batch.tasks SET status = 'queued', claim_token = NULL, lease_expires_at = NULL WHERE id = %s",
        (task.task_id,),
    )

    assert await repository.cancels.cancel_batch(batch_id, None) is not None

    cancelled = (await _outcome_events(sql, batch_id))[str(task.task_id)]
    assert (cancelled.failure_type, cancelled.provider_cost_usd_micros, cancelled.provider_jobs) == (
        "cancelled",
        JOB,
        1,
    )
