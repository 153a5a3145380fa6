"""retry-failed is idempotent per source batch (ADR-048), through the real batch gRPC server.

A batch has at most one live retry, held by a unique key: repeated, concurrent (also on two
servers) and later calls answer that retry and freeze once. By default only failures a new attempt
can change are retried; `failure_types` chooses. Retries and their sources link to each other.
Real PostgreSQL and RabbitMQ; `#timeout` items fail as `timeout`, `#fail` ones as `content_policy`.
"""

from __future__ import annotations

import asyncio
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
BALANCE = 10_000
# One attempt each: a `#timeout` item fails after one provider timeout.
PRICING = {
    "sora-2": ModelPricing(credits_per_video=10),
    MODEL: ModelPricing(credits_per_video=PRICE, max_attempts=1),
}
# One attempt of at most a second: long enough that "ok" items succeed on a loaded CI host (a 0.2 s
# budget once failed one there), short enough that `#timeout` items end the test quickly.
SETTINGS: dict[str, Any] = {"pricing": PRICING, "provider_timeout_seconds": 1.0}
# Two items that can change on retry, one that cannot, one that succeeds.
PROMPTS = ["ok 0", "slow 1 #timeout", "bad 2 #fail", "slow 3 #timeout"]


def _retry(tenant_id: str, batch_id: str, *failure_types: str, request_id: str = "") -> Any:
    request = batch_pb2.RetryFailedRequest(tenant_id=tenant_id, batch_id=batch_id, request_id=request_id)
    if failure_types:
        request.failure_types.extend(failure_types)
    return request


async def _finished_batch(stub: Stub, tenant_id: str, prompts: list[str]) -> batch_pb2.Batch:
    """A batch of these prompts, run to its end by the caller's worker."""
    created = await stub.CreateBatch(
        batch_pb2.CreateBatchRequest(
            tenant_id=tenant_id, items=[batch_pb2.BatchItem(prompt=prompt, model=MODEL) for prompt in prompts]
        )
    )
    return await _finished(stub, tenant_id, created.batch_id)


async def _finished(stub: Stub, tenant_id: str, batch_id: str) -> batch_pb2.Batch:
    async def done() -> batch_pb2.Batch | None:
        batch = await stub.GetBatch(batch_pb2.GetBatchRequest(tenant_id=tenant_id, batch_id=batch_id))
        return batch if batch.finished_at.seconds else None

    return await eventually(done, 30)


async def _prompts(stub: Stub, tenant_id: str, batch_id: str) -> list[str]:
    page = await stub.ListTasks(batch_pb2.ListTasksRequest(tenant_id=tenant_id, batch_id=batch_id))
    return [task.prompt for task in page.tasks]


async def _retries_stored(sql: psycopg.AsyncConnection[Any], source_id: str) -> int:
    row = await (
        await sql.execute("SELECT count(*) FROM batch.batches WHERE retry_of = %s", (source_id,))
    ).fetchone()
    assert row is not None
    return int(row[0])


