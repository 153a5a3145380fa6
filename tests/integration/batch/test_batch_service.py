"""CreateBatch to BatchFinished through real PostgreSQL, RabbitMQ, workers and the recovery loop."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aio_pika
import grpc
import psycopg
import pytest
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.events.v1 import events_pb2

from libs.config import Settings
from libs.messaging.contract import DISPATCH_QUEUE, Envelope
from libs.messaging.rabbit import RabbitBus
from services.batch import bootstrap as batch_bootstrap
from services.batch.adapters.billing_client import MemoizedQuotes
from services.batch.entrypoints.worker import run_worker
from tests.integration.batch.batch_harness import (
    EventTap,
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


def _request(tenant_id: str, prompts: list[str], request_id: str = "", model: str = "sora-2") -> Any:
    return batch_pb2.CreateBatchRequest(
        tenant_id=tenant_id,
        request_id=request_id,
        items=[batch_pb2.BatchItem(prompt=prompt, model=model) for prompt in prompts],
    )


async def _finished(stub: Stub, tenant_id: str, batch_id: str) -> batch_pb2.Batch:
    async def done() -> batch_pb2.Batch | None:
        batch = await stub.GetBatch(batch_pb2.GetBatchRequest(tenant_id=tenant_id, batch_id=batch_id))
        finished: batch_pb2.Batch | None = batch if batch.finished_at.seconds else None
        return finished

    return await eventually(done)


async def _tasks(stub: Stub, tenant_id: str, batch_id: str, status: str = "") -> list[batch_pb2.Task]:
    found: list[batch_pb2.Task] = []
    cursor = ""
    while True:
        page = await stub.ListTasks(
            batch_pb2.ListTasksRequest(
                tenant_id=tenant_id, batch_id=batch_id, status=status, cursor=cursor, limit=7
            )
        )
        found += page.tasks
        if not page.next_cursor:
            return found
        cursor = page.next_cursor


async def test_a_batch_runs_to_partial_with_one_content_policy_failure(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, event_tap: EventTap
) -> None:
    settings = make_settings(dispatch_chunk_size=8)
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    prompts = [f"a cat number {n}" for n in range(20)]
    prompts[13] = "a forbidden cat #fail"
    async with batch_server(settings) as stub:
        created = await stub.CreateBatch(_request(tenant_id, prompts, "req-partial"))
        assert (created.status, created.total_count, created.required_credits) == ("queued", 20, 200)
        assert (created.cost_per_video, created.available_credits, created.replayed) == (10, 1000, False)

        dispatches = await event_tap.wait_for("task.dispatch", created.batch_id, count=3)
        assert [len(d.task_ids) for d in dispatches] == [8, 8, 4]
        async with batch_worker(settings):
            finished = await event_tap.wait_for("batch.finished", created.batch_id)
            batch = await _finished(stub, tenant_id, created.batch_id)

        succeeded = event_tap.of("task.succeeded", created.batch_id)
        failed = event_tap.of("task.failed", created.batch_id)
        assert len(succeeded) == 19
        assert [(f.batch_index, f.failure_type, f.attempts, f.unit_price) for f in failed] == [
            (13, "content_policy", 1, 10)
        ]
        assert failed[0].error_message == "blocked by content policy (simulated)"
        assert len(event_tap.of("batch.queued", created.batch_id)) == 1
        assert (finished[0].status, finished[0].success_count, finished[0].failed_count) == ("partial", 19, 1)

        assert batch.status == "partial"
        assert (batch.success_count, batch.failed_count, batch.cancelled_count, batch.pending_count) == (
            19,
            1,
            0,
            0,
        )
        assert (batch.frozen_credits, batch.credits_spent, batch.refunded_credits) == (200, 190, 10)
        tasks = await _tasks(stub, tenant_id, created.batch_id)
        assert [task.batch_index for task in tasks] == list(range(20))
        assert tasks[0].video_url == f"http://videos.test/videos/{created.batch_id}/{tasks[0].task_id}.mp4"
        assert [t.batch_index for t in await _tasks(stub, tenant_id, created.batch_id, "failed")] == [13]


async def test_reads_are_scoped_to_the_tenant_and_admin_sees_all(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer
) -> None:
    owner, stranger = tenant(), tenant()
    fake_billing.servicer.balances[owner] = 1000
    async with batch_server(make_settings()) as stub:
        created = [await stub.CreateBatch(_request(owner, ["a", "b", "c"])) for _ in range(3)]
        batch_id = created[0].batch_id
        for call in (
            stub.GetBatch(batch_pb2.GetBatchRequest(tenant_id=stranger, batch_id=batch_id)),
            stub.ListTasks(batch_pb2.ListTasksRequest(tenant_id=stranger, batch_id=batch_id)),
            stub.CancelBatch(batch_pb2.CancelBatchRequest(tenant_id=stranger, batch_id=batch_id)),
            stub.GetBatch(batch_pb2.GetBatchRequest(tenant_id=owner, batch_id="not-a-uuid")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert rpc_reason(refused.value)[0] == grpc.StatusCode.NOT_FOUND
        admin_view = await stub.GetBatch(batch_pb2.GetBatchRequest(tenant_id="", batch_id=batch_id))
        assert admin_view.tenant_id == owner
        # The scope check and the page are one statement: an empty page of the owner's batch is
        # still an answer, and the admin scope (no tenant) sees every task.
        none_failed = await stub.ListTasks(
            batch_pb2.ListTasksRequest(tenant_id=owner, batch_id=batch_id, status="failed")
        )
        assert (list(none_failed.tasks), none_failed.next_cursor) == ([], "")
        admin_tasks = await stub.ListTasks(batch_pb2.ListTasksRequest(tenant_id="", batch_id=batch_id))
        assert [task.batch_index for task in admin_tasks.tasks] == [0, 1, 2]
        assert {task.batch_id for task in admin_tasks.tasks} == {batch_id}

        first = await stub.ListBatches(batch_pb2.ListBatchesRequest(tenant_id=owner, limit=2))
        second = await stub.ListBatches(
            batch_pb2.ListBatchesRequest(tenant_id=owner, cursor=first.next_cursor)
        )
        listed = [b.batch_id for b in [*first.batches, *second.batches]]
        assert listed == [c.batch_id for c in reversed(created)]
        assert second.next_cursor == ""
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListBatches(batch_pb2.ListBatchesRequest(tenant_id=owner, cursor="garbage!"))
        assert rpc_reason(refused.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "validation_error")


async def test_the_same_request_id_ten_times_at_once_makes_one_batch_and_one_reservation(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    request = _request(tenant_id, ["a cat", "a dog", "a cow"], "req-concurrent")
    async with batch_server(make_settings()) as stub:
        responses = await asyncio.gather(*(stub.CreateBatch(request) for _ in range(10)))
        replay = await stub.CreateBatch(request)

        batch_id = responses[0].batch_id
        assert [r.replayed for r in responses].count(False) == 1
        assert replay.replayed
        for response in [*responses, replay]:
            response.replayed = False
            assert response.SerializeToString() == responses[0].SerializeToString()
        assert fake_billing.servicer.reserve_effects(batch_id) == 1
        assert fake_billing.servicer.balances[tenant_id] == 970
        rows = await (
            await sql.execute("SELECT count(*) FROM batch.batches WHERE tenant_id = %s", (tenant_id,))
        ).fetchone()
        assert rows == (1,)

        other_body = _request(tenant_id, ["a cat", "a dog", "a horse"], "req-concurrent")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateBatch(other_body)
        assert rpc_reason(refused.value)[:2] == (grpc.StatusCode.ALREADY_EXISTS, "idempotency_key_reused")


@pytest.mark.parametrize("billing_has_reserve_many", [True, False], ids=["reserve-many", "previous-billing"])
async def test_concurrent_creates_of_one_wallet_are_queued_together_and_only_what_it_cannot_cover_is_refused(
    make_settings: SettingsFactory,
    fake_billing: FakeBillingServer,
    event_tap: EventTap,
    sql: psycopg.AsyncConnection[Any],
    billing_has_reserve_many: bool,
) -> None:
    # Reservations travel in shared ReserveMany calls; a billing without it (rolling deploy) is
    # asked one Reserve each, with the same outcome.
    fake_billing.servicer.reserve_many_supported = billing_has_reserve_many
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 250  # eight batches of 3 items at 10 credits
    requests = [_request(tenant_id, [f"shot {i}-{n}" for n in range(3)], f"req-group-{i}") for i in range(10)]
    # The recovery loop must not resume these live reservations (the suite's grace of 0 s lets it
    # ask again for a batch a loaded host has not finished reserving, which counts a call twice).
    settings = make_settings(dispatch_chunk_size=2, reserving_grace_seconds=60.0)
    async with batch_server(settings) as stub:
        results = await asyncio.gather(*(stub.CreateBatch(r) for r in requests), return_exceptions=True)

        accepted = [r for r in results if isinstance(r, batch_pb2.CreateBatchResponse)]
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert (len(accepted), len(refused)) == (8, 2)
        assert {rpc_reason(error)[1] for error in refused} == {"insufficient_credits"}
        assert {r.status for r in accepted} == {"queued"}
        assert fake_billing.servicer.balances[tenant_id] == 10
        # Each reservation was asked exactly once (in a group of any size), or never in a group.
        assert sum(fake_billing.servicer.reserve_many_calls) == (10 if billing_has_reserve_many else 0)
        statuses = await (
            await sql.execute(
                "SELECT status, count(*) FROM batch.batches WHERE tenant_id = %s"
                " GROUP BY status ORDER BY status",
                (tenant_id,),
            )
        ).fetchall()
        assert statuses == [("queued", 8), ("rejected", 2)]
        dispatched = await (
            await sql.execute(
                "SELECT count(*) FROM batch.tasks WHERE tenant_id = %s AND dispatched_at IS NOT NULL",
                (tenant_id,),
            )
        ).fetchone()
        assert dispatched == (24,)
        for response in accepted:
            [queued] = await event_tap.wait_for("batch.queued", response.batch_id)
            assert (queued.total_count, queued.required_credits) == (3, 30)
            dispatches = await event_tap.wait_for("task.dispatch", response.batch_id, count=2)
            assert sorted(len(d.task_ids) for d in dispatches) == [1, 2]


async def test_a_generated_request_id_reused_by_the_client_replays_its_batch(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer
) -> None:
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    first = _request(tenant_id, ["a cat", "a dog"], "gen-0f3a")
    first.request_id_generated = True
    async with batch_server(make_settings()) as stub:
        created = await stub.CreateBatch(first)
        replay = await stub.CreateBatch(_request(tenant_id, ["a cat", "a dog"], "gen-0f3a"))

    assert (created.replayed, replay.replayed, replay.batch_id) == (False, True, created.batch_id)
    assert fake_billing.servicer.reserve_effects(created.batch_id) == 1


async def test_invalid_requests_and_unknown_models_are_refused_before_anything_is_stored(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    async with batch_server(make_settings()) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateBatch(_request(tenant_id, ["fine", "bad\x00prompt"]))
        code, reason, _ = rpc_reason(refused.value)
        assert (code, reason, rpc_violations(refused.value)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "validation_error",
            ["items[1].prompt"],
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateBatch(_request(tenant_id, ["fine", "also fine"], model="no-such-model"))
        code, reason, _ = rpc_reason(refused.value)
        # Billing refuses the line; the batch service names every item that asked for it.
        assert (code, reason, rpc_violations(refused.value)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "validation_error",
            ["items[0].model", "items[1].model"],
        )
    rows = await (
        await sql.execute("SELECT count(*) FROM batch.batches WHERE tenant_id = %s", (tenant_id,))
    ).fetchone()
    assert rows == (0,)


async def test_insufficient_credits_reject_the_batch_without_tasks_or_dispatch(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, event_tap: EventTap
) -> None:
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 50
    request = _request(tenant_id, [f"cat {n}" for n in range(10)], "req-poor")
    async with batch_server(make_settings()) as stub:
        refusals = []
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.CreateBatch(request)
            refusals.append(rpc_reason(refused.value))
        assert refusals[0] == refusals[1]
        code, reason, details = refusals[0]
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "insufficient_credits")
        assert (details["required_credits"], details["available_credits"]) == ("100", "50")

        listed = await stub.ListBatches(batch_pb2.ListBatchesRequest(tenant_id=tenant_id, status="rejected"))
        assert len(listed.batches) == 1
        rejected = listed.batches[0]
        assert (rejected.total_count, rejected.pending_count, rejected.frozen_credits) == (10, 0, 0)
        assert await _tasks(stub, tenant_id, rejected.batch_id) == []

        # Events leave the outbox in order: once a later batch is queued, anything of the
        # rejected one would have been published before it.
        fake_billing.servicer.balances[tenant_id] = 500
        later = await stub.CreateBatch(_request(tenant_id, ["a dog"]))
        await event_tap.wait_for("task.dispatch", later.batch_id)
        assert [key for key, m in event_tap.seen if getattr(m, "batch_id", "") == rejected.batch_id] == []


async def test_flaky_tasks_succeed_on_the_third_attempt_and_timeouts_fail_after_max_attempts(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, event_tap: EventTap
) -> None:
    settings = make_settings()
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    async with batch_server(settings) as stub, batch_worker(settings):
        created = await stub.CreateBatch(_request(tenant_id, ["a #flaky cat", "a #timeout cat"]))
        batch = await _finished(stub, tenant_id, created.batch_id)
        flaky, timed_out = await _tasks(stub, tenant_id, created.batch_id)
    assert (flaky.status, flaky.attempts, flaky.failure_type) == ("succeeded", 3, "")
    assert (timed_out.status, timed_out.attempts, timed_out.failure_type) == ("failed", 3, "timeout")
    assert timed_out.error_message
    assert (batch.status, batch.credits_spent, batch.refunded_credits) == ("partial", 10, 10)
    failed = await event_tap.wait_for("task.failed", created.batch_id)
    assert (failed[0].failure_type, failed[0].attempts) == ("timeout", 3)


async def test_expired_leases_are_dispatched_again_or_failed_after_three_claims(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    settings = make_settings()
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    async with batch_server(settings) as stub:
        created = await stub.CreateBatch(
            _request(tenant_id, ["lost once", "lost thrice", "never lost", "handed back twice, lost once"])
        )
        # As if workers had died holding three of the tasks (once, for the third time, and once
        # after two stopping workers had handed the last one back: ADR-139).
        await sql.execute(
            """
            UPDATE batch.tasks SET status = 'running', claim_token = gen_random_uuid(),
                   claims = CASE batch_index WHEN 0 THEN 1 ELSE 3 END,
                   handbacks = CASE batch_index WHEN 3 THEN 2 ELSE 0 END,
                   lease_expires_at = now() - interval '1 second'
            WHERE batch_id = %s AND batch_index IN (0, 1, 3)
            """,
            (created.batch_id,),
        )
        async with batch_worker(settings):
            batch = await _finished(stub, tenant_id, created.batch_id)
        tasks = await _tasks(stub, tenant_id, created.batch_id)
        claims = await (
            await sql.execute(
                "SELECT claims FROM batch.tasks WHERE batch_id = %s ORDER BY batch_index", (created.batch_id,)
            )
        ).fetchall()
    assert [t.status for t in tasks] == ["succeeded", "failed", "succeeded", "succeeded"]
    assert (tasks[1].failure_type, tasks[1].error_message) == ("internal", "worker lost the task 3 times")
    assert [row[0] for row in claims] == [2, 3, 1, 4]
    assert batch.status == "partial"


async def test_a_batch_left_reserving_by_a_billing_outage_is_completed_by_recovery(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    settings = make_settings()
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    request = _request(tenant_id, ["a cat", "a dog"], "req-outage")
    async with batch_server(settings) as stub:
        # Quote works, Reserve does not: the batch is stored and left reserving.
        fake_billing.servicer.reserve_down = True
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateBatch(request)
        assert rpc_reason(refused.value)[0] == grpc.StatusCode.UNAVAILABLE
        status = await (
            await sql.execute("SELECT status FROM batch.batches WHERE tenant_id = %s", (tenant_id,))
        ).fetchone()
        assert status == ("reserving",)

        fake_billing.servicer.reserve_down = False
        async with batch_worker(settings):
            listed = await stub.ListBatches(batch_pb2.ListBatchesRequest(tenant_id=tenant_id))
            batch = await _finished(stub, tenant_id, listed.batches[0].batch_id)
        assert batch.status == "completed"
        replay = await stub.CreateBatch(request)
    assert (replay.batch_id, replay.replayed, replay.available_credits) == (batch.batch_id, True, 1000)
    assert fake_billing.servicer.reserve_effects(batch.batch_id) == 1


async def test_a_batch_left_reserving_is_frozen_by_recovery_against_its_key_and_project_budgets(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    # The key id travels with the batch row (migration 0017): before it, recovery froze such a
    # batch against its tenant and project only, and a crash let it past its key's budget.
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    request = _request(tenant_id, ["a cat", "a dog"], "req-terms")
    request.api_key_id = "key-studio-7"
    request.metadata["project"] = "trailer"
    async with batch_server(make_settings()) as stub:
        fake_billing.servicer.reserve_down = True
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.CreateBatch(request)
        stored = await (
            await sql.execute(
                "SELECT status, api_key_id, quote_id FROM batch.batches WHERE tenant_id = %s", (tenant_id,)
            )
        ).fetchone()
        assert stored == ("reserving", "key-studio-7", None)

        fake_billing.servicer.reserve_down = False
        async with batch_worker(make_settings()):
            listed = await stub.ListBatches(batch_pb2.ListBatchesRequest(tenant_id=tenant_id))
            batch = await _finished(stub, tenant_id, listed.batches[0].batch_id)
    assert batch.status == "completed"
    assert fake_billing.servicer.reserved_terms[batch.batch_id] == ("key-studio-7", "trailer", "")


async def _task_prices(sql: psycopg.AsyncConnection[Any], batch_id: str) -> set[int]:
    rows = await (
        await sql.execute("SELECT unit_price FROM batch.tasks WHERE batch_id = %s", (batch_id,))
    ).fetchall()
    return {row[0] for row in rows}


async def test_a_price_changed_between_quote_and_reserve_is_frozen_at_the_new_price(
    make_settings: SettingsFactory,
    fake_billing: FakeBillingServer,
    sql: psycopg.AsyncConnection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The memo's second of memory, made an hour: on a loaded host the second create can come more
    # than a second after the first, and the stale price would then never be offered.
    monkeypatch.setattr(
        batch_bootstrap, "MemoizedQuotes", functools.partial(MemoizedQuotes, ttl_seconds=3600)
    )
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    async with batch_server(make_settings()) as stub:
        await fake_billing.servicer.followed()
        first = await stub.CreateBatch(_request(tenant_id, ["a cat"]))
        # A new price list while the batch service still remembers the old price.
        fake_billing.servicer.prices["sora-2"] = 13
        second = await stub.CreateBatch(_request(tenant_id, ["a dog", "a fox", "an owl"]))
    assert fake_billing.servicer.stale_refusals == 1
    assert (first.required_credits, first.cost_per_video) == (10, 10)
    assert (second.status, second.required_credits, second.cost_per_video) == ("queued", 39, 13)
    assert await _task_prices(sql, second.batch_id) == {13}
    stored = await (
        await sql.execute(
            "SELECT required_credits, frozen_credits FROM batch.batches WHERE id = %s", (second.batch_id,)
        )
    ).fetchone()
    assert stored == (39, 39)
    assert fake_billing.servicer.balances[tenant_id] == 1000 - 10 - 39


async def _rejection_of(sql: psycopg.AsyncConnection[Any], tenant_id: str, request_id: str) -> Any:
    """(status, rejection reason, frozen credits, tasks) of the tenant's batch with that request id."""
    return await (
        await sql.execute(
            "SELECT b.status, b.rejection_reason, b.frozen_credits, count(t.id) FROM batch.batches AS b"
            " LEFT JOIN batch.tasks AS t ON t.batch_id = b.id"
            " WHERE b.tenant_id = %s AND b.request_id = %s GROUP BY b.id",
            (tenant_id, request_id),
        )
    ).fetchone()


