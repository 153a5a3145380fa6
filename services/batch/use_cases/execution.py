"""Execution: a worker runs the tasks of its dispatch messages at their providers.

A worker process holds one `TaskExecutor`. Provider calls are asyncio coroutines bounded by one
process-wide semaphore (never a thread per task); their outcomes are written in groups by the
`OutcomeWriter` (`outcomes`). A dispatch message whose tasks cannot all start yet (their model's
provider slots are taken, see `claims`) is kept, unacknowledged, and the rest claimed as slots
free up. Running tasks of a cancelled batch are stopped here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from libs.lifecycle import sleep_or_stop
from services.batch import metrics as batch_metrics
from services.batch.adapters.sql.breakers import ModelBreakers
from services.batch.adapters.sql.cancel import BatchCancels
from services.batch.adapters.sql.claims import TaskClaims
from services.batch.adapters.sql.provider_jobs import ProviderJobs
from services.batch.adapters.sql.rate_budgets import RateBudgets
from services.batch.domain.batch import BatchId, TaskId, TaskStatus, TenantId
from services.batch.domain.breaker import BreakerPolicy
from services.batch.domain.execution import (
    AttemptCounter,
    AttemptPolicy,
    ClaimedTask,
    ModelPolicy,
    TaskOutcome,
    run_task,
)
from services.batch.domain.generation import NO_IMAGES, GenerationSettings, ResolvedImages
from services.batch.domain.provider import FailureType, ProviderFailure, VideoProvider
from services.batch.domain.provider_jobs import FRESH_START, JobJournal, RecordedJob, ResumePlan, plan_resume
from services.batch.domain.retry import BackoffPolicy
from services.batch.domain.scheduling import CancelReason, cancelled_task_message
from services.batch.use_cases.claims import ClaimCoalescer
from services.batch.use_cases.outcomes import OutcomeWriter
from services.batch.use_cases.routing import BudgetHints, RouteChooser

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DispatchResult:
    """What became of one dispatch message's tasks on this worker."""

    ran: int
    # Tasks still queued when this worker stopped claiming (it is shutting down): the message
    # must not be acknowledged, so another worker gets them.
    unclaimed: int = 0


# How long a hand-back waits for its stopped tasks to unwind (a provider's cancellation clean-up,
# an outcome write already under way) before it gives back those still held.
HAND_BACK_UNWIND_SECONDS = 2.0


class ImageSource(Protocol):
    """Where a task's input images come from (uploaded files, fetched URLs)."""

    async def resolve(self, tenant_id: TenantId, settings: GenerationSettings) -> ResolvedImages:
        """The images' bytes; raises ProviderFailure (invalid_input) for one that cannot be used."""
        ...


@dataclass(frozen=True)
class ClaimPacing:
    """How a worker polls for provider slots freed elsewhere: first poll after `first_seconds`,
    doubling to `max_seconds` while polls find none (a slot freed by this worker wakes it at once)."""

    first_seconds: float = 0.05
    max_seconds: float = 1.0


