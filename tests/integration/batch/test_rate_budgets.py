"""Rate budgets and route choice on real PostgreSQL (ADR-148, ADR-149): workers drawing at once
from one budget never exceed it in any window, and a task goes to the next route when the first
is down or its budget is spent."""

from __future__ import annotations

import asyncio
import time
import uuid

from libs.db import Database
from services.batch.adapters.sql.breakers import ModelBreakers
from services.batch.adapters.sql.rate_budgets import RateBudgets
from services.batch.domain.breaker import BreakerPolicy
from services.batch.domain.provider import FailureType, ProviderFailure, ProviderJob, VideoAsset
from services.batch.domain.rate_budget import RateBudget
from services.batch.domain.routing import RoutePick, RoutePolicy, RouteWait
from services.batch.use_cases.breakers import ModelGate
from services.batch.use_cases.routing import BudgetHints, RouteChooser

WINDOW = RateBudget(limit=5, window_seconds=1.0, margin_seconds=0.1)
RULES = BreakerPolicy(failure_threshold=1, open_seconds=30, outage_limit_seconds=300, probe_seconds=5)


async def test_workers_drawing_at_once_never_exceed_the_budget_in_any_window(batch_database_url: str) -> None:
    budget = f"veo:model-{uuid.uuid4().hex[:8]}"
    # Three worker processes' pools, twelve tasks each, drawing as fast as they can for 2.5 s.
    pools = [Database(batch_database_url, pool_size=4) for _ in range(3)]
    granted: list[float] = []
    deadline = time.monotonic() + 2.5

    async def task(budgets: RateBudgets) -> None:
        while time.monotonic() < deadline:
            taken = await budgets.draw(budget, WINDOW)
            if taken.granted:
                granted.append(taken.grants[-1])
            else:
                await asyncio.sleep(min(taken.wait_seconds, 0.05))

    try:
        await asyncio.gather(*(task(RateBudgets(pool)) for pool in pools for _ in range(12)))
    finally:
        for pool in pools:
            await pool.close()
    granted.sort()
    busiest = max(sum(start <= at < start + WINDOW.window_seconds for at in granted) for start in granted)
    assert busiest == WINDOW.limit
    # Each span of 1.1 s gave its five calls: the budget is used, not only respected.
    assert 10 <= len(granted) <= 15


class Answering:
    async def generate(self, job: ProviderJob) -> VideoAsset:
        return VideoAsset("/dev/null", "http://v/1.mp4", 1)


async def test_a_task_goes_to_the_next_route_when_the_first_is_down_or_out_of_budget(
    batch_database_url: str,
) -> None:
    database = Database(batch_database_url, pool_size=4)
    model = f"veo-{uuid.uuid4().hex[:8]}"
    routes = [
        RoutePolicy("veo", model, f"veo:{model}", requests_per_minute=1),
        RoutePolicy("fal", f"{model}@fal", f"fal:{model}", requests_per_minute=1),
    ]
    breakers = ModelBreakers(database)
    chooser = RouteChooser(
        model,
        routes,
        {"veo": Answering(), "fal": Answering()},
        breakers=breakers,
        budgets=RateBudgets(database),
        breaker_policy=RULES,
        window_seconds=60.0,
        hints=BudgetHints(),
    )
    try:
        first = await chooser.pick(None, needs_budget=True)
        second = await chooser.pick(None, needs_budget=True)
        # Both budgets spent (one call a minute each): the next task waits, no draw at all now
        # that this process knows when they free up.
        third = await chooser.pick(None, needs_budget=True)
        assert isinstance(first, RoutePick) and isinstance(second, RoutePick)
        assert (first.route, second.route) == ("veo", "fal")
        assert isinstance(third, RouteWait) and 0 < third.seconds <= 1.0
        # Resuming a recorded job makes no create call: no budget needed.
        resumed = await chooser.pick("fal", needs_budget=False)
        assert isinstance(resumed, RoutePick) and resumed.route == "fal"

        # The first route's breaker opens: even a resumed-style pick skips it.
        await ModelGate(breakers, model, RULES).failed(ProviderFailure(FailureType.PROVIDER_ERROR, "503"))
        around = await chooser.pick(None, needs_budget=False)
        assert isinstance(around, RoutePick) and around.route == "fal"
        # A task pinned to the open route (a job in doubt there) waits for it instead.
        pinned = await chooser.pick("veo", needs_budget=False)
        assert isinstance(pinned, RouteWait)
    finally:
        await database.close()