async def test_a_model_withdrawn_between_quote_and_reserve_rejects_the_batch_for_good(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    request = _request(tenant_id, ["a dog", "a fox"], "req-withdrawn")
    async with batch_server(make_settings()) as stub:
        await fake_billing.servicer.followed()
        await stub.CreateBatch(_request(tenant_id, ["a cat"]))
        # A new price list without the model while the batch service still remembers its quote.
        del fake_billing.servicer.prices["sora-2"]
        refusals = []
        for _ in range(2):  # the create, then its replay
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.CreateBatch(request)
            refusals.append(rpc_reason(refused.value))
    assert refusals == [(grpc.StatusCode.INVALID_ARGUMENT, "validation_error", {"field": "items"})] * 2
    # Rejected, not left reserving for recovery to retry forever; nothing frozen, no tasks.
    assert await _rejection_of(sql, tenant_id, "req-withdrawn") == ("rejected", "model_unavailable", 0, 0)
    assert fake_billing.servicer.balances[tenant_id] == 1000 - 10


async def test_a_batch_left_reserving_whose_model_is_then_withdrawn_is_rejected_by_recovery(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    async with batch_server(make_settings()) as stub:
        fake_billing.servicer.reserve_down = True
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateBatch(_request(tenant_id, ["a cat"], "req-left"))
        assert rpc_reason(refused.value)[0] == grpc.StatusCode.UNAVAILABLE
        del fake_billing.servicer.prices["sora-2"]
        fake_billing.servicer.reserve_down = False

        async def rejected() -> Any:
            row = await _rejection_of(sql, tenant_id, "req-left")
            return row if row[0] != "reserving" else None

        assert await eventually(rejected) == ("rejected", "model_unavailable", 0, 0)
    assert fake_billing.servicer.balances[tenant_id] == 1000


async def test_a_batch_left_reserving_at_an_old_price_is_repriced_by_recovery(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    settings = make_settings()
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    request = _request(tenant_id, ["a cat", "a dog"], "req-repriced")
    async with batch_server(settings) as stub:
        fake_billing.servicer.reserve_down = True
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.CreateBatch(request)
        # Billing comes back with a new price list: the stored price (10) is no longer current.
        fake_billing.servicer.prices["sora-2"] = 7
        fake_billing.servicer.reserve_down = False
        async with batch_worker(settings):
            listed = await stub.ListBatches(batch_pb2.ListBatchesRequest(tenant_id=tenant_id))
            batch = await _finished(stub, tenant_id, listed.batches[0].batch_id)
        replay = await stub.CreateBatch(request)
    assert fake_billing.servicer.stale_refusals >= 1
    assert (batch.status, batch.frozen_credits, batch.credits_spent) == ("completed", 14, 14)
    assert await _task_prices(sql, batch.batch_id) == {7}
    assert (replay.batch_id, replay.replayed, replay.required_credits) == (batch.batch_id, True, 14)
    assert fake_billing.servicer.balances[tenant_id] == 1000 - 14
    assert fake_billing.servicer.reserve_effects(batch.batch_id) == 1


async def test_cancel_marks_queued_tasks_cancelled_and_emits_their_failures(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, event_tap: EventTap
) -> None:
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    async with batch_server(make_settings()) as stub:
        created = await stub.CreateBatch(_request(tenant_id, [f"cat {n}" for n in range(5)]))
        cancel = batch_pb2.CancelBatchRequest(tenant_id=tenant_id, batch_id=created.batch_id)
        cancelled = await stub.CancelBatch(cancel)
        again = await stub.CancelBatch(cancel)
        failures = await event_tap.wait_for("task.failed", created.batch_id, count=5)
        finished = await event_tap.wait_for("batch.finished", created.batch_id)
        tasks = await _tasks(stub, tenant_id, created.batch_id)
    assert (cancelled.status, cancelled.cancelled_count, cancelled.pending_count) == ("cancelled", 5, 0)
    assert cancelled.refunded_credits == 50
    assert again == cancelled
    assert {(f.failure_type, f.unit_price) for f in failures} == {("cancelled", 10)}
    assert len(event_tap.of("task.failed", created.batch_id)) == 5
    assert (finished[0].status, finished[0].cancelled_count) == ("cancelled", 5)
    assert {(t.status, t.error_message) for t in tasks} == {("cancelled", "cancelled before it started")}


async def test_a_ten_thousand_item_batch_is_accepted(
    make_settings: SettingsFactory,
    fake_billing: FakeBillingServer,
    sql: psycopg.AsyncConnection[Any],
    amqp_url: str,
) -> None:
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1_000_000
    settings = make_settings()
    async with batch_server(settings) as stub:
        started = time.perf_counter()
        created = await stub.CreateBatch(_request(tenant_id, [f"video {n}" for n in range(10_000)]))
        print(f"CreateBatch of 10,000 items took {(time.perf_counter() - started) * 1000:.0f} ms")
        count = await (
            await sql.execute("SELECT count(*) FROM batch.tasks WHERE batch_id = %s", (created.batch_id,))
        ).fetchone()
        assert (created.total_count, created.required_credits, count) == (10_000, 100_000, (10_000,))

        # Larger than a window: its first window is dispatched right after the answer (ADR-039).
        async def dispatched() -> int | None:
            row = await (
                await sql.execute(
                    "SELECT count(*) FROM batch.tasks WHERE batch_id = %s AND dispatched_at IS NOT NULL",
                    (created.batch_id,),
                )
            ).fetchone()
            return row[0] if row and row[0] else None

        window = settings.dispatch_window_chunks * settings.dispatch_chunk_size
        assert await eventually(dispatched) == window

        async def outbox_empty() -> bool | None:
            row = await (await sql.execute("SELECT count(*) FROM batch.outbox")).fetchone()
            return True if row == (0,) else None

        await eventually(outbox_empty)
    # Keep its 200 dispatch messages from landing on the workers of other tests.
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(DISPATCH_QUEUE.name, passive=True)
        await queue.purge()


async def test_a_settlement_from_billing_is_recorded_once(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, amqp_url: str
) -> None:
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    async with batch_server(make_settings()) as stub:
        created = await stub.CreateBatch(_request(tenant_id, ["a cat", "a dog"]))
        await stub.CancelBatch(batch_pb2.CancelBatchRequest(tenant_id=tenant_id, batch_id=created.batch_id))
        bus = await RabbitBus.connect(amqp_url)
        try:
            for status in ("refunded", "settled"):
                await bus.publish(
                    [
                        Envelope.of(
                            "batch.settled",
                            events_pb2.BatchSettled(
                                batch_id=created.batch_id, tenant_id=tenant_id, settlement_status=status
                            ),
                        )
                    ]
                )
        finally:
            await bus.close()

        async def settled() -> batch_pb2.Batch | None:
            batch = await stub.GetBatch(
                batch_pb2.GetBatchRequest(tenant_id=tenant_id, batch_id=created.batch_id)
            )
            return batch if batch.settlement_status != "pending" else None

        first = await eventually(settled)
        assert first.settlement_status == "refunded"


async def test_a_stopping_worker_finishes_the_tasks_it_started(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    settings = make_settings(simulated_latency_seconds=0.5, provider_timeout_seconds=5.0)
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    async with batch_server(settings) as stub:
        created = await stub.CreateBatch(_request(tenant_id, [f"cat {n}" for n in range(4)]))

        async def all_running() -> bool | None:
            row = await (
                await sql.execute(
                    "SELECT count(*) FROM batch.tasks WHERE batch_id = %s AND status = 'running'",
                    (created.batch_id,),
                )
            ).fetchone()
            return True if row == (4,) else None

        async with batch_worker(settings):
            await eventually(all_running)
        # The worker returned: what it started is committed, nothing is left running.
        tasks = await _tasks(stub, tenant_id, created.batch_id)
    assert [t.status for t in tasks] == ["succeeded"] * 4


async def test_tasks_of_a_worker_stopped_past_its_grace_are_recovered_by_another(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    slow = make_settings(
        simulated_latency_seconds=30.0, provider_timeout_seconds=60.0, task_lease_seconds=0.5
    )
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    async with batch_server(slow) as stub:
        created = await stub.CreateBatch(_request(tenant_id, ["cat 0", "cat 1"]))

        async def all_running() -> bool | None:
            row = await (
                await sql.execute(
                    "SELECT count(*) FROM batch.tasks WHERE batch_id = %s AND status = 'running'",
                    (created.batch_id,),
                )
            ).fetchone()
            return True if row == (2,) else None

        stopping = asyncio.Event()
        stuck = asyncio.create_task(run_worker(slow, stopping, grace_seconds=0.05))
        await eventually(all_running)
        stopping.set()
        await asyncio.wait_for(stuck, 30)

        async with batch_worker(make_settings(task_lease_seconds=0.5)):
            batch = await _finished(stub, tenant_id, created.batch_id)
        claims = await (
            await sql.execute("SELECT claims FROM batch.tasks WHERE batch_id = %s", (created.batch_id,))
        ).fetchall()
    assert (batch.status, batch.success_count) == ("completed", 2)
    assert [row[0] for row in claims] == [2, 2]


@pytest.mark.parametrize("size", [3, 2_500], ids=["one statement", "copy"])
async def test_items_sent_as_columns_are_stored_exactly_and_replayed(
    make_settings: SettingsFactory,
    fake_billing: FakeBillingServer,
    sql: psycopg.AsyncConnection[Any],
    amqp_url: str,
    size: int,
) -> None:
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1_000_000
    awkward = ["tab\there", "new\nline", "carriage\rreturn", "back\\slash \\N", "日本 😀 é", "plain"]
    prompts = [f"{awkward[n % len(awkward)]} {n}" for n in range(size)]
    models = ["veo-3" if n % 3 == 0 else "sora-2" for n in range(size)]
    request = batch_pb2.CreateBatchRequest(
        tenant_id=tenant_id,
        request_id=f"columns-{size}",
        item_columns=batch_pb2.BatchItemColumns(prompts=prompts, models=models, duration_seconds=[0] * size),
    )
    async with batch_server(make_settings()) as stub:
        created = await stub.CreateBatch(request)
        replayed = await stub.CreateBatch(request)
        mismatched = batch_pb2.CreateBatchRequest(
            tenant_id=tenant_id,
            request_id=f"columns-{size}",
            item_columns=batch_pb2.BatchItemColumns(
                prompts=["x"], models=["sora-2"], duration_seconds=[0, 0]
            ),
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateBatch(mismatched)
        assert rpc_reason(refused.value)[1:] == ("validation_error", {"field": "items"})

        async def outbox_empty() -> bool | None:
            row = await (await sql.execute("SELECT count(*) FROM batch.outbox")).fetchone()
            return True if row == (0,) else None

        # Cancelled, so its veo-3 tasks do not wait for provider slots in other tests.
        await stub.CancelBatch(batch_pb2.CancelBatchRequest(tenant_id=tenant_id, batch_id=created.batch_id))
        await eventually(outbox_empty)  # every dispatch message is on the queue, to be purged
    required = sum(20 if model == "veo-3" else 10 for model in models)
    assert (created.total_count, created.required_credits, created.replayed) == (size, required, False)
    assert (replayed.batch_id, replayed.replayed) == (created.batch_id, True)
    rows = await (
        await sql.execute(
            "SELECT id, batch_index, prompt, model, unit_price, status FROM batch.tasks"
            " WHERE batch_id = %s ORDER BY batch_index",
            (created.batch_id,),
        )
    ).fetchall()
    assert [(row[1], row[2], row[3], row[4]) for row in rows] == [
        (n, prompts[n], models[n], 20 if models[n] == "veo-3" else 10) for n in range(size)
    ]
    ids = [row[0] for row in rows]
    # UUIDv7 ids that grow with the index (cheap right-edge inserts into the primary key).
    assert {task_id.version for task_id in ids} == {7} and ids == sorted(ids) and len(set(ids)) == size

    # Keep its dispatch messages from landing on the workers of other tests.
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(DISPATCH_QUEUE.name, passive=True)
        await queue.purge()


async def test_open_batches_are_counted_per_tenant_up_to_the_limit(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    tenant_id, other = tenant(), tenant()
    fake_billing.servicer.balances[tenant_id] = 30  # three 1-item batches; the fourth is rejected
    async with batch_server(make_settings()) as stub:
        created = [
            await stub.CreateBatch(_request(tenant_id, [f"shot {n}"], f"req-open-{n}")) for n in range(3)
        ]
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.CreateBatch(_request(tenant_id, ["one too many"], "req-open-3"))
        # One of the three finishes (as the last outcome of a batch would mark it).
        await sql.execute(
            "UPDATE batch.batches SET status = 'completed', finished_at = now() WHERE id = %s",
            (created[0].batch_id,),
        )

        def count(tenant: str, limit: int) -> Any:
            return stub.CountOpenBatches(batch_pb2.CountOpenBatchesRequest(tenant_id=tenant, limit=limit))

        assert (await count(tenant_id, 100)).open_batches == 2  # the rejected one is finished too
        assert (await count(tenant_id, 1)).open_batches == 1
        assert (await count(other, 100)).open_batches == 0
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await count(tenant_id, 0)
        assert rpc_reason(refused.value)[0] == grpc.StatusCode.INVALID_ARGUMENT
