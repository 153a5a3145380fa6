"""A worker's dispatch messages waiting for provider slots poll on one clock (ADR-038).

The repository is a fake that never frees a slot: what is counted is how many claim
transactions the waiting messages cost, and that a model known to be full costs a count instead.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

from services.batch.adapters.sql.cancel import BatchCancels
from services.batch.adapters.sql.claims import TaskClaims
from services.batch.domain.batch import BatchId, TaskId
from services.batch.domain.execution import ClaimResult
from services.batch.domain.retry import BackoffPolicy
from services.batch.use_cases.execution import ClaimPacing, TaskExecutor
from services.batch.use_cases.outcomes import OutcomeWriter

MODEL = "sora-2"


class FullModel:
    """Every claim finds the model's slots taken; `full` says whether the count sees it full."""

    def __init__(self, *, full: bool) -> None:
        self.full = full
        self.claim_transactions = 0
        self.counts = 0

    async def claim_dispatches(
        self, dispatches: Sequence[tuple[BatchId, Sequence[TaskId]]], *args: Any, **kwargs: Any
    ) -> list[ClaimResult]:
        self.claim_transactions += 1
        return [ClaimResult([], list(ids), frozenset({MODEL})) for _, ids in dispatches]

    async def models_at_limit(self, slot_limits: Mapping[str, int]) -> set[str]:
        self.counts += 1
        return set(slot_limits) if self.full else set()


async def _wait_for_slots(repository: FullModel, messages: int, seconds: float) -> None:
    executor = TaskExecutor(
        cast(TaskClaims, repository),
        cast(BatchCancels, repository),
        OutcomeWriter(cast(TaskClaims, repository)),
        {},
        {},
        concurrency=10,
        lease_seconds=30,
        provider_timeout_seconds=1,
        backoff=BackoffPolicy(base_seconds=0.01, cap_seconds=0.01),
        slot_limits={MODEL: 1},
        pacing=ClaimPacing(first_seconds=0.02, max_seconds=0.02),
    )
    waiting = []
    for _ in range(messages):
        # Messages arrive a little apart, as deliveries do: clocks of their own would be out of step.
        waiting.append(
            asyncio.create_task(executor.execute_dispatch(BatchId(uuid.uuid4()), [TaskId(uuid.uuid4())]))
        )
        await asyncio.sleep(0.002)
    await asyncio.sleep(seconds)
    executor.stop_claiming()
    results = await asyncio.gather(*waiting)
    assert [(result.ran, result.unclaimed) for result in results] == [(0, 1)] * messages


async def test_twenty_waiting_messages_poll_together_not_each_on_its_own_clock() -> None:
    repository = FullModel(full=False)
    await _wait_for_slots(repository, messages=20, seconds=0.3)
    # ~17 polls of 20 ms in 0.34 s, each one transaction for all 20 messages (a clock each: ~300).
    assert 5 <= repository.claim_transactions <= 60


async def test_while_the_model_is_full_a_poll_is_a_count_not_a_claim_transaction() -> None:
    repository = FullModel(full=True)
    await _wait_for_slots(repository, messages=20, seconds=0.3)
    # The first claim of each message reads its tasks (they arrive apart); after that, polls only
    # count (a claim transaction per poll: ~170).
    assert repository.claim_transactions <= 20
    assert repository.counts >= 5
