"""A job still running for a task that ended (its batch cancelled while no worker watched it) is
stopped where the provider can stop jobs, and recorded as abandoned where it cannot (ADR-110)."""

from __future__ import annotations

import uuid

import psycopg

from libs.db import Database
from services.batch.adapters.sql.provider_jobs import ProviderJobs
from services.batch.domain.batch import BatchId, TaskId
from services.batch.domain.provider import ProviderJob
from services.batch.use_cases.orphan_jobs import OrphanedJobs
from tests.fakes.provider_state import Scenario
from tests.integration.providers.conftest import ProviderRig
from tests.integration.providers.test_provider_journal import JournalLog


def _cancelled_task_with_a_running_job(
    database_url: str, provider: str, job_id: str, handle: str
) -> uuid.UUID:
    batch_id, task_id, tenant_id, row_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO batch.batches (id, tenant_id, request_fingerprint, status, total_count, "
            "required_credits, cancel_requested, finished_at) "
            "VALUES (%s, %s, 'f', 'cancelled', 1, 20, true, now() - interval '1 hour')",
            (batch_id, tenant_id),
        )
        conn.execute(
            "INSERT INTO batch.tasks (id, batch_id, tenant_id, batch_index, prompt, model, unit_price, "
            "status, finished_at) VALUES (%s, %s, %s, 0, 'endless', 'veo-3', 20, 'cancelled', "
            "now() - interval '1 hour')",
            (task_id, batch_id, tenant_id),
        )
        conn.execute(
            "INSERT INTO batch.provider_jobs (id, task_id, batch_id, attempt, provider, model, status, "
            "provider_job_id, handle) VALUES (%s, %s, %s, 1, %s, 'veo-3', 'running', %s, %s)",
            (row_id, task_id, batch_id, provider, job_id, handle),
        )
    return row_id


def _status(database_url: str, row_id: uuid.UUID) -> str:
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT status FROM batch.provider_jobs WHERE id = %s", (row_id,)).fetchone()
    assert row is not None
    return str(row[0])


async def test_a_running_job_of_a_cancelled_task_is_stopped_or_abandoned_by_the_sweep(
    rig: ProviderRig, batch_database_url: str
) -> None:
    rig.fake.script("endless", Scenario(hang=True))
    adapter = rig.adapter()
    journal = JournalLog(rig)
    job = ProviderJob(TaskId(uuid.uuid4()), BatchId(uuid.uuid4()), "endless", "veo-3", 1)
    await adapter._create(job, journal)
    assert journal.handle is not None
    row_id = _cancelled_task_with_a_running_job(
        batch_database_url, rig.name, str(journal.entries[-1][1]), journal.handle
    )
    database = Database(batch_database_url, pool_size=2)
    try:
        sweep = OrphanedJobs(ProviderJobs(database), {rig.name: adapter}, interval_seconds=1, grace_seconds=1)
        stopped = await sweep.stop_once()
        assert await sweep.stop_once() == 0  # taken once, by one sweep
    finally:
        await database.close()
    if adapter.cancels_jobs:
        assert (stopped, _status(batch_database_url, row_id)) == (1, "cancelled")
        assert rig.fake.cancels == list(rig.fake.jobs)
    else:
        assert (stopped, _status(batch_database_url, row_id)) == (0, "abandoned")
        assert rig.fake.cancels == []