class TaskExecutor:
    """Claims the tasks of dispatch messages, runs them concurrently, records their outcomes.

    It also stops the tasks of batches cancelled while they run (see `check_cancellations`).
    """

    def __init__(
        self,
        claims: TaskClaims,
        cancels: BatchCancels,
        writer: OutcomeWriter,
        providers: Mapping[str, VideoProvider],
        models: Mapping[str, ModelPolicy],
        *,
        concurrency: int,
        lease_seconds: float,
        provider_timeout_seconds: float,
        backoff: BackoffPolicy,
        slot_limits: Mapping[str, int] | None = None,
        worker_id: str | None = None,
        pacing: ClaimPacing | None = None,
        cancel_check_seconds: float = 1.0,
        images: ImageSource | None = None,
        provider_jobs: ProviderJobs | None = None,
        breakers: ModelBreakers | None = None,
        breaker_policy: BreakerPolicy | None = None,
        rate_budgets: RateBudgets | None = None,
        rate_window_seconds: float = 60.0,
    ) -> None:
        self._claims = claims
        self._rate_budgets = rate_budgets
        self._rate_window_seconds = rate_window_seconds
        self._budget_hints = BudgetHints()
        self._breakers = breakers
        self._breaker_policy = breaker_policy or BreakerPolicy()
        self._provider_jobs = provider_jobs
        self._cancels = cancels
        self._writer = writer
        self._providers = providers
        self._models = models
        self._slots = asyncio.Semaphore(concurrency)
        self._lease_seconds = lease_seconds
        self._timeout = provider_timeout_seconds
        self._backoff = backoff
        self._coalescer = ClaimCoalescer(
            claims, lease_seconds=lease_seconds, slot_limits=slot_limits or {}, worker_id=worker_id
        )
        self._pacing = pacing or ClaimPacing()
        self._cancel_check_seconds = cancel_check_seconds
        self._images = images
        self._in_flight: dict[TaskId, ClaimedTask] = {}
        self._runners: dict[TaskId, asyncio.Task[TaskOutcome]] = {}
        self._cancelling: dict[TaskId, CancelReason | None] = {}
        # Each claimed task's run-and-record coroutine, and the tasks stopped to be handed back.
        self._recording: set[asyncio.Task[None]] = set()
        self._handing_back = False
        self._handed_back: list[ClaimedTask] = []
        self._claiming = True
        # Replaced on every notification, so a waiter that took the event before claiming never
        # misses a slot freed while its claim ran.
        self._freed = asyncio.Event()
        # The shared poll clock of dispatch messages waiting for slots (see `_schedule_poll`):
        # its next delay doubles while polls find nothing and resets when a claim gets a slot.
        self._poll_delay = self._pacing.first_seconds
        self._poll_timer: asyncio.TimerHandle | None = None

    @property
    def in_flight(self) -> int:
        """Tasks claimed by this worker and not yet recorded."""
        return len(self._in_flight)

    def stop_claiming(self) -> None:
        """Claims nothing more (shutdown); dispatches waiting for slots give their tasks up.

        Remote jobs still running when the drain ends are left running at their providers (not
        cancelled): the next worker to claim their tasks resumes them (ADR-110).
        """
        self._claiming = False
        for provider in self._providers.values():
            detach = getattr(provider, "detach", None)
            if detach is not None:
                detach()
        self._notify_freed()

    async def hand_back(self) -> int:
        """Stops the tasks still running here and gives them back at once (the worker is stopping
        and its grace period is over): queued and dispatched again in one transaction, so another
        worker claims them now rather than after their lease expires (ADR-139). A remote job keeps
        running at its provider (`stop_claiming` detached it) and the next claim resumes it
        (ADR-110). Outcomes already computed are still written. Returns how many were given back.
        """
        self._handing_back = True
        for runner in list(self._runners.values()):
            runner.cancel()
        if self._recording:
            _, late = await asyncio.wait(set(self._recording), timeout=HAND_BACK_UNWIND_SECONDS)
            if late:
                log.warning(
                    "%d tasks did not unwind in %.1fs; their leases will expire",
                    len(late),
                    HAND_BACK_UNWIND_SECONDS,
                )
        stopped, self._handed_back = self._handed_back, []
        return await self._claims.hand_back([task.claim_token for task in stopped])

    def _notify_freed(self) -> None:
        self._freed.set()
        self._freed = asyncio.Event()

    def _schedule_poll(self) -> None:
        # Slots freed by other workers are found by polling. One clock for every waiting dispatch
        # message: they wake together and their claims share one transaction, where a clock each
        # (20 messages waiting on a full model) made ~4x as many claim rounds, each reading every
        # waiting task to find no slot.
        if self._poll_timer is None:
            self._poll_timer = asyncio.get_running_loop().call_later(self._poll_delay, self._poll_due)

    def _poll_soon(self) -> None:
        # A claim got slots: more may be freeing, so the clock starts over at its first delay
        # (a poll already due later is brought forward).
        self._poll_delay = self._pacing.first_seconds
        if self._poll_timer is not None:
            self._poll_timer.cancel()
            self._poll_timer = None

    def _poll_due(self) -> None:
        self._poll_timer = None
        self._poll_delay = min(self._poll_delay * 2, self._pacing.max_seconds)
        self._notify_freed()

    async def execute_dispatch(self, batch_id: BatchId, task_ids: Sequence[TaskId]) -> DispatchResult:
        """Runs the tasks of one dispatch message that are still queued, as provider slots allow.

        Ids already claimed elsewhere, cancelled or finished are skipped. Returns once every
        claimed task's outcome is committed; raises if one could not be (the leases then expire
        and recovery dispatches those tasks again).
        """
        waiting = list(task_ids)
        models: frozenset[str] = frozenset()
        runners: list[asyncio.Task[None]] = []
        claim_error: Exception | None = None
        try:
            while waiting and self._claiming:
                freed = self._freed
                try:
                    result = await self._coalescer.claim(batch_id, waiting, models)
                except Exception as error:
                    # Let the tasks already claimed finish before the message is retried.
                    claim_error = error
                    break
                for task in result.claimed:
                    self._in_flight[task.task_id] = task
                try:
                    plans = await self._resume_plans(result.claimed)
                except Exception as error:
                    # Not one of them starts blind: their leases expire and they come back.
                    for task in result.claimed:
                        self._in_flight.pop(task.task_id, None)
                    claim_error = error
                    break
                for task in result.claimed:
                    plan = plans.get(task.task_id, FRESH_START)
                    recording = asyncio.create_task(self._run_and_record(task, plan))
                    self._recording.add(recording)
                    recording.add_done_callback(self._recording.discard)
                    runners.append(recording)
                waiting, models = result.waiting, result.waiting_models
                if not waiting:
                    break
                if result.claimed:
                    self._poll_soon()
                self._schedule_poll()
                await freed.wait()
            results = await asyncio.gather(*runners, return_exceptions=True)
        except asyncio.CancelledError:
            for runner in runners:
                runner.cancel()
            raise
        failures = [result for result in results if isinstance(result, BaseException)]
        if claim_error is not None:
            raise claim_error
        if failures:
            raise failures[0]
        return DispatchResult(len(runners), len(waiting))

    async def _run_and_record(self, task: ClaimedTask, plan: ResumePlan) -> None:
        counter = AttemptCounter()
        runner = asyncio.create_task(self._run(task, counter, plan))
        self._runners[task.task_id] = runner
        try:
            try:
                await asyncio.wait([runner])
            except asyncio.CancelledError:
                runner.cancel()
                raise
            if runner.cancelled() and self._handing_back and task.task_id not in self._cancelling:
                # Stopped by `hand_back`: no outcome, the task is given back to the queue.
                self._handed_back.append(task)
                return
            outcome = self._cancelled_outcome(task, runner, counter)
            await self._writer.submit(outcome)
        finally:
            self._runners.pop(task.task_id, None)
            self._in_flight.pop(task.task_id, None)
            self._cancelling.pop(task.task_id, None)
            self._notify_freed()

    def _cancelled_outcome(
        self, task: ClaimedTask, runner: asyncio.Task[TaskOutcome], counter: AttemptCounter
    ) -> TaskOutcome:
        # A task whose batch was cancelled ends cancelled unless it succeeded first: a video that
        # exists is delivered and paid for; anything else is refunded.
        if task.task_id not in self._cancelling:
            return runner.result()
        message = cancelled_task_message(self._cancelling[task.task_id], started=True)
        if runner.cancelled():
            return TaskOutcome.cancelled(task, counter.started, message)
        outcome = runner.result()
        if outcome.status is TaskStatus.SUCCEEDED:
            return outcome
        return TaskOutcome.cancelled(task, outcome.attempts, message)

    async def _run(self, task: ClaimedTask, counter: AttemptCounter, plan: ResumePlan) -> TaskOutcome:
        model = self._models.get(task.model)
        routes = model.routes_of(task.model) if model is not None else ()
        configured = [route for route in routes if route.provider in self._providers]
        if model is None or not configured:
            return TaskOutcome.failed(
                task, 0, FailureType.INTERNAL, f"no provider configured for {task.model}"
            )
        provider = self._providers[configured[0].provider]
        images = NO_IMAGES
        if self._images is not None and not task.settings.is_empty:
            try:
                images = await self._images.resolve(task.tenant_id, task.settings)
            except ProviderFailure as refused:
                # An image that cannot be fetched or read fails the item before any provider call
                # (invalid_input, refunded): no attempt was made.
                return TaskOutcome.failed(task, 0, refused.failure_type, refused.message)
        policy = AttemptPolicy(model.max_attempts, self._timeout, self._backoff)
        jobs = self._provider_jobs if getattr(provider, "durable_jobs", False) else None
        if plan.exhausted is not None:
            # Every attempt was used (or a permanent failure decided it) before the last worker
            # could write the outcome: the task fails as its last job did, refunded.
            last = plan.exhausted
            message = last.error_message or f"the provider job of attempt {last.attempt} was lost"
            return TaskOutcome.failed(
                task, last.attempt, last.failure_type or FailureType.PROVIDER_ERROR, message
            )

        route_costs = {route.provider: route.provider_cost_usd_micros for route in routes}

        def journal_for(attempt: int, resumed: RecordedJob | None, route: str) -> JobJournal:
            assert jobs is not None
            return jobs.journal(
                task_id=task.task_id,
                batch_id=task.batch_id,
                attempt=attempt,
                model=task.model,
                claim_token=task.claim_token,
                # What this route charges us: each fallback route has its own price list entry; the
                # model's own provider its per-resolution costs too (ADR-145, ADR-149).
                cost_usd_micros=model.job_cost(
                    task.duration_seconds,
                    None if route == model.provider else route_costs.get(route),
                    task.settings.resolution,
                ),
                resumed=resumed,
                failures_billed=model.failures_billed,
            )

        async def record_retry(attempts: int, failure: ProviderFailure, delay: float) -> None:
            await self._claims.record_retry(task.task_id, task.claim_token, attempts, failure.message, delay)

        with batch_metrics.provider_span(task.task_id, task.model, model.provider) as span:
            outcome = await run_task(
                task,
                provider,
                policy,
                slot=self._slots,
                counter=counter,
                images=images,
                on_retry=record_retry,
                first_attempt=plan.first_attempt,
                resume=plan.resume,
                journal_for=journal_for if jobs is not None else None,
                # Only remote providers have routes (breakers, quota, rate budgets, failover): the
                # simulated one is never down.
                router=(
                    RouteChooser(
                        task.model,
                        routes,
                        self._providers,
                        breakers=self._breakers,
                        budgets=self._rate_budgets,
                        breaker_policy=self._breaker_policy,
                        window_seconds=self._rate_window_seconds,
                        hints=self._budget_hints,
                    )
                    if jobs is not None
                    else None
                ),
                pinned_route=plan.pinned_route,
            )
            batch_metrics.describe_outcome(span, outcome.status.value, outcome.attempts, outcome.failure_type)
        if jobs is None and outcome.status is TaskStatus.SUCCEEDED:
            # A provider that journals nothing (the simulated one) bills its delivered video at the
            # price list's provider cost, booked with the outcome (ADR-144).
            cost = model.job_cost(task.duration_seconds, resolution=task.settings.resolution)
            return replace(outcome, unjournaled_cost_usd_micros=cost)
        return outcome

    async def _resume_plans(self, claimed: Sequence[ClaimedTask]) -> dict[TaskId, ResumePlan]:
        """Where the claimed tasks continue at their remote providers, by one read of the journal
        for the whole claim (ADR-110). Only claims after a task's first can find jobs: a first
        claim has no earlier worker whose job it could resume, so it costs no read at all."""
        if self._provider_jobs is None:
            return {}
        again = [task for task in claimed if task.claims > 1 and self._journals(task.model)]
        if not again:
            return {}
        recorded = await self._provider_jobs.recorded([task.task_id for task in again])
        plans: dict[TaskId, ResumePlan] = {}
        for task in again:
            model = self._models[task.model]
            plans[task.task_id] = plan_resume(recorded.get(task.task_id, []), model.max_attempts)
        await self._provider_jobs.mark_in_doubt([row for plan in plans.values() for row in plan.in_doubt])
        return plans

    def _journals(self, model_name: str) -> bool:
        """Whether tasks of the model run at a remote provider whose jobs are journaled."""
        model = self._models.get(model_name)
        routes = model.routes_of(model_name) if model is not None else ()
        return any(getattr(self._providers.get(route.provider), "durable_jobs", False) for route in routes)

    async def check_cancellations(self) -> int:
        """Stops the running tasks of batches cancelled since they started; returns how many."""
        held = list(self._in_flight.values())
        if not held:
            return 0
        cancelled = await self._cancels.cancelled_batches({task.batch_id for task in held})
        stopped = 0
        for task in held:
            if task.batch_id not in cancelled or task.task_id in self._cancelling:
                continue
            runner = self._runners.get(task.task_id)
            if runner is None or runner.done():
                continue
            self._cancelling[task.task_id] = cancelled[task.batch_id]
            await self._cancel_at_provider(task)
            runner.cancel()
            stopped += 1
        return stopped

    async def _cancel_at_provider(self, task: ClaimedTask) -> None:
        model = self._models.get(task.model)
        # The task may run on any of its model's routes; a route where it has no job answers False.
        for route in model.routes_of(task.model) if model is not None else ():
            cancel = getattr(self._providers.get(route.provider), "cancel", None)
            if cancel is None:
                continue
            try:
                await asyncio.wait_for(cancel(task.task_id), self._cancel_check_seconds * 5)
            except Exception:
                # The job may still finish at the provider; we stop waiting for it either way and
                # the task is refunded, so a failed cancel request costs us, never the customer.
                log.warning("provider did not confirm the cancel of task %s", task.task_id, exc_info=True)

    async def renew_leases(self) -> int:
        """Extends the leases of every task this worker holds."""
        tokens = [task.claim_token for task in self._in_flight.values()]
        return await self._claims.renew_leases(tokens, self._lease_seconds)

    async def keep_leases(self, stopping: asyncio.Event) -> None:
        """Until `stopping` is set: watches for cancelled batches, renews leases every third of a lease."""
        loop = asyncio.get_running_loop()
        renew_every = self._lease_seconds / 3
        next_renewal = loop.time() + renew_every
        while not await sleep_or_stop(stopping, min(renew_every, self._cancel_check_seconds)):
            try:
                await self.check_cancellations()
                if loop.time() >= next_renewal:
                    next_renewal = loop.time() + renew_every
                    await self.renew_leases()
            except Exception:
                # A missed renewal is survivable (two more before expiry); a crash of this loop is not.
                log.exception("lease renewal or cancel check failed")
