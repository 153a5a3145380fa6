"""Small batches stored together (`insert_small_batches`, the create path's group commit): each
is created or replayed exactly as `insert_batch` would, and one the database refuses does not
take the others of its group down."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from reelbatch.proto.events.v1 import events_pb2

from libs.db import Database
from services.batch.adapters.sql.queueing import DispatchWindows
from services.batch.adapters.sql.store import BatchStore
from services.batch.domain.batch import (
    BatchId,
    BatchItem,
    BatchRecord,
    BatchStatus,
    NewBatch,
    QuoteLine,
    Reservation,
    TenantId,
)
from services.batch.domain.errors import TooManyOpenBatches
from services.batch.handlers import BatchHandlers


@pytest.fixture
async def repository(batch_database_url: str) -> AsyncIterator[BatchStore]:
    database = Database(batch_database_url, pool_size=3)
    try:
        yield BatchStore.open(database, DispatchWindows(chunk_size=100))
    finally:
        await database.close()


def _new(
    tenant_id: TenantId, request_id: str | None, prompts: list[str], fingerprint: str = "fp"
) -> NewBatch:
    items = tuple(BatchItem(prompt=prompt, model="sora-2") for prompt in prompts)
    return NewBatch(
        id=BatchId(uuid.uuid4()),
        tenant_id=tenant_id,
        request_id=request_id,
        request_fingerprint=fingerprint,
        items=items,
        prices={("sora-2", 0, ""): QuoteLine(model="sora-2", count=len(items), unit_price=10)},
        required_credits=10 * len(items),
        cost_per_video=10,
        webhook_url=None,
    )


async def _tasks(sql: psycopg.AsyncConnection[Any], batch_id: BatchId) -> list[tuple[int, str, int]]:
    rows = await (
        await sql.execute(
            "SELECT batch_index, prompt, unit_price FROM batch.tasks WHERE batch_id = %s"
            " ORDER BY batch_index",
            (batch_id,),
        )
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def _stored(answers: list[tuple[BatchRecord, bool] | TooManyOpenBatches]) -> list[tuple[BatchRecord, bool]]:
    """The answers of a group without an open-batch limit: every one a (batch, created) pair."""
    stored = [answer for answer in answers if isinstance(answer, tuple)]
    assert len(stored) == len(answers), answers
    return stored


async def test_a_group_stores_each_batch_with_its_tasks_and_replays_repeated_request_ids(
    repository: BatchStore, sql: psycopg.AsyncConnection[Any]
) -> None:
    tenant_id, other_tenant = TenantId(uuid.uuid4()), TenantId(uuid.uuid4())
    (stored, created) = _stored(
        await repository.intake.insert_small_batches([_new(tenant_id, "earlier", ["x"])])
    )[0]
    assert created
    group = [
        _new(tenant_id, "a", ["a cat", "a dog\twith a tab"]),
        _new(tenant_id, "earlier", ["y"], fingerprint="other"),  # stored before this group
        _new(tenant_id, "a", ["a cat again"]),  # repeats the first of this group
        _new(other_tenant, "a", ["same id, another tenant"]),
        _new(tenant_id, None, ["no request id"]),
        _new(tenant_id, None, ["no request id either"]),
    ]

    answers = _stored(await repository.intake.insert_small_batches(group))

    assert [created for _, created in answers] == [True, False, False, True, True, True]
    first, earlier, repeated, other, anonymous, anonymous_too = (batch for batch, _ in answers)
    assert earlier.id == stored.id and earlier.request_fingerprint == "fp"
    assert repeated.id == first.id == group[0].id
    assert (other.tenant_id, other.request_id) == (other_tenant, "a")
    assert len({first.id, other.id, anonymous.id, anonymous_too.id}) == 4
    assert {batch.status for batch in (first, other, anonymous)} == {BatchStatus.RESERVING}
    assert (first.total_count, first.required_credits) == (2, 20)
    assert await _tasks(sql, first.id) == [(0, "a cat", 10), (1, "a dog\twith a tab", 10)]
    assert await _tasks(sql, other.id) == [(0, "same id, another tenant", 10)]
    assert await _tasks(sql, group[2].id) == []  # the replayed one stored nothing


async def test_a_batch_the_database_refuses_fails_alone_and_the_rest_of_its_group_is_stored(
    repository: BatchStore, sql: psycopg.AsyncConnection[Any]
) -> None:
    handlers = BatchHandlers.build(repository, billing=None, max_batch_items=10, max_prompt_chars=100)  # type: ignore[arg-type]
    tenant_id = TenantId(uuid.uuid4())
    # PostgreSQL text cannot hold NUL: the statement of the whole group fails on this one.
    refused = _new(tenant_id, "bad\x00id", ["x"])
    good = [_new(tenant_id, f"good-{n}", [f"shot {n}"]) for n in range(2)]

    outcomes = await handlers.intake._insert_group([good[0], refused, good[1]])

    assert isinstance(outcomes[1], psycopg.DataError)
    for new, outcome in zip(good, (outcomes[0], outcomes[2]), strict=True):
        assert not isinstance(outcome, BaseException)
        batch, created = outcome
        assert created and batch.id == new.id
        assert len(await _tasks(sql, new.id)) == 1


async def test_a_group_queued_together_is_announced_in_one_message_naming_each_batch_in_order(
    repository: BatchStore, sql: psycopg.AsyncConnection[Any]
) -> None:
    tenant_id, other_tenant = TenantId(uuid.uuid4()), TenantId(uuid.uuid4())
    group = [_new(tenant_id, None, ["a"]), _new(other_tenant, None, ["b", "c"]), _new(tenant_id, None, ["d"])]
    await repository.intake.insert_small_batches(group)

    queued = (
        await repository.queue.mark_queued_many(
            [
                (new.id, Reservation(frozen_credits=new.required_credits, available_before=100))
                for new in group
            ]
        )
    ).batches

    assert [batch.status for batch in queued if batch is not None] == [BatchStatus.QUEUED] * 3
    rows = await (
        await sql.execute(
            "SELECT body FROM batch.outbox WHERE routing_key = 'batch.queued' AND message_type = %s",
            (events_pb2.BatchesQueued.DESCRIPTOR.full_name,),
        )
    ).fetchall()
    ours = {str(new.id) for new in group}
    announcements = [
        message
        for message in (events_pb2.BatchesQueued.FromString(row[0]) for row in rows)
        if {batch.batch_id for batch in message.batches} & ours
    ]
    assert len(announcements) == 1
    announced = announcements[0].batches
    assert [batch.batch_id for batch in announced] == [str(new.id) for new in group]
    assert [(batch.tenant_id, batch.total_count, batch.required_credits) for batch in announced] == [
        (str(new.tenant_id), len(new.items), new.required_credits) for new in group
    ]
    assert all(batch.occurred_at.seconds > 0 for batch in announced)
