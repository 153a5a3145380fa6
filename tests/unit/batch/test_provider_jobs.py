"""Durable provider jobs (ADR-110): how a task continues from its recorded jobs, and the audit."""

from __future__ import annotations

import uuid
from dataclasses import replace
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
    billed_cost,
    idempotency_key,
    is_billed,
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


def test_a_job_at_a_resolution_that_costs_more_costs_its_own_price_scaled_by_length() -> None:
    veo_31 = ModelPolicy(
        "veo", 3, provider_cost_usd_micros=3_200_000, per_second=True, resolution_costs={"4k": 4_800_000}
    )
    assert (
        veo_31.job_cost(8),
        veo_31.job_cost(8, resolution="1080p"),
        veo_31.job_cost(4, resolution="4k"),
    ) == (
        3_200_000,
        3_200_000,
        2_400_000,
    )


def test_what_a_provider_bills_follows_the_job_status_and_whether_it_bills_failures() -> None:
    billed_always = {ProviderJobStatus.RUNNING, ProviderJobStatus.SUCCEEDED, ProviderJobStatus.ABANDONED}
    billed_if_failures_are = {ProviderJobStatus.FAILED, ProviderJobStatus.CANCELLED}
    for status in ProviderJobStatus:
        assert is_billed(status, failures_billed=False) == (status in billed_always)
        assert is_billed(status, failures_billed=True) == (status in billed_always | billed_if_failures_are)
    assert billed_cost(ProviderJobStatus.FAILED, False, 84_000) == 0
    assert billed_cost(ProviderJobStatus.FAILED, True, 84_000) == 84_000
    assert billed_cost(ProviderJobStatus.IN_DOUBT, True, None) == 0


def test_a_failed_job_beside_the_one_that_delivered_is_a_double_only_where_failures_are_billed() -> None:
    def rows(failures_billed: bool) -> list[JobAuditRow]:
        return [
            replace(_row(1, ProviderJobStatus.FAILED, "a"), failures_billed=failures_billed),
            replace(_row(1, ProviderJobStatus.SUCCEEDED, "b"), failures_billed=failures_billed),
        ]

    assert audit_provider_jobs(rows(False)) == []
    assert [finding.check for finding in audit_provider_jobs(rows(True))] == [DOUBLE_JOB]
