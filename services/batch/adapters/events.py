"""Domain facts as event envelopes (protobuf messages from protos/reelbatch/proto/events/v1)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from reelbatch.proto.events.v1 import events_pb2

from libs.messaging.contract import Envelope
from services.batch.domain.batch import (
    BatchId,
    BatchRecord,
    BatchStatus,
    TaskCounts,
    TaskId,
    TaskRecord,
    TaskStatus,
    TenantId,
    dispatch_chunks,
)

BATCH_QUEUED = "batch.queued"
TASK_DISPATCH = "task.dispatch"
TASK_OUTCOMES = "task.outcomes"
BATCH_FINISHED = "batch.finished"


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def batches_queued(batches: Sequence[BatchRecord]) -> Envelope:
    """Credits are frozen and the tasks dispatched, for every batch one transaction queued: one
    message for the group (each broker message costs ~1 ms of CPU across publisher, broker and
    consumer, as much as the rest of a small batch's create)."""
    announced = []
    for batch in batches:
        assert batch.queued_at is not None, "only a queued batch is announced"
        announced.append(
            events_pb2.BatchQueued(
                batch_id=str(batch.id),
                tenant_id=str(batch.tenant_id),
                total_count=batch.total_count,
                required_credits=batch.required_credits,
                webhook_url=batch.webhook_url or "",
                occurred_at=_timestamp(batch.queued_at),
            )
        )
    return Envelope.of(BATCH_QUEUED, events_pb2.BatchesQueued(batches=announced))


def task_dispatches(
    batch_id: BatchId, tenant_id: TenantId, task_ids: Sequence[TaskId], chunk_size: int
) -> list[Envelope]:
    """Work messages of at most `chunk_size` task ids each, in the given order."""
    return [
        Envelope.of(
            TASK_DISPATCH,
            events_pb2.TaskDispatch(
                batch_id=str(batch_id), tenant_id=str(tenant_id), task_ids=[str(task_id) for task_id in chunk]
            ),
        )
        for chunk in dispatch_chunks(task_ids, chunk_size)
    ]


# The two kinds of task outcome message; they share every field but their kind's particulars.
_Outcome = TypeVar("_Outcome", events_pb2.TaskSucceeded, events_pb2.TaskFailed)


def _outcome(task: TaskRecord, message: type[_Outcome], **particulars: str) -> _Outcome:
    assert task.finished_at is not None, "only a finished task has an outcome"
    return message(
        task_id=str(task.id),
        batch_id=str(task.batch_id),
        tenant_id=str(task.tenant_id),
        batch_index=task.batch_index,
        model=task.model,
        unit_price=task.unit_price,
        attempts=task.attempts,
        occurred_at=_timestamp(task.finished_at),
        custom_id=task.custom_id or "",
        metadata=task.metadata or {},
        # What the task's billed provider jobs cost us: billing's real provider spend (ADR-144).
        provider_cost_usd_micros=task.provider_cost_usd_micros,
        provider_jobs=task.provider_jobs,
        **particulars,
    )


def _succeeded(task: TaskRecord) -> events_pb2.TaskSucceeded:
    return _outcome(task, events_pb2.TaskSucceeded, video_url=task.video_url or "")


def _failed(task: TaskRecord) -> events_pb2.TaskFailed:
    assert task.status in (TaskStatus.FAILED, TaskStatus.CANCELLED), task.status
    return _outcome(
        task,
        events_pb2.TaskFailed,
        failure_type=task.failure_type or "",
        error_message=task.error_message or "",
    )


# A cancel of 10,000 queued tasks becomes 20 messages of about 100 KB, not one of 2 MB.
MAX_OUTCOMES_PER_MESSAGE = 500


def task_outcomes(finished: Sequence[TaskRecord]) -> list[Envelope]:
    """The outcomes of finished tasks as TaskOutcomes messages: one or more per batch.

    One message per batch (never mixing batches) keeps a batch whose outcomes a consumer cannot
    apply yet from holding back the outcomes of another.
    """
    by_batch: dict[BatchId, list[TaskRecord]] = {}
    for task in finished:
        by_batch.setdefault(task.batch_id, []).append(task)
    envelopes: list[Envelope] = []
    for batch_id, batch_tasks in by_batch.items():
        for start in range(0, len(batch_tasks), MAX_OUTCOMES_PER_MESSAGE):
            chunk = batch_tasks[start : start + MAX_OUTCOMES_PER_MESSAGE]
            envelopes.append(
                Envelope.of(
                    TASK_OUTCOMES,
                    events_pb2.TaskOutcomes(
                        batch_id=str(batch_id),
                        tenant_id=str(chunk[0].tenant_id),
                        succeeded=[_succeeded(t) for t in chunk if t.status is TaskStatus.SUCCEEDED],
                        failed=[_failed(t) for t in chunk if t.status is not TaskStatus.SUCCEEDED],
                    ),
                )
            )
    return envelopes


def batch_finished(
    batch_id: BatchId, tenant_id: TenantId, status: BatchStatus, counts: TaskCounts, occurred_at: datetime
) -> Envelope:
    """Every task of the batch is terminal."""
    return Envelope.of(
        BATCH_FINISHED,
        events_pb2.BatchFinished(
            batch_id=str(batch_id),
            tenant_id=str(tenant_id),
            status=status.value,
            total_count=counts.total,
            success_count=counts.succeeded,
            failed_count=counts.failed,
            cancelled_count=counts.cancelled,
            occurred_at=_timestamp(occurred_at),
        ),
    )
