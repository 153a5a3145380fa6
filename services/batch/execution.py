"""Use cases of the workers: claim dispatched tasks, run them, write their outcomes in groups.

A worker process holds one `TaskExecutor`. Provider calls are asyncio coroutines bounded by one
process-wide semaphore (never a thread per task); outcomes completed within a few milliseconds of
each other are written in one transaction by the `OutcomeWriter`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence

from libs.lifecycle import sleep_or_stop
from services.batch.adapters.repository import BatchRepository
from services.batch.domain.batch import BatchId, TaskId
from services.batch.domain.execution import (
    AttemptPolicy,
    ClaimedTask,
    ModelPolicy,
    TaskOutcome,
    run_task,
)
from services.batch.domain.provider import FailureType, VideoProvider
from services.batch.domain.retry import BackoffPolicy

log = logging.getLogger(__name__)

_Pending = tuple[TaskOutcome, "asyncio.Future[None]"]


class OutcomeWriter:
    """Groups outcomes (up to `max_group`, waiting at most `linger_seconds`) into one transaction.

    `submit` returns once the outcome is committed (or discarded because the claim was lost), so a
    dispatch message is acknowledged only after its outcomes are durable.
    """

    def __init__(
        self,
        repository: BatchRepository,
        *,
        max_group: int = 200,
        linger_seconds: float = 0.005,
        write_attempts: int = 5,
    ) -> None:
        self._repo = repository
        self._max_group = max_group
        self._linger = linger_seconds
        self._write_attempts = write_attempts
        self._inbox: asyncio.Queue[_Pending] = asyncio.Queue()

    async def submit(self, outcome: TaskOutcome) -> None:
        """Queues the outcome and waits until its group is committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._inbox.put((outcome, done))
        await done

    async def run(self) -> None:
        """Writes groups until cancelled."""
        while True:
            group = [await self._inbox.get()]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._linger
            while len(group) < self._max_group:
                remaining = deadline - loop.time()
                try:
                    group.append(
                        self._inbox.get_nowait()
                        if remaining <= 0
                        else await asyncio.wait_for(self._inbox.get(), remaining)
                    )
                except (TimeoutError, asyncio.QueueEmpty):
                    break
            await self._write(group)

    async def _write(self, group: Sequence[_Pending]) -> None:
        outcomes = [outcome for outcome, _ in group]
        for attempt in range(1, self._write_attempts + 1):
            try:
                await self._repo.write_outcomes(outcomes)
            except Exception as error:
                if attempt == self._write_attempts:
                    log.exception("could not write %d task outcomes", len(outcomes))
                    for _, done in group:
                        if not done.done():
                            done.set_exception(error)
                    return
                # A short database hiccup should not cost a provider call: try again before giving
                # the tasks up to lease expiry and recovery.
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
            else:
                for _, done in group:
                    if not done.done():
                        done.set_result(None)
                return


class TaskExecutor:
    """Claims the tasks of a dispatch message, runs them concurrently and records their outcomes."""

    def __init__(
        self,
        repository: BatchRepository,
        writer: OutcomeWriter,
        providers: Mapping[str, VideoProvider],
        models: Mapping[str, ModelPolicy],
        *,
        concurrency: int,
        lease_seconds: float,
        provider_timeout_seconds: float,
        backoff: BackoffPolicy,
    ) -> None:
        self._repo = repository
        self._writer = writer
        self._providers = providers
        self._models = models
        self._slots = asyncio.Semaphore(concurrency)
        self._lease_seconds = lease_seconds
        self._timeout = provider_timeout_seconds
        self._backoff = backoff
        self._in_flight: dict[TaskId, uuid.UUID] = {}

    @property
    def in_flight(self) -> int:
        """Tasks claimed by this worker and not yet recorded."""
        return len(self._in_flight)

    async def execute_dispatch(self, batch_id: BatchId, task_ids: Sequence[TaskId]) -> int:
        """Runs the tasks of one dispatch message that are still queued; returns how many ran.

        Ids already claimed elsewhere or cancelled are skipped. Returns once every outcome is
        committed; raises if they could not be (the tasks' leases then expire and recovery
        dispatches them again).
        """
        claimed = await self._repo.claim_tasks(batch_id, task_ids, self._lease_seconds)
        for task in claimed:
            self._in_flight[task.task_id] = task.claim_token
        try:
            async with asyncio.TaskGroup() as group:
                for task in claimed:
                    group.create_task(self._run_and_record(task))
        finally:
            for task in claimed:
                self._in_flight.pop(task.task_id, None)
        return len(claimed)

    async def _run_and_record(self, task: ClaimedTask) -> None:
        outcome = await self._run(task)
        await self._writer.submit(outcome)

    async def _run(self, task: ClaimedTask) -> TaskOutcome:
        model = self._models.get(task.model)
        provider = self._providers.get(model.provider) if model is not None else None
        if model is None or provider is None:
            return TaskOutcome.failed(
                task, 0, FailureType.INTERNAL, f"no provider configured for {task.model}"
            )
        policy = AttemptPolicy(model.max_attempts, self._timeout, self._backoff)
        return await run_task(task, provider, policy, slot=self._slots)

    async def renew_leases(self) -> int:
        """Extends the leases of every task this worker holds."""
        return await self._repo.renew_leases(list(self._in_flight.values()), self._lease_seconds)

    async def keep_leases(self, stopping: asyncio.Event) -> None:
        """Renews leases every third of a lease until `stopping` is set."""
        while not await sleep_or_stop(stopping, self._lease_seconds / 3):
            try:
                await self.renew_leases()
            except Exception:
                # A missed renewal is survivable (two more before expiry); a crash of this loop is not.
                log.exception("lease renewal failed")
