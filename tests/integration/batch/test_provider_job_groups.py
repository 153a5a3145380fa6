"""A worker starting thousands of provider jobs at once (ADR-161), on a real PostgreSQL: the job
journal's writes share transactions instead of taking a pooled connection each, one bad write
fails only its own job, and the breaker look every attempt takes is one read per model in flight.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest

from libs.db import Database
from services.batch.adapters.sql.breakers import ModelBreakers
from services.batch.adapters.sql.provider_jobs import AttemptJournal, ProviderJobs
from services.batch.domain.batch import BatchId, TaskId
from services.batch.domain.breaker import BreakerPolicy, BreakerState
from services.batch.domain.provider import FailureType, ProviderFailure
from services.batch.domain.provider_jobs import ProviderJobStatus
from services.batch.use_cases.breakers import ModelGate
from tests.integration.batch.test_worker_transactions import _model, _queued_batch

JOBS = 300


class CountingDatabase(Database):
    """The real database, counting how often a pooled connection is taken."""

    checkouts = 0

    @asynccontextmanager
    async def raw_connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        self.checkouts += 1
        async with super().raw_connection() as conn:
            yield conn


@pytest.fixture
async def database(batch_database_url: str) -> AsyncIterator[CountingDatabase]:
    database = CountingDatabase(batch_database_url, pool_size=2)
    try:
        yield database
    finally:
        await database.close()


def _journal(jobs: ProviderJobs, batch_id: BatchId, task_id: TaskId, model: str) -> AttemptJournal:
    return jobs.journal(
        task_id=task_id,
        batch_id=batch_id,
        attempt=1,
        model=model,
        claim_token=uuid.uuid4(),
        cost_usd_micros=7,
    )


async def _job_life(journal: AttemptJournal, job_id: str) -> None:
    await journal.intend("replicate", None)
    await journal.submitted(job_id, job_id)
    await journal.finished(ProviderJobStatus.SUCCEEDED)


async def test_the_writes_of_jobs_starting_together_share_a_few_transactions(
    database: CountingDatabase, sql: psycopg.AsyncConnection[Any]
) -> None:
    model = _model()
    batch_id, ids = await _queued_batch(sql, model, JOBS)
    jobs = ProviderJobs(database)
    await asyncio.gather(
        *(_job_life(_journal(jobs, batch_id, task_id, model), f"job-{n}") for n, task_id in enumerate(ids))
    )
    # 900 writes (intent, job id, end of 300 jobs): each group takes one connection, so a burst
    # needs a handful of checkouts where it needed 900 (and a 10-connection pool timed out).
    assert database.checkouts <= 12, database.checkouts
    rows = await (
        await sql.execute(
            "SELECT status, count(*), count(provider_job_id), sum(cost_usd_micros)"
            " FROM batch.provider_jobs WHERE batch_id = %s GROUP BY status",
            (batch_id,),
        )
    ).fetchall()
    assert rows == [("succeeded", JOBS, JOBS, 7 * JOBS)]


async def test_a_write_the_database_refuses_fails_its_own_job_only(
    database: CountingDatabase, sql: psycopg.AsyncConnection[Any]
) -> None:
    model = _model()
    batch_id, ids = await _queued_batch(sql, model, 21)
    jobs = ProviderJobs(database)
    journals = [_journal(jobs, batch_id, task_id, model) for task_id in ids]
    await asyncio.gather(*(journal.intend("replicate", None) for journal in journals))
    # A provider's error text with a NUL byte (PostgreSQL text cannot hold one), among 20 ends
    # written in the same group.
    bad = ProviderFailure(FailureType.PROVIDER_ERROR, "render crashed\x00")
    outcomes = await asyncio.gather(
        *(
            journal.finished(ProviderJobStatus.FAILED, bad if n == 10 else None)
            for n, journal in enumerate(journals)
        ),
        return_exceptions=True,
    )
    assert [n for n, outcome in enumerate(outcomes) if outcome is not None] == [10]
    assert isinstance(outcomes[10], psycopg.DataError)
    rows = await (
        await sql.execute(
            "SELECT status, count(*) FROM batch.provider_jobs WHERE batch_id = %s GROUP BY status ORDER BY 1",
            (batch_id,),
        )
    ).fetchall()
    assert rows == [("failed", 20), ("submitting", 1)]


async def test_many_attempts_looking_at_once_read_the_breaker_once(database: CountingDatabase) -> None:
    breakers = ModelBreakers(database, recent_seconds=60.0)
    model = _model()
    looks = await asyncio.gather(*(breakers.recent(model) for _ in range(500)))
    assert database.checkouts == 1
    assert {breaker.state for breaker, _ in looks} == {BreakerState.CLOSED}
    # The clock of a remembered read moves on with ours.
    (_, first), (_, later) = looks[0], await breakers.recent(model)
    assert later >= first


async def test_a_change_is_seen_at_once_here_and_within_the_recent_window_elsewhere(
    batch_database_url: str,
) -> None:
    here_db, there_db = Database(batch_database_url, pool_size=2), Database(batch_database_url, pool_size=2)
    now = [0.0]
    here = ModelBreakers(here_db, recent_seconds=1.0, clock=lambda: now[0])
    there = ModelBreakers(there_db, recent_seconds=1.0, clock=lambda: now[0])
    model = _model()
    try:
        assert (await there.recent(model))[0].state is BreakerState.CLOSED
        await here.change(model, lambda breaker, _now: breaker.__class__(model, BreakerState.OPEN, 5))
        assert (await here.recent(model))[0].state is BreakerState.OPEN
        # Another worker answers from its read for up to `recent_seconds`, then reads again.
        assert (await there.recent(model))[0].state is BreakerState.CLOSED
        now[0] = 1.5
        assert (await there.recent(model))[0].state is BreakerState.OPEN
        assert (await there.read(model))[0].state is BreakerState.OPEN
    finally:
        await here_db.close()
        await there_db.close()


async def test_attempts_failing_together_count_in_a_few_transactions_and_open_the_breaker_once(
    database: CountingDatabase,
) -> None:
    breakers = ModelBreakers(database)
    model = _model()
    gate = ModelGate(breakers, model, BreakerPolicy(failure_threshold=5, open_seconds=30))
    down = ProviderFailure(FailureType.TIMEOUT, "provider did not answer within 300s")
    forgiven = await asyncio.gather(*(gate.failed(down) for _ in range(1000)))
    # Each change waited for a connection and the row's lock: 1,000 timeouts at once emptied the
    # pool for 30 s (ADR-161). Now a handful of transactions, counting every failure in order.
    assert database.checkouts <= 10, database.checkouts
    breaker, _ = await breakers.read(model)
    assert (breaker.state, breaker.failures, breaker.opens) == (BreakerState.OPEN, 1000, 1)
    assert forgiven == [False] * 4 + [True] * 996
