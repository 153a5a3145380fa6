"""A worker told to stop hands back the tasks it could not finish within its grace period (ADR-139):
queued and dispatched again at once, so another worker claims them long before their lease would
expire, and the hand-back is not counted as a lost claim. (The same with real processes and
SIGTERM: tests/scale/test_drain_on_shutdown.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import psycopg
from reelbatch.proto.batch.v1 import batch_pb2

from libs.config import Settings
from services.batch.entrypoints.worker import run_worker
from tests.integration.batch.batch_harness import (
    FakeBillingServer,
    batch_server,
    batch_worker,
    eventually,
    tenant,
)

SettingsFactory = Callable[..., Settings]
TASKS = 100
LEASE_SECONDS = 60.0


async def _claimed_by(sql: psycopg.AsyncConnection[Any], batch_id: str) -> dict[tuple[str, str], int]:
    cursor = await sql.execute(
        "SELECT claimed_by, status, count(*) FROM batch.tasks WHERE batch_id = %s GROUP BY 1, 2", (batch_id,)
    )
    return {(str(row[0]), str(row[1])): int(row[2]) for row in await cursor.fetchall()}


async def test_a_stopping_worker_hands_its_running_tasks_to_another_at_once(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 10 * TASKS
    # A prefetch above the dispatch messages other tests of the session may have left queued.
    slow = make_settings(
        simulated_latency_seconds=120.0,
        provider_timeout_seconds=300.0,
        task_lease_seconds=LEASE_SECONDS,
        worker_prefetch=64,
    )
    fast = make_settings(task_lease_seconds=LEASE_SECONDS, batch_grpc_addr=slow.batch_grpc_addr)
    async with batch_server(slow) as stub:
        stopping, ready = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(run_worker(slow, stopping, ready, grace_seconds=0.5))
        await ready.wait()
        created = await stub.CreateBatch(
            batch_pb2.CreateBatchRequest(
                tenant_id=tenant_id,
                items=[batch_pb2.BatchItem(prompt=f"shot {n}", model="sora-2") for n in range(TASKS)],
            )
        )

        async def all_running() -> str | None:
            held = await _claimed_by(sql, created.batch_id)
            return next(
                (worker for (worker, status), n in held.items() if status == "running" and n == TASKS), None
            )

        holder = await eventually(all_running)
        async with batch_worker(fast):
            stopping.set()
            began = time.monotonic()
            await asyncio.wait_for(first, 30)
            stopped = time.monotonic() - began

            async def taken_over() -> bool | None:
                held = await _claimed_by(sql, created.batch_id)
                return (
                    True if sum(n for (worker, _), n in held.items() if worker != holder) == TASKS else None
                )

            await eventually(taken_over, timeout=10)
            taken = time.monotonic() - began - stopped

            async def all_succeeded() -> bool | None:
                held = await _claimed_by(sql, created.batch_id)
                return (
                    True
                    if sum(n for (_, status), n in held.items() if status == "succeeded") == TASKS
                    else None
                )

            await eventually(all_succeeded, timeout=30)
        cursor = await sql.execute(
            "SELECT claims, handbacks, count(*) FROM batch.tasks WHERE batch_id = %s GROUP BY 1, 2",
            (created.batch_id,),
        )
        counts = await cursor.fetchall()

    assert stopped < 5.0, "grace 0.5 s, then the hand-back"
    assert taken < 5.0 < LEASE_SECONDS, "every task was claimed again long before its lease expired"
    assert counts == [(2, 1, TASKS)], "claimed twice, handed back once (not a lost claim)"
