"""Durable provider jobs (issue 26, ADR-110): what we submitted to a paid provider, so a crash never
makes us pay for one video twice.

Each submission of a task's attempt to a remote provider is a journal row: an intent written
before the create call (`submitting`), the provider's job id recorded in the step that learns it
(`running`), and its end. A task dispatched again after a crash or an expired lease reads its
rows (`plan_resume`) and resumes polling the recorded job instead of submitting a new one; it
submits anew only when the recorded job ended without a video or the provider no longer knows it.

None of the providers we call documents an idempotency key on its create call (ADR-110 cites the
sources), so an intent without a job id is a job *in doubt*: the process died between the create
call and the write of its answer, and the provider may be rendering a video nobody watches. Such a
row is kept as `in_doubt` when the task moves on, and the audit (`audit_provider_jobs`) reports it
beside any (task, attempt) holding more than one job.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from services.batch.domain.batch import TaskId
from services.batch.domain.provider import FailureType, ProviderFailure


class ProviderJobStatus(StrEnum):
    """Where one submission to a provider stands, as far as we know."""

    # The intent is written, the create call's answer is not (yet): in doubt if we never learn it.
    SUBMITTING = "submitting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # The create call was answered with a refusal: no job exists at the provider.
    REFUSED = "refused"
    # We asked the provider to stop it (a cancelled batch, an attempt that timed out).
    CANCELLED = "cancelled"
    # We stopped watching a job the provider cannot stop (no cancel in its API): it may finish
    # and be billed to us, never to the customer.
    ABANDONED = "abandoned"
    # An intent whose create call's answer was lost with the process that sent it.
    IN_DOUBT = "in_doubt"
    # The provider answered 404 for a recorded job: it does not know it (any more).
    LOST = "lost"


# Billed by every provider: a job that made (or may still make) its video, or that we stopped
# watching while it ran. Failed and cancelled jobs are billed only by a provider that bills
# failures (the price list's `provider_bills_failures`; Replicate bills compute time used).
BILLED = frozenset({ProviderJobStatus.RUNNING, ProviderJobStatus.SUCCEEDED, ProviderJobStatus.ABANDONED})
BILLED_IF_FAILURES_ARE = frozenset({ProviderJobStatus.FAILED, ProviderJobStatus.CANCELLED})


def is_billed(status: ProviderJobStatus, failures_billed: bool) -> bool:
    """Whether the provider charges us for a job in `status` (ADR-144): what it will bill as far
    as we know now (a running job is counted: it may finish)."""
    return status in BILLED or (failures_billed and status in BILLED_IF_FAILURES_ARE)


def billed_cost(status: ProviderJobStatus, failures_billed: bool, cost_usd_micros: int | None) -> int:
    """What a job costs us: its recorded cost when billed, else 0."""
    return (cost_usd_micros or 0) if is_billed(status, failures_billed) else 0


# A recorded job in these states may still give us the task's video: resume it, never resubmit.
RESUMABLE = frozenset({ProviderJobStatus.RUNNING, ProviderJobStatus.SUCCEEDED})


@dataclass(frozen=True)
class RecordedJob:
    """One journal row of a task."""

    id: uuid.UUID
    task_id: TaskId
    attempt: int
    provider: str
    status: ProviderJobStatus
    provider_job_id: str | None = None
    # What the adapter needs to poll the job again (its id, or its URLs), as it wrote it.
    handle: str | None = None
    failure_type: FailureType | None = None
    error_message: str | None = None
    # False when the job's failure decides the task (content policy, invalid input...).
    retryable: bool = True
    submitted_at: datetime | None = None


@dataclass(frozen=True)
class ResumePlan:
    """How a freshly claimed task continues at its provider."""

    first_attempt: int = 1
    # The job to poll on `first_attempt` instead of submitting one.
    resume: RecordedJob | None = None
    # Intents left `submitting` by a dead process: to be marked in doubt before going on.
    in_doubt: tuple[uuid.UUID, ...] = ()
    # Set when the task already used every attempt: it fails with the last job's failure.
    exhausted: RecordedJob | None = None
    # The route (provider) the task must stay on: the job to resume, or a job in doubt, is there
    # (failover to another route could pay two providers for one video, ADR-149).
    pinned_route: str | None = None


FRESH_START = ResumePlan()


def plan_resume(jobs: Sequence[RecordedJob], max_attempts: int) -> ResumePlan:
    """Continues a task from its recorded jobs (any order): resume a job that may still give the
    video, else the attempt after the last one, or `exhausted` when none is left.

    Called only when this worker holds the task's claim, so a `submitting` row is never another
    live worker's: it belongs to a process that died before it learnt the create call's answer.
    """
    if not jobs:
        return FRESH_START
    ordered = sorted(jobs, key=lambda job: (job.attempt, job.submitted_at or datetime.min))
    in_doubt = tuple(job.id for job in ordered if job.status is ProviderJobStatus.SUBMITTING)
    doubtful = [
        job for job in ordered if job.status in (ProviderJobStatus.SUBMITTING, ProviderJobStatus.IN_DOUBT)
    ]
    pinned = doubtful[-1].provider if doubtful else None
    resumable = [job for job in ordered if job.status in RESUMABLE and job.handle]
    if resumable:
        latest = resumable[-1]
        return ResumePlan(latest.attempt, latest, in_doubt, pinned_route=latest.provider)
    last = ordered[-1]
    # A permanent failure already decided the task (its outcome was lost with the process), and
    # a task never goes past its attempt budget: an intent of the last attempt whose answer was
    # lost is not sent again (it may be running; the audit shows the doubt).
    if not last.retryable or last.attempt >= max_attempts:
        return ResumePlan(last.attempt + 1, None, in_doubt, exhausted=last, pinned_route=pinned)
    return ResumePlan(last.attempt + 1, None, in_doubt, pinned_route=pinned)


def idempotency_key(task_id: TaskId, attempt: int) -> str:
    """The key of one attempt's create call, for a provider that accepts one: the same (task,
    attempt) always sends the same key, so a retried create cannot make a second job."""
    return f"reelbatch-{task_id}-{attempt}"


class JobJournal(Protocol):
    """Where an adapter writes one attempt's submission (the worker's database)."""

    async def intend(self, provider: str, idempotency_key: str | None) -> None:
        """Writes the intent row: before the create call is sent."""
        ...

    async def submitted(self, provider_job_id: str, handle: str) -> None:
        """Records the job the create call made: before the job is polled."""
        ...

    async def finished(self, status: ProviderJobStatus, failure: ProviderFailure | None = None) -> None:
        """Records how the job ended (or that we stopped watching it), with its failure if any."""
        ...


@dataclass(frozen=True)
class JobAuditRow:
    """A journal row as the audit reads it."""

    task_id: TaskId
    attempt: int
    provider: str
    status: ProviderJobStatus
    provider_job_id: str | None
    submitted_at: datetime | None
    # What the provider charges us for it (price list, US dollar micros).
    cost_usd_micros: int = 0
    # Whether its provider bills failed jobs (recorded with the job; ADR-144).
    failures_billed: bool = True

    @property
    def billed(self) -> bool:
        """Whether the provider bills us for this job."""
        return is_billed(self.status, self.failures_billed)


@dataclass(frozen=True)
class ProviderJobView:
    """A job of a batch as the operator's batch page lists it (ADR-144)."""

    task_id: TaskId
    batch_index: int
    attempt: int
    provider: str
    status: ProviderJobStatus
    provider_job_id: str | None
    # What the provider bills us for it (0 when not billed), US dollar micros.
    billed_usd_micros: int
    submitted_at: datetime
    finished_at: datetime | None = None
    failure_type: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class ProviderJobFinding:
    """Something about our provider jobs an operator must look at."""

    check: str
    task_id: TaskId
    attempt: int
    message: str


