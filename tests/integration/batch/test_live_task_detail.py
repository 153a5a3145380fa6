"""A running task's live detail (issue 25): when it started, the attempt under way, when a retry
starts and what the last attempt said; a finished task's credits charged or refunded.

Real PostgreSQL and RabbitMQ; the batch server and a worker run in this event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
from reelbatch.proto.batch.v1 import batch_pb2

from libs.config import Settings
from libs.price_list import ModelPricing
from tests.integration.batch.batch_harness import (
    FakeBillingServer,
    batch_server,
    batch_worker,
    eventually,
    tenant,
)

SettingsFactory = Callable[..., Settings]
MODEL = "veo-3"
PRICE = 20


async def test_a_task_waiting_to_retry_shows_its_attempt_next_retry_and_last_error(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    # The first attempt of a #flaky prompt fails transiently; the retry waits up to an hour (full
    # jitter: below 3 s one time in 1,200), long enough to read the task while it waits.
    settings = make_settings(
        pricing={MODEL: ModelPricing(credits_per_video=PRICE), "sora-2": ModelPricing(credits_per_video=10)},
        retry_base_seconds=3600,
        retry_max_seconds=3600,
        simulated_latency_seconds=0.01,
    )
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1_000
    async with batch_server(settings) as stub, batch_worker(settings):
        created = await stub.CreateBatch(
            batch_pb2.CreateBatchRequest(
                tenant_id=tenant_id,
                items=[
                    batch_pb2.BatchItem(prompt="a storm #flaky", model=MODEL),
                    batch_pb2.BatchItem(prompt="a calm sea", model=MODEL),
                ],
            )
        )
        listing = batch_pb2.ListTasksRequest(tenant_id=tenant_id, batch_id=created.batch_id)

        async def waiting() -> batch_pb2.Task | None:
            task = (await stub.ListTasks(listing)).tasks[0]
            return task if task.HasField("next_attempt_at") else None

        task = await eventually(waiting, 15)
        assert (task.status, task.attempts, task.current_attempt) == ("running", 1, 2)
        assert task.last_error == "provider error on attempt 1 (simulated)"
        assert task.HasField("started_at")
        wait = task.next_attempt_at.seconds - time.time()
        assert 0 < wait <= 3600, wait
        assert (task.credits_charged, task.credits_refunded) == (0, 0)

        await stub.CancelBatch(batch_pb2.CancelBatchRequest(tenant_id=tenant_id, batch_id=created.batch_id))

        async def finished() -> list[batch_pb2.Task] | None:
            tasks = list((await stub.ListTasks(listing)).tasks)
            return tasks if all(task.HasField("finished_at") for task in tasks) else None

        stopped, calm = await eventually(finished, 15)
    assert (stopped.status, stopped.current_attempt) == ("cancelled", 0)
    assert not stopped.HasField("next_attempt_at")
    assert (stopped.credits_charged, stopped.credits_refunded) == (0, PRICE)
    assert stopped.last_error == "provider error on attempt 1 (simulated)"  # stays readable
    assert (calm.status, calm.credits_charged, calm.credits_refunded) == ("succeeded", PRICE, 0)
    assert calm.HasField("started_at") and not calm.last_error
