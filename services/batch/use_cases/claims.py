"""Claims: the dispatch messages waiting in one worker claimed together, one transaction at a
time (the `ClaimCoalescer`); provider slots are shared by every worker through the database
(see `TaskClaims.claim_dispatches`)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.batch.adapters.sql.claims import TaskClaims
from services.batch.domain.batch import BatchId, TaskId
from services.batch.domain.execution import (
    ClaimResult,
)


@dataclass
class _ClaimRequest:
    batch_id: BatchId
    task_ids: list[TaskId]
    # The models of these tasks when an earlier claim left them waiting (empty on a first claim).
    models: frozenset[str]
    done: asyncio.Future[ClaimResult]


class ClaimCoalescer:
    """Claims for dispatch messages, one transaction at a time; requests that arrive meanwhile
    share the next one.

    Every claim of a model takes the model's slot lock, so claims of all workers queue behind one
    another; when they do, the messages waiting in this worker are claimed together instead of
    each taking its turn (and a quiet worker still claims a lone message at once).
    """

    def __init__(
        self,
        claims: TaskClaims,
        *,
        lease_seconds: float,
        slot_limits: Mapping[str, int],
        worker_id: str | None,
    ) -> None:
        self._claims = claims
        self._lease_seconds = lease_seconds
        self._slot_limits = dict(slot_limits)
        self._worker_id = worker_id
        self._waiting: list[_ClaimRequest] = []
        self._claiming: asyncio.Task[None] | None = None

    async def claim(
        self, batch_id: BatchId, task_ids: Sequence[TaskId], models: frozenset[str] = frozenset()
    ) -> ClaimResult:
        """Claims what it can of one message's tasks (see `TaskClaims.claim_dispatches`).

        `models` are the tasks' models as an earlier claim reported them (`waiting_models`).
        """
        done: asyncio.Future[ClaimResult] = asyncio.get_running_loop().create_future()
        self._waiting.append(_ClaimRequest(batch_id, list(task_ids), models, done))
        if self._claiming is None:
            self._claiming = asyncio.create_task(self._claim_waiting(), name="batch-claims")
        return await done

    async def _claim_waiting(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    group = await self._answer_full(group)
                    if not group:
                        continue
                    results = await self._claims.claim_dispatches(
                        [(request.batch_id, request.task_ids) for request in group],
                        self._lease_seconds,
                        slot_limits=self._slot_limits,
                        worker_id=self._worker_id,
                    )
                except Exception as error:
                    for request in group:
                        if not request.done.done():
                            request.done.set_exception(error)
                else:
                    for request, result in zip(group, results, strict=True):
                        if not request.done.done():
                            request.done.set_result(result)
        finally:
            self._claiming = None

    async def _answer_full(self, group: list[_ClaimRequest]) -> list[_ClaimRequest]:
        """Answers, as still waiting, the requests whose models are all at their slot limit; returns
        the others. While a model is full (1,000 jobs at the provider, 20 messages waiting), each
        poll then costs one count instead of a claim transaction reading every waiting task."""
        limits = {
            model: self._slot_limits[model]
            for request in group
            for model in request.models
            if model in self._slot_limits
        }
        if not limits:
            return group
        full = await self._claims.models_at_limit(limits)
        claimable: list[_ClaimRequest] = []
        for request in group:
            if request.models and request.models <= full:
                request.done.set_result(ClaimResult([], request.task_ids, request.models))
            else:
                claimable.append(request)
        return claimable
