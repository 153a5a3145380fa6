"""The worker's transactions on a real PostgreSQL: claims of several messages at once, outcome
writes (one event per batch, the finish check), lease renewals beside an outcome write.

The repository is driven directly on batches inserted here, with a model of their own, so tasks
other tests leave behind never share their provider slots.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from reelbatch.proto.events.v1 import events_pb2

from libs.db import Database
from services.batch.adapters.sql.queueing import DispatchWindows
from services.batch.adapters.sql.store import BatchStore
from services.batch.domain.batch import BatchId, TaskId, TaskStatus
from services.batch.domain.execution import TaskOutcome
from services.batch.domain.provider import FailureType
from services.batch.use_cases.claims import ClaimCoalescer
from services.batch.use_cases.outcomes import write_outcomes


@pytest.fixture
async def repository(batch_database_url: str) -> AsyncIterator[BatchStore]:
    database = Database(batch_database_url, pool_size=3)
    try:
        yield BatchStore.open(
            database, DispatchWindows(chunk_size=100, batch_window_chunks=8, tenant_window_chunks=32)
        )
    finally:
        await database.close()


async def _queued_batch(
    sql: psycopg.AsyncConnection[Any], model: str, size: int
) -> tuple[BatchId, list[TaskId]]:
    """A queued batch whose tasks are all dispatched (as if their messages were in the queue)."""
    batch_id, tenant_id = uuid.uuid4(), uuid.uuid4()
    task_ids = [uuid.uuid4() for _ in range(size)]
    await sql.execute(
        "INSERT INTO batch.batches (id, tenant_id, request_fingerprint, status, total_count,"
        " required_credits, frozen_credits, queued_at) VALUES (%s, %s, 'test', 'queued', %s, %s, %s, now())",
        (batch_id, tenant_id, size, 10 * size, 10 * size),
    )
    for index, task_id in enumerate(task_ids):
        await sql.execute(
            "INSERT INTO batch.tasks (id, batch_id, tenant_id, batch_index, prompt, model, unit_price,"
            " status, dispatched_at) VALUES (%s, %s, %s, %s, %s, %s, 10, 'queued', now())",
            (task_id, batch_id, tenant_id, index, f"shot {index}", model),
        )
    return BatchId(batch_id), [TaskId(task_id) for task_id in task_ids]


def _model() -> str:
    return f"test-model-{uuid.uuid4().hex[:8]}"


async def test_messages_claimed_together_take_the_model_slots_in_turn(
    repository: BatchStore, sql: psycopg.AsyncConnection[Any]
) -> None:
    model = _model()
    batch_id, ids = await _queued_batch(sql, model, 5)
    first, second = await repository.claims.claim_dispatches(
        # The second message repeats a task of the first: it is claimed once, by the first.
        [(batch_id, ids[:2]), (batch_id, [ids[1], *ids[2:5]])],
        30.0,
        slot_limits={model: 3},
        worker_id="worker-a",
    )
    assert ([task.task_id for task in first.claimed], first.waiting) == (ids[:2], [])
    assert [task.task_id for task in second.claimed] == [ids[2]]
    assert second.waiting == ids[3:5]
    row = await (
        await sql.execute(
            "SELECT count(*), count(DISTINCT claim_token) FROM batch.tasks"
            " WHERE model = %s AND status = 'running'",
            (model,),
        )
    ).fetchone()
    assert row == (3, 3)
    batch = await repository.listings.get_batch(batch_id)
    assert batch is not None and batch.status.value == "processing"


async def test_while_its_model_is_full_a_waiting_message_costs_one_count_and_is_claimed_once_a_slot_frees(
    repository: BatchStore, sql: psycopg.AsyncConnection[Any]
) -> None:
    model, other = _model(), _model()
    batch_id, ids = await _queued_batch(sql, model, 3)
    (claim,) = await repository.claims.claim_dispatches([(batch_id, ids)], 30.0, slot_limits={model: 2})
    assert (len(claim.claimed), claim.waiting, claim.waiting_models) == (2, [ids[2]], frozenset({model}))
    assert await repository.claims.models_at_limit({model: 2, other: 2}) == {model}

    claim_transactions: list[int] = []
    real_claim = repository.claims.claim_dispatches

    async def counted(*args: Any, **kwargs: Any) -> Any:
        claim_transactions.append(1)
        return await real_claim(*args, **kwargs)

    coalescer = ClaimCoalescer(repository.claims, lease_seconds=30.0, slot_limits={model: 2}, worker_id="w")
    repository.claims.claim_dispatches = counted  # type: ignore[method-assign]
    try:
        waiting = await coalescer.claim(batch_id, claim.waiting, claim.waiting_models)
        assert (waiting.claimed, waiting.waiting, claim_transactions) == ([], [ids[2]], [])

        first = claim.claimed[0]
        await write_outcomes(
            repository.claims,
            [
                TaskOutcome(
                    first.task_id, first.claim_token, TaskStatus.SUCCEEDED, 1, video_url="http://v/1.mp4"
                )
            ],
        )
        claimed = await coalescer.claim(batch_id, waiting.waiting, waiting.waiting_models)
    finally:
        del repository.claims.claim_dispatches
    assert ([task.task_id for task in claimed.claimed], claimed.waiting, claim_transactions) == (
        [ids[2]],
        [],
        [1],
    )


async def test_one_outcome_write_is_one_event_per_batch_and_the_last_one_finishes_the_batch(
    repository: BatchStore, sql: psycopg.AsyncConnection[Any]
) -> None:
    model = _model()
    batch_id, ids = await _queued_batch(sql, model, 3)
    (claim,) = await repository.claims.claim_dispatches([(batch_id, ids)], 30.0, slot_limits={model: 10})
    first, second, third = claim.claimed
    written = await write_outcomes(
        repository.claims,
        [
            TaskOutcome(
                first.task_id, first.claim_token, TaskStatus.SUCCEEDED, 1, video_url="http://v/1.mp4"
            ),
            TaskOutcome(
                second.task_id, second.claim_token, TaskStatus.FAILED, 1, FailureType.CONTENT_POLICY, "no"
            ),
            # A stale claim token: a late result of a claim that was lost, discarded.
            TaskOutcome(third.task_id, uuid.uuid4(), TaskStatus.SUCCEEDED, 1, video_url="http://v/3.mp4"),
        ],
    )
    assert written == 2
    assert (await repository.listings.get_batch(batch_id)).finished_at is None  # type: ignore[union-attr]
    assert (
        await write_outcomes(
            repository.claims,
            [
                TaskOutcome(
                    third.task_id, third.claim_token, TaskStatus.SUCCEEDED, 2, video_url="http://v/3.mp4"
                )
            ],
        )
        == 1
    )
    rows = await (
        await sql.execute(
            "SELECT message_type, body FROM batch.outbox WHERE message_type IN"
            " ('reelbatch.proto.events.v1.TaskOutcomes', 'reelbatch.proto.events.v1.BatchFinished',"
            " 'reelbatch.proto.events.v1.TaskSucceeded', 'reelbatch.proto.events.v1.TaskFailed') ORDER BY id"
        )
    ).fetchall()
    mine: list[Any] = []
    for message_type, body in rows:
        message_class = getattr(events_pb2, message_type.rsplit(".", 1)[1])
        message = message_class.FromString(body)
        if message.batch_id == str(batch_id):
            mine.append(message)
    first_write, second_write, finished = mine
    assert isinstance(first_write, events_pb2.TaskOutcomes)
    assert [t.task_id for t in first_write.succeeded] == [str(first.task_id)]
    assert [(t.task_id, t.failure_type) for t in first_write.failed] == [
        (str(second.task_id), "content_policy")
    ]
    assert isinstance(second_write, events_pb2.TaskOutcomes)
    assert ([t.task_id for t in second_write.succeeded], list(second_write.failed)) == (
        [str(third.task_id)],
        [],
    )
    assert isinstance(finished, events_pb2.BatchFinished)
    assert (finished.status, finished.success_count, finished.failed_count) == ("partial", 2, 1)
    batch = await repository.listings.get_batch(batch_id)
    assert batch is not None and batch.finished_at is not None and batch.status.value == "partial"


async def test_a_lease_renewal_skips_a_task_whose_outcome_is_being_written(
    repository: BatchStore, sql: psycopg.AsyncConnection[Any], batch_database_url: str
) -> None:
    model = _model()
    batch_id, ids = await _queued_batch(sql, model, 2)
    (claim,) = await repository.claims.claim_dispatches([(batch_id, ids)], 30.0, slot_limits={model: 10})
    busy, idle = claim.claimed
    conninfo = batch_database_url.replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(conninfo) as writer:
        # An outcome write in progress holds its task's row until it commits.
        await writer.execute("SELECT 1 FROM batch.tasks WHERE id = %s FOR UPDATE", (busy.task_id,))
        renewed = await asyncio.wait_for(
            repository.claims.renew_leases([busy.claim_token, idle.claim_token], 60.0), timeout=5
        )
        await writer.rollback()
    assert renewed == 1
    leases = dict(
        await (
            await sql.execute(
                "SELECT id, lease_expires_at > now() + interval '45 seconds' FROM batch.tasks"
                " WHERE batch_id = %s",
                (batch_id,),
            )
        ).fetchall()
    )
    assert leases == {busy.task_id: False, idle.task_id: True}
