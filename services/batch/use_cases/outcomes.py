"""Outcomes: the results of tasks written in groups, one transaction per group (the
`OutcomeWriter`), and counted in the metrics once committed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from opentelemetry import context as otel_context

from libs.lifecycle import wait_at_most
from services.batch import metrics as batch_metrics
from services.batch.adapters.sql.claims import TaskClaims
from services.batch.domain.execution import (
    TaskOutcome,
)

log = logging.getLogger(__name__)

# An outcome, the future its submitter waits on, and the submitter's trace context.
_Pending = tuple[TaskOutcome, "asyncio.Future[None]", otel_context.Context]


async def write_outcomes(claims: TaskClaims, outcomes: Sequence[TaskOutcome]) -> int:
    """Writes a group of outcomes in one transaction (see `TaskClaims.write_outcomes`) and counts
    the tasks and batches it finished; returns how many outcomes were written."""
    written = await claims.write_outcomes(outcomes)
    batch_metrics.tasks_finished(written.tasks)
    batch_metrics.batches_reached(written.finished)
    return len(written.tasks)


class OutcomeWriter:
    """Groups outcomes (up to `max_group`, waiting at most `linger_seconds`) into one transaction.

    `submit` returns once the outcome is committed (or discarded because the claim was lost), so a
    dispatch message is acknowledged only after its outcomes are durable.
    """

    def __init__(
        self,
        claims: TaskClaims,
        *,
        max_group: int = 500,
        linger_seconds: float = 0.005,
        write_attempts: int = 5,
    ) -> None:
        self._claims = claims
        self._max_group = max_group
        self._linger = linger_seconds
        self._write_attempts = write_attempts
        self._inbox: asyncio.Queue[_Pending] = asyncio.Queue()

    async def submit(self, outcome: TaskOutcome) -> None:
        """Queues the outcome and waits until its group is committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._inbox.put((outcome, done, otel_context.get_current()))
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
                        else await wait_at_most(self._inbox.get(), remaining)
                    )
                except (TimeoutError, asyncio.QueueEmpty):
                    break
            await self._write(group)

    async def _write(self, group: Sequence[_Pending]) -> None:
        outcomes = [outcome for outcome, _, _ in group]
        # The events of the group carry the trace of its first task (this loop has none of its
        # own); a group usually holds tasks of one batch, and so of one trace.
        token = otel_context.attach(group[0][2])
        try:
            await self._write_with_retries(group, outcomes)
        finally:
            otel_context.detach(token)

    async def _write_with_retries(self, group: Sequence[_Pending], outcomes: Sequence[TaskOutcome]) -> None:
        for attempt in range(1, self._write_attempts + 1):
            try:
                await write_outcomes(self._claims, outcomes)
            except Exception as error:
                if attempt == self._write_attempts:
                    log.exception("could not write %d task outcomes", len(outcomes))
                    for _, done, _ in group:
                        if not done.done():
                            done.set_exception(error)
                    return
                # A short database hiccup should not cost a provider call: try again before giving
                # the tasks up to lease expiry and recovery.
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
            else:
                for _, done, _ in group:
                    if not done.done():
                        done.set_result(None)
                return
