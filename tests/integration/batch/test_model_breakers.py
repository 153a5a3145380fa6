"""The shared breaker table (ADR-113) on real PostgreSQL: counts from concurrent workers add up,
and of many tasks asking at once when a probe is due exactly one becomes the probe."""

from __future__ import annotations

import asyncio
import uuid

from libs.db import Database
from services.batch.adapters.sql.breakers import ModelBreakers
from services.batch.domain.breaker import BreakerPolicy, BreakerState
from services.batch.domain.provider import FailureType, ProviderFailure
from services.batch.use_cases.breakers import ModelGate

RULES = BreakerPolicy(failure_threshold=3, open_seconds=0.3, outage_limit_seconds=30, probe_seconds=5)
DOWN = ProviderFailure(FailureType.PROVIDER_ERROR, "503")


async def test_concurrent_failures_open_the_breaker_once_and_one_probe_of_many_askers_runs(
    batch_database_url: str,
) -> None:
    database = Database(batch_database_url, pool_size=5)
    breakers = ModelBreakers(database)
    model = f"model-{uuid.uuid4().hex[:8]}"
    gate = ModelGate(breakers, model, RULES)
    try:
        forgiven = await asyncio.gather(*(gate.failed(DOWN) for _ in range(10)))
        breaker, _ = await breakers.read(model)
        assert (breaker.state, breaker.failures, breaker.opens) == (BreakerState.OPEN, 10, 1)
        # The first two failures cost their tasks an attempt; the others came once it was open.
        assert sorted(forgiven) == [False, False] + [True] * 8
        assert [
            found.breaker.model for found in await breakers.degraded() if found.breaker.model == model
        ] == [model]

        # Every asker waits out the open period; exactly one is let through, as the probe.
        askers = [asyncio.create_task(gate.admit()) for _ in range(8)]
        done, pending = await asyncio.wait(askers, timeout=2.0)
        assert [task.result() for task in done] == [None]
        assert len(pending) == 7
        breaker, _ = await breakers.read(model)
        assert breaker.state is BreakerState.HALF_OPEN

        # The probe succeeds: the breaker closes and the waiting askers go.
        await gate.succeeded()
        finished, still = await asyncio.wait(pending, timeout=3.0)
        assert (len(finished), len(still)) == (7, 0)
        breaker, _ = await breakers.read(model)
        assert (breaker.state, breaker.failures, breaker.opens) == (BreakerState.CLOSED, 0, 1)
        assert model not in {found.breaker.model for found in await breakers.degraded()}
    finally:
        await database.close()
