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

from libs.dependency_down import is_dependency_down
from services.batch.domain.batch import BatchId, TaskId, TaskStatus, TenantId
from services.batch.domain.generation import NO_IMAGES, NO_SETTINGS, GenerationSettings, ResolvedImages
from services.batch.domain.provider import (
    FailureType,
    ProviderFailure,
    ProviderJob,
    VideoAsset,
    VideoProvider,
)
from services.batch.domain.provider_jobs import JobJournal, RecordedJob
from services.batch.domain.retry import BackoffPolicy
from services.batch.domain.routing import (
    AttemptRouter,
    RoutePick,
    RoutePolicy,
    RouteWait,
    breaker_key,
    budget_key,
)

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
# The journal of one attempt's provider job, given the attempt, the recorded job it resumes and
# the route (provider) it runs on ("" without a router).
JournalFactory = Callable[[int, RecordedJob | None, str], JobJournal]


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
    # The cost of a video of `default_seconds` at the resolutions that cost more at the model's
    # own provider (ADR-145).
    resolution_costs: Mapping[str, int] = field(default_factory=dict)
    # Whether the provider bills a job that failed on its side (ADR-145).
    failures_billed: bool = False
    # Every route of the model in order, its own provider's first (ADR-149); empty: that one only,
    # with no rate budget.
    routes: tuple[RoutePolicy, ...] = ()

    def job_cost(
        self, duration_seconds: int, route_cost_usd_micros: int | None = None, resolution: str = ""
    ) -> int:
        """What the provider charges us for one job of a video of `duration_seconds` (0: the
        model's default length), from the price list's provider cost: of the route, if given, else
        of the model's own provider at `resolution` ("": the model's default)."""
        cost = (
            self.resolution_costs.get(resolution, self.provider_cost_usd_micros)
            if route_cost_usd_micros is None
            else route_cost_usd_micros
        )
        if not self.per_second or duration_seconds <= 0:
            return cost
        return cost * duration_seconds // self.default_seconds

    def routes_of(self, model: str) -> tuple[RoutePolicy, ...]:
        """The model's routes (one, to its provider without a budget, when none is declared)."""
        if self.routes:
            return self.routes
        return (
            RoutePolicy(
                self.provider,
                breaker_key(model, self.provider, 0),
                budget_key(self.provider, model),
                provider_cost_usd_micros=self.provider_cost_usd_micros,
            ),
        )


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
    router: AttemptRouter | None = None,
    pinned_route: str | None = None,
) -> TaskOutcome:
    """Attempts the task until it succeeds, fails permanently, or runs out of attempts.

    `slot` bounds how many provider calls run at once; it is held only during a call (not while
    waiting to retry) and the timeout starts once it is acquired. A task continuing after a crash
    starts at `first_attempt`, polling `resume` (its recorded provider job) if given; each
    attempt's submission is journaled through `journal_for` (remote providers only). With a
    `gate` (the model's circuit breaker), an attempt waits while the provider is down, and a
    transient failure while it is down costs no attempt: the budget is `max_attempts` attempts
    made while the provider was up.

    With a `router` (remote providers, ADR-149), each attempt runs on the route it picks, under
    `slot` (so a granted create call leaves at once) and the route's breaker replaces `gate`;
    while no route can take it the task waits, holding no slot and spending no attempt. The
    task stays on `pinned_route` (a job in doubt or to resume is there), and on the route of
    any job whose create call's answer is lost later.
    """
    attempt = first_attempt - 1
    forgiven = 0
    pinned = pinned_route
    while True:
        if gate is not None and router is None:
            outage = await gate.admit()
            if outage is not None:
                return TaskOutcome.failed(task, attempt, outage.failure_type, outage.message)
        picked = RoutePick("", provider, gate)
        wait: float | None = None
        async with slot if slot is not None else nullcontext():
            if router is not None:
                resuming = resume is not None and attempt + 1 == first_attempt
                choice = await router.pick(pinned, needs_budget=not resuming)
                if isinstance(choice, ProviderFailure):
                    return TaskOutcome.failed(task, attempt, choice.failure_type, choice.message)
                if isinstance(choice, RouteWait):
                    wait = choice.seconds
                else:
                    picked = choice
            if wait is None:
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
                    journal=journal_for(attempt, resumed, picked.route) if journal_for is not None else None,
                    resume=resumed,
                )
                result = await _attempt(task, picked.provider, job, policy.timeout_seconds)
        if wait is not None:
            # No route can take the attempt yet (breakers open, budgets spent): nothing is spent.
            await sleep(wait)
            continue
        if isinstance(result, TaskOutcome):
            return result
        if not isinstance(result, ProviderFailure):
            if picked.gate is not None:
                await picked.gate.succeeded()
            return TaskOutcome(
                task.task_id, task.claim_token, TaskStatus.SUCCEEDED, attempt, video_url=result.url
            )
        failure = result
        if failure.in_doubt and router is not None:
            pinned = picked.route
        if (
            failure.route_down
            and router is not None
            and pinned is None
            and router.has_alternative(picked.route)
        ):
            # Refused before any job was made (our account there is out of quota): another route
            # takes the task at once, and the refusal costs it no attempt.
            forgiven += 1
            continue
        # The breaker counts the provider's failures only: our database being out of reach
        # (an internal failure) says nothing about the provider.
        if (
            failure.transient
            and failure.failure_type is not FailureType.INTERNAL
            and picked.gate is not None
            and await picked.gate.failed(failure)
        ):
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


async def _attempt(
    task: ClaimedTask, provider: VideoProvider, job: ProviderJob, timeout_seconds: float
) -> VideoAsset | ProviderFailure | TaskOutcome:
    """One call to the provider under the attempt's timeout: the video, the classified failure,
    or (for a bug or an unclassified answer) the task's final outcome."""
    try:
        # asyncio.timeout, not wait_for: no extra task per attempt.
        async with asyncio.timeout(timeout_seconds):
            return await provider.generate(job)
    except TimeoutError:
        return ProviderFailure(FailureType.TIMEOUT, f"provider did not answer within {timeout_seconds:g}s")
    except ProviderFailure as refused:
        return refused
    except Exception as error:
        if is_dependency_down(error):
            # Our own database out of reach for a moment (a pool with no connection to give under
            # a burst of job starts, a restart): the attempt is retried like a provider's hiccup,
            # never the task failed for it (ADR-161). Nothing was sent whose answer we lost: the
            # adapter journals a job before polling it and stops one it could not journal.
            log.warning(
                "task %s attempt %d: a dependency is unavailable: %r", task.task_id, job.attempt, error
            )
            return ProviderFailure(
                FailureType.INTERNAL, f"our database was unavailable: {type(error).__name__}", transient=True
            )
        # A bug or an unclassified provider response: never retried blindly, always recorded.
        log.exception("task %s failed unexpectedly on attempt %d", task.task_id, job.attempt)
        return TaskOutcome.failed(
            task, job.attempt, FailureType.INTERNAL, f"internal error: {type(error).__name__}"
        )
