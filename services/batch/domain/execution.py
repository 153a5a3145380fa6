"""Running one claimed task: attempts under a timeout, retries of transient failures, an outcome."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol

from services.batch.domain.batch import BatchId, TaskId, TaskStatus, TenantId
from services.batch.domain.generation import NO_IMAGES, NO_SETTINGS, GenerationSettings, ResolvedImages
from services.batch.domain.provider import FailureType, ProviderFailure, ProviderJob, VideoProvider
from services.batch.domain.provider_jobs import JobJournal, RecordedJob
from services.batch.domain.retry import BackoffPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimedTask:
    """A task this worker claimed: it may run it until its lease expires."""

    task_id: TaskId
    batch_id: BatchId
    tenant_id: TenantId
    batch_index: int
    prompt: str
    model: str
    unit_price: int
    claim_token: uuid.UUID
    claims: int
    # The video length priced (0: the model's own) and the item's generation settings.
    duration_seconds: int = 0
    settings: GenerationSettings = NO_SETTINGS


# Called between attempts with (attempts made, the failure, seconds until the next attempt).
RetryObserver = Callable[[int, ProviderFailure, float], Awaitable[None]]
# The journal of one attempt's provider job, given the attempt and the recorded job it resumes.
JournalFactory = Callable[[int, RecordedJob | None], JobJournal]


class AttemptGate(Protocol):
    """A model's circuit breaker as seen by one task (ADR-113)."""

    async def admit(self) -> ProviderFailure | None:
        """Waits while the model's provider is down; the failure to end the task with when it
        stayed down too long, None when the attempt may start."""
        ...

    async def failed(self, failure: ProviderFailure) -> bool:
        """Counts a transient failure; True when it costs the task no attempt."""
        ...

    async def succeeded(self) -> None:
        """Counts a success."""
        ...


@dataclass(frozen=True)
class ModelPolicy:
    """Which provider makes a model's videos, how many attempts a task of it gets, and what one
    job costs us there (US dollar micros for a video of `default_seconds`; 0: unknown)."""

    provider: str
    max_attempts: int
    provider_cost_usd_micros: int = 0
    # Set for a model the provider bills by the second: a job's cost scales with its length.
    per_second: bool = False
    default_seconds: int = 8
    # The cost of a video of `default_seconds` at the resolutions that cost more (ADR-145).
    resolution_costs: Mapping[str, int] = field(default_factory=dict)
    # Whether the provider bills a job that failed on its side (ADR-145).
    failures_billed: bool = False

    def job_cost(self, duration_seconds: int, resolution: str = "") -> int:
        """What the provider charges us for one job of a video of `duration_seconds` (0: the
        model's default length) at `resolution` ("": the model's default), from the price list."""
        cost = self.resolution_costs.get(resolution, self.provider_cost_usd_micros)
        if not self.per_second or duration_seconds <= 0:
            return cost
        return cost * duration_seconds // self.default_seconds


@dataclass(frozen=True)
class AttemptPolicy:
    """How hard to try one task."""

    max_attempts: int
    timeout_seconds: float
    backoff: BackoffPolicy


@dataclass(frozen=True)
class TaskOutcome:
    """The final result of a claimed task, to be written only if the claim still holds."""

    task_id: TaskId
    claim_token: uuid.UUID
    status: TaskStatus
    attempts: int
    failure_type: FailureType | None = None
    error_message: str | None = None
    video_url: str | None = None
    # What a provider that journals no job (the simulated one) charges for the task: booked as
    # the task's provider spend beside the journal's billed jobs (ADR-144).
    unjournaled_cost_usd_micros: int = 0

    @classmethod
    def failed(cls, task: ClaimedTask, attempts: int, failure_type: FailureType, message: str) -> TaskOutcome:
        """A failed task (refunded)."""
        return cls(task.task_id, task.claim_token, TaskStatus.FAILED, attempts, failure_type, message)

    @classmethod
    def cancelled(cls, task: ClaimedTask, attempts: int, message: str) -> TaskOutcome:
        """A running task stopped because its batch was cancelled (refunded)."""
        return cls(
            task.task_id, task.claim_token, TaskStatus.CANCELLED, attempts, FailureType.CANCELLED, message
        )