DOUBLE_JOB = "double_provider_job"
IN_DOUBT_JOB = "provider_job_in_doubt"


def audit_provider_jobs(rows: Iterable[JobAuditRow]) -> list[ProviderJobFinding]:
    """Flags every (task, attempt) holding more than one job its provider bills (ADR-144: a failed
    job counts where the provider bills failures), and every job in doubt (an intent whose create
    call's answer was lost)."""
    by_attempt: dict[tuple[TaskId, int], list[JobAuditRow]] = defaultdict(list)
    for row in rows:
        by_attempt[(row.task_id, row.attempt)].append(row)
    findings: list[ProviderJobFinding] = []
    for (task_id, attempt), jobs in sorted(
        by_attempt.items(), key=lambda item: (str(item[0][0]), item[0][1])
    ):
        billable = [job for job in jobs if job.billed]
        if len(billable) > 1:
            ids = ", ".join(str(job.provider_job_id) for job in billable)
            extra = sum(job.cost_usd_micros for job in billable[1:]) / 1_000_000
            findings.append(
                ProviderJobFinding(
                    DOUBLE_JOB,
                    task_id,
                    attempt,
                    f"{len(billable)} provider jobs for one attempt ({billable[0].provider}: {ids}), "
                    f"${extra:.2f} paid beyond the first",
                )
            )
        for job in jobs:
            if job.status is ProviderJobStatus.IN_DOUBT:
                when = job.submitted_at.isoformat() if job.submitted_at else "unknown time"
                findings.append(
                    ProviderJobFinding(
                        IN_DOUBT_JOB,
                        task_id,
                        attempt,
                        f"create call at {job.provider} sent at {when} with its answer lost: "
                        "a job may exist there that nobody watches",
                    )
                )
    return findings
