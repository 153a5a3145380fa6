"""Domain facts as event envelopes (protobuf messages from protos/reelbatch/proto/events/v1)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from reelbatch.proto.events.v1 import events_pb2

from libs.bus import Envelope
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
TASK_SUCCEEDED = "task.succeeded"
TASK_FAILED = "task.failed"
BATCH_FINISHED = "batch.finished"


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def batch_queued(batch: BatchRecord, occurred_at: datetime) -> Envelope:
    """Credits are frozen and the tasks dispatched."""
    return Envelope.of(
        BATCH_QUEUED,
        events_pb2.BatchQueued(
            batch_id=str(batch.id),
            tenant_id=str(batch.tenant_id),
            total_count=batch.total_count,
            required_credits=batch.required_credits,
            webhook_url=batch.webhook_url or "",
            occurred_at=_timestamp(occurred_at),
        ),
    )


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


def task_outcome(task: TaskRecord) -> Envelope:
    """TaskSucceeded for a succeeded task, TaskFailed for a failed or cancelled one."""
    assert task.finished_at is not None, "only a finished task has an outcome"
    if task.status is TaskStatus.SUCCEEDED:
        return Envelope.of(
            TASK_SUCCEEDED,
            events_pb2.TaskSucceeded(
                task_id=str(task.id),
                batch_id=str(task.batch_id),
                tenant_id=str(task.tenant_id),
                batch_index=task.batch_index,
                model=task.model,
                unit_price=task.unit_price,
                video_url=task.video_url or "",
                attempts=task.attempts,
                occurred_at=_timestamp(task.finished_at),
            ),
        )
    assert task.status in (TaskStatus.FAILED, TaskStatus.CANCELLED), task.status
    return Envelope.of(
        TASK_FAILED,
        events_pb2.TaskFailed(
            task_id=str(task.id),
            batch_id=str(task.batch_id),
            tenant_id=str(task.tenant_id),
            batch_index=task.batch_index,
            model=task.model,
            unit_price=task.unit_price,
            failure_type=task.failure_type or "",
            error_message=task.error_message or "",
            attempts=task.attempts,
            occurred_at=_timestamp(task.finished_at),
        ),
    )


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
