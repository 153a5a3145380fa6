"""Durable provider jobs (ADR-110): how a task continues from its recorded jobs, and the audit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.batch.domain.batch import TaskId
from services.batch.domain.execution import ModelPolicy
from services.batch.domain.provider import FailureType
from services.batch.domain.provider_jobs import (
    DOUBLE_JOB,
    FRESH_START,
    IN_DOUBT_JOB,
    JobAuditRow,
    ProviderJobStatus,
    RecordedJob,
    audit_provider_jobs,
    idempotency_key,
    plan_resume,
)

TASK = TaskId(uuid.uuid4())
T0 = datetime(2026, 12, 6, tzinfo=UTC)


def _job(
    attempt: int, status: ProviderJobStatus, *, handle: str | None = "job", **fields: object
) -> RecordedJob:
    return RecordedJob(
        id=uuid.uuid4(),
        task_id=TASK,
        attempt=attempt,
        provider="replicate",
        status=status,
        provider_job_id=handle,
        handle=handle,
        submitted_at=T0 + timedelta(seconds=attempt),
        **fields,  # type: ignore[arg-type]
    )


def test_a_task_without_recorded_jobs_starts_at_its_first_attempt() -> None:
    assert plan_resume([], max_attempts=3) == FRESH_START


def test_a_running_job_is_resumed_at_its_own_attempt_instead_of_submitted_again() -> None:
    first = _job(1, ProviderJobStatus.FAILED)
    running = _job(2, ProviderJobStatus.RUNNING, handle="p-2")
    plan = plan_resume([running, first], max_attempts=3)
    assert (plan.first_attempt, plan.resume, plan.exhausted) == (2, running, None)


def test_a_job_that_succeeded_before_its_outcome_was_written_is_resumed_for_its_video() -> None:
    done = _job(1, ProviderJobStatus.SUCCEEDED, handle="p-1")
    assert plan_resume([done], max_attempts=1).resume == done


def test_an_intent_left_by_a_dead_process_is_in_doubt_and_the_next_attempt_submits() -> None:
    intent = _job(1, ProviderJobStatus.SUBMITTING, handle=None)
    plan = plan_resume([intent], max_attempts=3)
    assert (plan.first_attempt, plan.resume, plan.in_doubt, plan.exhausted) == (2, None, (intent.id,), None)


def test_a_transient_failure_continues_with_the_next_attempt() -> None:
    failed = _job(1, ProviderJobStatus.FAILED, failure_type=FailureType.PROVIDER_ERROR)
    assert plan_resume([failed], max_attempts=3).first_attempt == 2


def test_a_permanent_failure_already_decided_the_task() -> None:
    refused = _job(1, ProviderJobStatus.FAILED, failure_type=FailureType.CONTENT_POLICY, retryable=False)
    plan = plan_resume([refused], max_attempts=3)
    assert plan.exhausted == refused


def test_a_task_never_goes_past_its_attempt_budget_even_after_a_crash() -> None:
    jobs = [
        _job(1, ProviderJobStatus.FAILED),
        _job(2, ProviderJobStatus.SUBMITTING, handle=None),
    ]
    plan = plan_resume(jobs, max_attempts=2)
    assert plan.exhausted == jobs[1]
    assert plan.in_doubt == (jobs[1].id,)


def test_the_idempotency_key_is_the_same_for_the_same_task_and_attempt_only() -> None:
    assert idempotency_key(TASK, 1) == idempotency_key(TASK, 1)
    assert idempotency_key(TASK, 1) != idempotency_key(TASK, 2)


def _row(attempt: int, status: ProviderJobStatus, job_id: str | None = None) -> JobAuditRow:
    return JobAuditRow(TASK, attempt, "replicate", status, job_id, T0, cost_usd_micros=84_000)


def test_the_audit_flags_two_billable_jobs_for_one_attempt() -> None:
    findings = audit_provider_jobs(
        [_row(1, ProviderJobStatus.SUCCEEDED, "a"), _row(1, ProviderJobStatus.ABANDONED, "b")]
    )
    assert [(finding.check, finding.attempt) for finding in findings] == [(DOUBLE_JOB, 1)]
    assert "a, b" in findings[0].message
    assert "$0.08 paid beyond the first" in findings[0].message


def test_the_audit_ignores_jobs_the_provider_never_made_or_no_longer_knows() -> None:
    rows = [
        _row(1, ProviderJobStatus.REFUSED),
        _row(1, ProviderJobStatus.LOST, "gone"),
        _row(1, ProviderJobStatus.RUNNING, "a"),
        _row(2, ProviderJobStatus.SUCCEEDED, "b"),
    ]
    assert audit_provider_jobs(rows) == []


def test_the_audit_reports_every_job_in_doubt() -> None:
    findings = audit_provider_jobs(
        [_row(1, ProviderJobStatus.IN_DOUBT), _row(2, ProviderJobStatus.SUCCEEDED, "b")]
    )
    assert [(finding.check, finding.attempt) for finding in findings] == [(IN_DOUBT_JOB, 1)]


def test_a_job_costs_the_price_lists_provider_cost_scaled_by_length_for_per_second_models() -> None:
    per_video = ModelPolicy("veo", 3, provider_cost_usd_micros=84_000)
    per_second = ModelPolicy("fal", 3, provider_cost_usd_micros=60_000, per_second=True, default_seconds=6)
    assert (per_video.job_cost(0), per_video.job_cost(8)) == (84_000, 84_000)
    assert (per_second.job_cost(0), per_second.job_cost(4), per_second.job_cost(8)) == (
        60_000,
        40_000,
        80_000,
    )