@dataclass(frozen=True)
class ClaimResult:
    """What one claim of a dispatch message's tasks got: tasks to run, and ids still waiting.

    `waiting` are tasks still queued that could not be claimed yet (no provider slot free, or a
    row locked for a moment); ids claimed elsewhere, cancelled or finished are in neither.
    """

    claimed: list[ClaimedTask]
    waiting: list[TaskId] = field(default_factory=list)
    # The models of the waiting tasks: while every one of them is at its slot limit, claiming
    # the waiting ids again can only find them waiting (see `ClaimCoalescer`).
    waiting_models: frozenset[str] = frozenset()


@dataclass
class AttemptCounter:
    """Attempts started so far on a task, readable when its run is cancelled midway."""

    started: int = 0


async def run_task(
    task: ClaimedTask,
    provider: VideoProvider,
    policy: AttemptPolicy,
    *,
    slot: AbstractAsyncContextManager[object] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    uniform: Callable[[], float] = random.random,
    counter: AttemptCounter | None = None,
    images: ResolvedImages = NO_IMAGES,
    on_retry: RetryObserver | None = None,
    first_attempt: int = 1,
    resume: RecordedJob | None = None,
    journal_for: JournalFactory | None = None,
    gate: AttemptGate | None = None,
) -> TaskOutcome:
    """Attempts the task until it succeeds, fails permanently, or runs out of attempts.

    `slot` bounds how many provider calls run at once; it is held only during a call (not while
    waiting to retry) and the timeout starts once it is acquired. A task continuing after a crash
    starts at `first_attempt`, polling `resume` (its recorded provider job) if given; each
    attempt's submission is journaled through `journal_for` (remote providers only). With a
    `gate` (the model's circuit breaker), an attempt waits while the provider is down, and a
    transient failure while it is down costs no attempt: the budget is `max_attempts` attempts
    made while the provider was up.
    """
    attempt = first_attempt - 1
    forgiven = 0
    while True:
        if gate is not None:
            outage = await gate.admit()
            if outage is not None:
                return TaskOutcome.failed(task, attempt, outage.failure_type, outage.message)
        attempt += 1
        if counter is not None:
            counter.started = attempt
        resumed = resume if attempt == first_attempt else None
        job = ProviderJob(
            task.task_id,
            task.batch_id,
            task.prompt,
            task.model,
            attempt,
            duration_seconds=task.duration_seconds,
            settings=task.settings,
            images=images,
            journal=journal_for(attempt, resumed) if journal_for is not None else None,
            resume=resumed,
        )
        try:
            async with slot if slot is not None else nullcontext():
                # asyncio.timeout, not wait_for: no extra task per attempt.
                async with asyncio.timeout(policy.timeout_seconds):
                    asset = await provider.generate(job)
        except TimeoutError:
            failure = ProviderFailure(
                FailureType.TIMEOUT, f"provider did not answer within {policy.timeout_seconds:g}s"
            )
        except ProviderFailure as refused:
            failure = refused
        except Exception as error:
            # A bug or an unclassified provider response: never retried blindly, always recorded.
            log.exception("task %s failed unexpectedly on attempt %d", task.task_id, attempt)
            return TaskOutcome.failed(
                task, attempt, FailureType.INTERNAL, f"internal error: {type(error).__name__}"
            )
        else:
            if gate is not None:
                await gate.succeeded()
            return TaskOutcome(
                task.task_id, task.claim_token, TaskStatus.SUCCEEDED, attempt, video_url=asset.url
            )
        if failure.transient and gate is not None and await gate.failed(failure):
            forgiven += 1
        if not failure.transient or attempt - forgiven >= policy.max_attempts:
            return TaskOutcome.failed(task, attempt, failure.failure_type, failure.message)
        # The provider's own Retry-After holds between attempts too, when longer than our backoff.
        delay = max(policy.backoff.delay(attempt, uniform), failure.retry_after or 0.0)
        if on_retry is not None:
            try:
                await on_retry(attempt, failure, delay)
            except Exception:
                # The live detail is a courtesy; the retry itself must not depend on it.
                log.warning("could not record the retry of task %s", task.task_id, exc_info=True)
        await sleep(delay)
