"""Provider slots shared by workers, fair dispatch, cancel of running tasks, deadlines, retry-failed.

Real PostgreSQL and RabbitMQ; the batch server and workers run in this event loop. These tests use
the model veo-3 so that sora-2 tasks other tests leave behind never take its provider slots.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import grpc
import psycopg
import pytest
from reelbatch.proto.batch.v1 import batch_pb2

from libs.config import Settings
from libs.price_list import ModelPricing
from tests.integration.batch.batch_harness import (
    FakeBillingServer,
    batch_server,
    batch_worker,
    eventually,
    rpc_reason,
    rpc_violations,
    tenant,
)

if TYPE_CHECKING:
    from tests.integration.batch.batch_harness import BatchStub as Stub

SettingsFactory = Callable[..., Settings]
MODEL = "veo-3"
PRICE = 20


def _limited(limit: int) -> dict[str, ModelPricing]:
    return {
        "sora-2": ModelPricing(credits_per_video=10),
        MODEL: ModelPricing(credits_per_video=PRICE, max_in_flight=limit),
    }


def _request(tenant_id: str, prompts: list[str], **fields: Any) -> batch_pb2.CreateBatchRequest:
    return batch_pb2.CreateBatchRequest(
        tenant_id=tenant_id,
        items=[batch_pb2.BatchItem(prompt=prompt, model=MODEL) for prompt in prompts],
        **fields,
    )


async def _batch(stub: Stub, tenant_id: str, batch_id: str) -> batch_pb2.Batch:
    return await stub.GetBatch(batch_pb2.GetBatchRequest(tenant_id=tenant_id, batch_id=batch_id))


async def _finished(stub: Stub, tenant_id: str, batch_id: str, timeout: float = 30) -> batch_pb2.Batch:
    async def done() -> batch_pb2.Batch | None:
        batch = await _batch(stub, tenant_id, batch_id)
        return batch if batch.finished_at.seconds else None

    return await eventually(done, timeout)


async def _scalar(sql: psycopg.AsyncConnection[Any], query: str, *params: object) -> Any:
    row = await (await sql.execute(query, params)).fetchone()
    assert row is not None
    return row[0]


async def test_running_tasks_of_a_model_never_exceed_its_limit_across_two_workers(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    settings = make_settings(
        pricing=_limited(3), simulated_latency_seconds=0.05, dispatch_chunk_size=5, worker_prefetch=4
    )
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 10_000
    samples: list[int] = []
    async with batch_server(settings) as stub, AsyncExitStack() as workers:
        for _ in range(2):
            await workers.enter_async_context(batch_worker(settings))
        created = await stub.CreateBatch(_request(tenant_id, [f"shot {n}" for n in range(40)]))

        async def sampled_until_finished() -> batch_pb2.Batch | None:
            samples.append(
                await _scalar(
                    sql, "SELECT count(*) FROM batch.tasks WHERE status = 'running' AND model = %s", MODEL
                )
            )
            batch = await _batch(stub, tenant_id, created.batch_id)
            return batch if batch.finished_at.seconds else None

        batch = await eventually(sampled_until_finished, 30)
    workers_used = await _scalar(
        sql, "SELECT count(DISTINCT claimed_by) FROM batch.tasks WHERE batch_id = %s", created.batch_id
    )
    assert (batch.status, batch.success_count) == ("completed", 40)
    assert max(samples) <= 3, samples
    assert max(samples) == 3, "the limit was never reached: the test would prove nothing"
    # Both workers recorded outcomes of the same batch.
    assert workers_used == 2


async def test_a_small_batch_of_another_tenant_finishes_while_a_large_one_still_runs(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    settings = make_settings(
        pricing=_limited(4),
        simulated_latency_seconds=0.05,
        dispatch_chunk_size=10,
        dispatch_window_chunks=2,
        tenant_dispatch_window_chunks=4,
    )
    big, small = tenant(), tenant()
    fake_billing.servicer.balances[big] = 100_000
    fake_billing.servicer.balances[small] = 1_000
    async with batch_server(settings) as stub, batch_worker(settings):
        large = await stub.CreateBatch(_request(big, [f"epic {n}" for n in range(400)]))
        await eventually(
            lambda: _scalar(
                sql,
                "SELECT nullif(count(*), 0) FROM batch.tasks WHERE batch_id = %s AND status = 'succeeded'",
                large.batch_id,
            )
        )
        # The window keeps most of the large batch out of the dispatch queue.
        dispatched = await _scalar(
            sql,
            "SELECT count(*) FROM batch.tasks WHERE batch_id = %s AND dispatched_at IS NOT NULL",
            large.batch_id,
        )
        little = await stub.CreateBatch(_request(small, [f"short {n}" for n in range(5)]))
        done = await _finished(stub, small, little.batch_id, timeout=20)
        large_then = await _batch(stub, big, large.batch_id)
        await stub.CancelBatch(batch_pb2.CancelBatchRequest(tenant_id=big, batch_id=large.batch_id))
        await _finished(stub, big, large.batch_id)
    assert (done.status, done.success_count) == ("completed", 5)
    assert dispatched <= 2 * 10 + 10, dispatched
    assert large_then.pending_count > 200, "the small batch should not have waited for the large one"


async def test_cancel_stops_running_and_retrying_tasks_and_ends_every_task(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    settings = make_settings(
        pricing=_limited(1000),
        simulated_latency_seconds=1.0,
        provider_timeout_seconds=5.0,
        retry_base_seconds=5.0,
        retry_max_seconds=5.0,
        cancel_check_seconds=0.1,
    )
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 10_000
    prompts = [f"slow {n}" for n in range(10)] + ["fragile #flaky"]
    async with batch_server(settings) as stub, batch_worker(settings):
        created = await stub.CreateBatch(_request(tenant_id, prompts))
        await eventually(
            lambda: _scalar(
                sql,
                "SELECT nullif(count(*) = 11, false) FROM batch.tasks "
                "WHERE batch_id = %s AND status = 'running'",
                created.batch_id,
            )
        )
        cancel = batch_pb2.CancelBatchRequest(tenant_id=tenant_id, batch_id=created.batch_id)
        await stub.CancelBatch(cancel)
        batch = await _finished(stub, tenant_id, created.batch_id, timeout=5)
        again = await stub.CancelBatch(cancel)
        tasks = (
            await stub.ListTasks(batch_pb2.ListTasksRequest(tenant_id=tenant_id, batch_id=created.batch_id))
        ).tasks
    assert (batch.status, batch.cancelled_count, batch.success_count) == ("cancelled", 11, 0)
    assert (batch.refunded_credits, batch.credits_spent) == (11 * PRICE, 0)
    assert {(t.status, t.failure_type, t.error_message) for t in tasks} == {
        ("cancelled", "cancelled", "cancelled while running")
    }
    assert again.cancelled_count == 11


async def test_a_deadline_cancels_what_is_unfinished_and_keeps_what_succeeded(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer
) -> None:
    settings = make_settings(
        pricing=_limited(2),
        simulated_latency_seconds=0.3,
        provider_timeout_seconds=5.0,
        cancel_check_seconds=0.1,
    )
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 10_000
    async with batch_server(settings) as stub, batch_worker(settings):
        created = await stub.CreateBatch(
            _request(tenant_id, [f"timed {n}" for n in range(30)], deadline_seconds=1)
        )
        batch = await _finished(stub, tenant_id, created.batch_id, timeout=10)
        cancelled = (
            await stub.ListTasks(
                batch_pb2.ListTasksRequest(tenant_id=tenant_id, batch_id=created.batch_id, status="cancelled")
            )
        ).tasks
    assert batch.status == "cancelled"
    assert batch.deadline_at.seconds - batch.created_at.seconds in (0, 1)
    assert 0 < batch.success_count < 30
    assert batch.success_count + batch.cancelled_count == 30
    assert {t.error_message for t in cancelled} == {"the batch deadline passed before it finished"}


async def test_a_deadline_outside_one_second_to_seven_days_is_refused(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer
) -> None:
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1_000
    async with batch_server(make_settings()) as stub:
        for deadline in (-1, 7 * 24 * 3600 + 1):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.CreateBatch(_request(tenant_id, ["x"], deadline_seconds=deadline))
            code, reason, _ = rpc_reason(refused.value)
            assert (code, reason, rpc_violations(refused.value)) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "validation_error",
                ["deadline_seconds"],
            )


async def test_retry_failed_makes_a_new_batch_of_the_failed_items_only_once(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer
) -> None:
    settings = make_settings(pricing=_limited(1000))
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 10_000
    # Timeouts, which a retry can change (content_policy failures are not retried by default).
    prompts = ["ok 0", "bad 1 #timeout", "ok 2", "bad 3 #timeout"]
    async with batch_server(settings) as stub:
        created = await stub.CreateBatch(_request(tenant_id, prompts, webhook_url="https://hooks.test/x"))
        retry = batch_pb2.RetryFailedRequest(tenant_id=tenant_id, batch_id=created.batch_id, request_id="r-1")
        with pytest.raises(grpc.aio.AioRpcError) as unfinished:
            await stub.RetryFailed(retry)
        async with batch_worker(settings):
            await _finished(stub, tenant_id, created.batch_id)
            retried = await stub.RetryFailed(retry)
            replay = await stub.RetryFailed(retry)
            second = await _finished(stub, tenant_id, retried.batch_id)
        items = (
            await stub.ListTasks(batch_pb2.ListTasksRequest(tenant_id=tenant_id, batch_id=retried.batch_id))
        ).tasks
        ok_batch = await stub.CreateBatch(_request(tenant_id, ["fine"]))
        async with batch_worker(settings):
            await _finished(stub, tenant_id, ok_batch.batch_id)
        with pytest.raises(grpc.aio.AioRpcError) as nothing_failed:
            await stub.RetryFailed(
                batch_pb2.RetryFailedRequest(tenant_id=tenant_id, batch_id=ok_batch.batch_id)
            )
        with pytest.raises(grpc.aio.AioRpcError) as elsewhere:
            await stub.RetryFailed(
                batch_pb2.RetryFailedRequest(tenant_id=tenant(), batch_id=created.batch_id)
            )
    assert rpc_reason(unfinished.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "batch_not_finished")
    assert (retried.total_count, retried.required_credits, retried.replayed) == (2, 2 * PRICE, False)
    assert (replay.batch_id, replay.replayed) == (retried.batch_id, True)
    assert retried.batch_id != created.batch_id
    assert [t.prompt for t in items] == ["bad 1 #timeout", "bad 3 #timeout"]
    assert (second.retry_of_batch_id, second.webhook_url) == (created.batch_id, "https://hooks.test/x")
    assert rpc_reason(nothing_failed.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "validation_error")
    assert rpc_reason(elsewhere.value)[0] == grpc.StatusCode.NOT_FOUND
    assert fake_billing.servicer.reserve_effects(retried.batch_id) == 1


async def test_recovery_tops_up_a_window_that_no_outcome_will_top_up(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    settings = make_settings(pricing=_limited(1000), dispatch_chunk_size=2, dispatch_window_chunks=1)
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 10_000
    async with batch_server(settings) as stub:
        created = await stub.CreateBatch(_request(tenant_id, [f"n {n}" for n in range(6)]))

        async def first_window() -> int | None:
            # Larger than its window: the first one is dispatched just after the answer (ADR-039).
            dispatched = await _scalar(
                sql,
                "SELECT count(*) FROM batch.tasks WHERE batch_id = %s AND dispatched_at IS NOT NULL",
                created.batch_id,
            )
            return dispatched or None

        first = await eventually(first_window)
        # As if the dispatched tasks had finished (and been counted) in a transaction that could
        # not top the window up.
        await sql.execute(
            "WITH done AS (UPDATE batch.tasks SET status = 'succeeded', finished_at = now() "
            "WHERE batch_id = %s AND dispatched_at IS NOT NULL RETURNING unit_price) "
            "UPDATE batch.batches SET succeeded_count = succeeded_count + (SELECT count(*) FROM done), "
            "credits_spent = credits_spent + (SELECT sum(unit_price) FROM done) WHERE id = %s",
            (created.batch_id, created.batch_id),
        )
        async with batch_worker(settings):
            batch = await _finished(stub, tenant_id, created.batch_id)
    assert first == 2
    assert (batch.status, batch.success_count) == ("completed", 6)


async def test_waiting_batches_are_dispatched_oldest_first_and_count_what_is_left_to_dispatch(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    # A tenant window of 4 tasks: two batches of 2 fill it, the other three wait for it.
    settings = make_settings(
        pricing=_limited(1000),
        simulated_latency_seconds=0.02,
        dispatch_chunk_size=2,
        dispatch_window_chunks=1,
        tenant_dispatch_window_chunks=2,
    )
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 10_000

    async def stored_and_actual() -> list[tuple[int, int]]:
        rows = await (
            await sql.execute(
                "SELECT b.undispatched_count, (SELECT count(*) FROM batch.tasks AS t WHERE t.batch_id = b.id"
                " AND t.status = 'queued' AND t.dispatched_at IS NULL) FROM batch.batches AS b"
                " WHERE b.tenant_id = %s ORDER BY b.created_at, b.id",
                (tenant_id,),
            )
        ).fetchall()
        return [(int(stored), int(actual)) for stored, actual in rows]

    async with batch_server(settings) as stub:
        created = [
            await stub.CreateBatch(_request(tenant_id, [f"b{b} n{n}" for n in range(2)])) for b in range(5)
        ]
        waiting = await stored_and_actual()
        await stub.CancelBatch(
            batch_pb2.CancelBatchRequest(tenant_id=tenant_id, batch_id=created[4].batch_id)
        )
        after_cancel = await stored_and_actual()
        async with batch_worker(settings):
            finished = [await _finished(stub, tenant_id, batch.batch_id) for batch in created]
        first_dispatch = await (
            await sql.execute(
                "SELECT b.id, min(t.dispatched_at) FROM batch.batches AS b JOIN batch.tasks AS t"
                " ON t.batch_id = b.id WHERE b.tenant_id = %s AND t.dispatched_at IS NOT NULL"
                " GROUP BY b.id, b.created_at ORDER BY b.created_at, b.id",
                (tenant_id,),
            )
        ).fetchall()
        at_the_end = await stored_and_actual()
    assert waiting == [(0, 0), (0, 0), (2, 2), (2, 2), (2, 2)]
    assert after_cancel == [(0, 0), (0, 0), (2, 2), (2, 2), (0, 0)]
    assert [batch.status for batch in finished] == ["completed"] * 4 + ["cancelled"]
    # Oldest first: each batch's first dispatch is no earlier than the one created before it.
    assert [str(batch_id) for batch_id, _ in first_dispatch] == [batch.batch_id for batch in created[:4]]
    times = [at for _, at in first_dispatch]
    assert times == sorted(times)
    assert at_the_end == [(0, 0)] * 5