async def test_retry_failed_without_a_request_id_freezes_once_however_often_it_is_called(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    settings = make_settings(**SETTINGS)
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = BALANCE
    async with batch_server(settings) as stub, batch_worker(settings):
        source = await _finished_batch(stub, tenant_id, PROMPTS)
        first = await stub.RetryFailed(_retry(tenant_id, source.batch_id))
        again = await stub.RetryFailed(_retry(tenant_id, source.batch_id))
        later = await stub.RetryFailed(_retry(tenant_id, source.batch_id, request_id="a-new-key"))
        retried = await _prompts(stub, tenant_id, first.batch_id)
    assert (source.status, source.failed_count) == ("partial", 3)
    assert (first.replayed, first.total_count, first.required_credits) == (False, 2, 2 * PRICE)
    assert (again.batch_id, again.replayed, again.request_id) == (first.batch_id, True, first.request_id)
    assert (later.batch_id, later.replayed) == (first.batch_id, True)
    # content_policy is not retried by default: the same prompt would be refused again.
    assert retried == ["slow 1 #timeout", "slow 3 #timeout"]
    assert await _retries_stored(sql, source.batch_id) == 1
    assert fake_billing.servicer.balances[tenant_id] == BALANCE - 4 * PRICE - 2 * PRICE


async def test_a_too_long_request_id_is_refused_as_a_create_refuses_it_even_with_a_retry_standing(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    settings = make_settings(**SETTINGS)
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = BALANCE
    async with batch_server(settings) as stub, batch_worker(settings):
        source = await _finished_batch(stub, tenant_id, PROMPTS)
        await stub.RetryFailed(_retry(tenant_id, source.batch_id))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RetryFailed(_retry(tenant_id, source.batch_id, request_id="k" * 256))
    assert rpc_reason(refused.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "validation_error")
    assert rpc_violations(refused.value) == ["request_id"]
    assert await _retries_stored(sql, source.batch_id) == 1


async def test_concurrent_retries_of_one_batch_on_two_servers_make_one_batch_and_one_freeze(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    settings = make_settings(**SETTINGS)
    replica = make_settings(**SETTINGS)  # the same database, another server (and port)
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = BALANCE
    async with AsyncExitStack() as stack:
        stub = await stack.enter_async_context(batch_server(settings))
        other = await stack.enter_async_context(batch_server(replica))
        async with batch_worker(settings):
            source = await _finished_batch(stub, tenant_id, PROMPTS)
        answers = await asyncio.gather(
            *(
                (stub, other)[n % 2].RetryFailed(_retry(tenant_id, source.batch_id, request_id=f"click-{n}"))
                for n in range(8)
            )
        )
    assert len({answer.batch_id for answer in answers}) == 1
    assert sorted(answer.replayed for answer in answers) == [False] + [True] * 7
    assert await _retries_stored(sql, source.batch_id) == 1
    assert fake_billing.servicer.balances[tenant_id] == BALANCE - 4 * PRICE - 2 * PRICE


async def test_failure_types_choose_the_items_and_a_later_call_replays_the_first_retry(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer
) -> None:
    settings = make_settings(**SETTINGS)
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = BALANCE
    async with batch_server(settings) as stub, batch_worker(settings):
        refused = await _finished_batch(stub, tenant_id, ["ok", "bad 1 #fail", "bad 2 #fail"])
        with pytest.raises(grpc.aio.AioRpcError) as nothing_by_default:
            await stub.RetryFailed(_retry(tenant_id, refused.batch_id))
        chosen = await stub.RetryFailed(_retry(tenant_id, refused.batch_id, "content_policy"))
        # Asking for other types later still answers the first retry: one retry per batch.
        other_types = await stub.RetryFailed(_retry(tenant_id, refused.batch_id, "timeout", "internal"))
        retried = await _prompts(stub, tenant_id, chosen.batch_id)
        mixed = await _finished_batch(stub, tenant_id, PROMPTS)
        everything = await stub.RetryFailed(_retry(tenant_id, mixed.batch_id, "timeout", "content_policy"))
        all_retried = await _prompts(stub, tenant_id, everything.batch_id)
        wrong: dict[str, Any] = {}
        for case in (["cancelled"], ["timeout", "nope"], [""]):
            with pytest.raises(grpc.aio.AioRpcError) as refusal:
                await stub.RetryFailed(_retry(tenant_id, mixed.batch_id, *case))
            wrong[",".join(case)] = rpc_reason(refusal.value)
    code, reason, details = rpc_reason(nothing_by_default.value)
    assert (code, reason, details["field"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "validation_error",
        "batch_id",
    )
    assert retried == ["bad 1 #fail", "bad 2 #fail"]
    assert (other_types.batch_id, other_types.replayed) == (chosen.batch_id, True)
    assert all_retried == ["slow 1 #timeout", "bad 2 #fail", "slow 3 #timeout"]
    assert {case: (code, details["field"]) for case, (code, _, details) in wrong.items()} == {
        "cancelled": (grpc.StatusCode.INVALID_ARGUMENT, "failure_types[0]"),
        "timeout,nope": (grpc.StatusCode.INVALID_ARGUMENT, "failure_types[1]"),
        "": (grpc.StatusCode.INVALID_ARGUMENT, "failure_types[0]"),
    }


async def test_a_retry_can_be_retried_once_and_every_view_links_retries_and_sources(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer
) -> None:
    settings = make_settings(**SETTINGS)
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = BALANCE
    async with batch_server(settings) as stub, batch_worker(settings):
        source = await _finished_batch(stub, tenant_id, ["ok", "slow #timeout"])
        first = await stub.RetryFailed(_retry(tenant_id, source.batch_id))
        await _finished(stub, tenant_id, first.batch_id)
        second = await stub.RetryFailed(_retry(tenant_id, first.batch_id))
        second_again = await stub.RetryFailed(_retry(tenant_id, first.batch_id))
        last = await _finished(stub, tenant_id, second.batch_id)

        async def view(batch_id: str) -> tuple[str, list[str]]:
            batch = await stub.GetBatch(batch_pb2.GetBatchRequest(tenant_id=tenant_id, batch_id=batch_id))
            return batch.retry_of_batch_id, list(batch.retry_batch_ids)

        views = [await view(batch_id) for batch_id in (source.batch_id, first.batch_id, second.batch_id)]
        admin_view = await stub.GetBatch(batch_pb2.GetBatchRequest(tenant_id="", batch_id=first.batch_id))
        listed = await stub.ListBatches(batch_pb2.ListBatchesRequest(tenant_id=tenant_id))
    assert second.batch_id not in (source.batch_id, first.batch_id)
    assert (second_again.batch_id, second_again.replayed) == (second.batch_id, True)
    assert (last.total_count, last.failed_count) == (1, 1)
    assert views == [
        ("", [first.batch_id]),
        (source.batch_id, [second.batch_id]),
        (first.batch_id, []),
    ]
    assert (admin_view.retry_of_batch_id, list(admin_view.retry_batch_ids)) == (
        source.batch_id,
        [second.batch_id],
    )
    assert [(b.batch_id, b.retry_of_batch_id, list(b.retry_batch_ids)) for b in listed.batches] == [
        (second.batch_id, first.batch_id, []),
        (first.batch_id, source.batch_id, [second.batch_id]),
        (source.batch_id, "", [first.batch_id]),
    ]


async def test_a_rejected_retry_froze_nothing_and_leaves_the_place_to_the_next_call(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer
) -> None:
    settings = make_settings(**SETTINGS)
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = BALANCE
    async with batch_server(settings) as stub, batch_worker(settings):
        source = await _finished_batch(stub, tenant_id, PROMPTS)
        fake_billing.servicer.balances[tenant_id] = PRICE  # one of the two items
        refusals = []
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.RetryFailed(_retry(tenant_id, source.batch_id))
            refusals.append(rpc_reason(refused.value)[:2])
        fake_billing.servicer.balances[tenant_id] = BALANCE
        accepted = await stub.RetryFailed(_retry(tenant_id, source.batch_id))
        replay = await stub.RetryFailed(_retry(tenant_id, source.batch_id))
        view = await stub.GetBatch(batch_pb2.GetBatchRequest(tenant_id=tenant_id, batch_id=source.batch_id))
    assert refusals == [(grpc.StatusCode.FAILED_PRECONDITION, "insufficient_credits")] * 2
    assert (accepted.replayed, replay.batch_id, replay.replayed) == (False, accepted.batch_id, True)
    # Two rejected retries, then the live one: all listed, oldest first.
    assert len(view.retry_batch_ids) == 3 and view.retry_batch_ids[-1] == accepted.batch_id
    assert fake_billing.servicer.balances[tenant_id] == BALANCE - 2 * PRICE
