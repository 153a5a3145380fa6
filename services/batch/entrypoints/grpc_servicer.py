"""BatchService over gRPC: proto -> command -> handler -> proto. Errors travel as ServiceErrors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from reelbatch.proto.batch.v1 import batch_pb2, batch_pb2_grpc

from libs.errors import InvalidArgument
from libs.field_mapping import from_fields, to_message
from libs.rpc.timestamps import request_instant
from services.batch.domain.batch import BatchItem, BatchView, CreateBatchResult, Metadata, TaskSummary
from services.batch.domain.commands import CreateBatch, ListBatches, ListTasks, RetryFailed
from services.batch.domain.errors import InputFilesUnavailable
from services.batch.domain.generation import NO_SETTINGS
from services.batch.domain.reporting import BatchBreakdown, BatchTotals
from services.batch.entrypoints.generation_messages import (
    input_file_message,
    settings_from_message,
    stored_settings_message,
)
from services.batch.handlers import BatchHandlers

SERVICE_NAME = batch_pb2.DESCRIPTOR.services_by_name["BatchService"].full_name


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _set_time(field: Timestamp, moment: datetime | None) -> None:
    """Sets a message's timestamp field in place (unset for None).

    What `Timestamp.FromDatetime` computes (a naive time read as UTC) without its detour through
    calendar.timegm, and set field by field: building a Timestamp and copying it into a message
    costs several times more, and a page of tasks carries a hundred of them.
    """
    if moment is None:
        return
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    field.seconds, micros = divmod((moment - _EPOCH) // _MICROSECOND, 1_000_000)
    field.nanos = micros * 1000


def _set_micros(field: Timestamp, micros: int | None) -> None:
    """`_set_time` of a time read as microseconds since the epoch."""
    if micros is not None:
        field.seconds, rest = divmod(micros, 1_000_000)
        field.nanos = rest * 1000


def _batch_fields(view: BatchView) -> dict[str, Any]:
    batch, counts = view.batch, view.counts
    return {
        "batch_id": str(batch.id),
        "tenant_id": str(batch.tenant_id),
        "status": batch.status.value,
        "total_count": batch.total_count,
        "success_count": counts.succeeded,
        "failed_count": counts.failed,
        "cancelled_count": counts.cancelled,
        "pending_count": view.pending_count,
        "frozen_credits": batch.frozen_credits,
        "credits_spent": counts.credits_spent,
        "refunded_credits": counts.refunded_credits,
        "settlement_status": batch.settlement_status.value,
        "request_id": batch.request_id or "",
        "webhook_url": batch.webhook_url or "",
        "retry_of_batch_id": str(batch.retry_of) if batch.retry_of else "",
        "retry_batch_ids": [str(retry) for retry in view.retries],
        "name": batch.name or "",
        "metadata": batch.metadata or {},
    }


def _set_batch_times(message: batch_pb2.Batch, view: BatchView) -> batch_pb2.Batch:
    batch = view.batch
    _set_time(message.created_at, batch.created_at)
    _set_time(message.finished_at, batch.finished_at)
    _set_time(message.deadline_at, batch.deadline_at)
    return message


def batch_message(view: BatchView) -> batch_pb2.Batch:
    """The Batch message of a batch and its counters."""
    return _set_batch_times(batch_pb2.Batch(**_batch_fields(view)), view)


def batch_page(views: Sequence[BatchView], next_cursor: str) -> batch_pb2.ListBatchesResponse:
    """The ListBatches response: each batch built in place in the response (no copies)."""
    response = batch_pb2.ListBatchesResponse(next_cursor=next_cursor)
    add = response.batches.add
    for view in views:
        _set_batch_times(add(**_batch_fields(view)), view)
    return response


def task_page(tasks: Sequence[TaskSummary], next_cursor: str) -> batch_pb2.ListTasksResponse:
    """The ListTasks response: each task built in place in the response, its times set field by
    field (a third of the cost of Task and Timestamp messages built apart and copied in)."""
    response = batch_pb2.ListTasksResponse(next_cursor=next_cursor)
    add = response.tasks.add
    for task in tasks:
        message = add(
            task_id=task.id,
            batch_id=task.batch_id,
            batch_index=task.batch_index,
            status=task.status,
            model=task.model,
            prompt=task.prompt,
            unit_price=task.unit_price,
            video_url=task.video_url or "",
            error_message=task.error_message or "",
            failure_type=task.failure_type or "",
            attempts=task.attempts,
            current_attempt=task.current_attempt,
            last_error=task.last_error or "",
            credits_charged=task.credits_charged,
            credits_refunded=task.credits_refunded,
            duration_seconds=task.duration_seconds or 0,
            custom_id=task.custom_id or "",
            metadata=task.metadata or {},
        )
        _set_micros(message.created_at, task.created_at_us)
        _set_micros(message.finished_at, task.finished_at_us)
        _set_micros(message.started_at, task.started_at_us)
        if task.status == "running":
            _set_micros(message.next_attempt_at, task.next_attempt_at_us)
        settings = stored_settings_message(task.settings_json)
        if settings is not None:
            message.settings.CopyFrom(settings)
    return response


def _pairs(metadata: Mapping[str, str]) -> Metadata:
    return tuple(metadata.items())


def request_items(request: batch_pb2.CreateBatchRequest) -> tuple[BatchItem, ...]:
    """The items of a create request, sent as BatchItem messages or as columns (not both)."""
    if not request.HasField("item_columns"):
        return tuple(
            BatchItem(
                item.prompt,
                item.model,
                item.duration_seconds,
                item.custom_id,
                _pairs(item.metadata),
                settings_from_message(item.settings),
            )
            for item in request.items
        )
    columns = request.item_columns
    count = len(columns.prompts)
    if (
        request.items
        or not count == len(columns.models) == len(columns.duration_seconds)
        or len(columns.custom_ids) not in (0, count)
        or len(columns.metadata) not in (0, count)
        or len(columns.settings) not in (0, count)
    ):
        raise InvalidArgument("items must be sent as messages or as columns of one length", field="items")
    if not columns.custom_ids and not columns.metadata and not columns.settings:
        return tuple(map(BatchItem, columns.prompts, columns.models, columns.duration_seconds))
    custom_ids = columns.custom_ids or [""] * count
    labels = [_pairs(entry.pairs) for entry in columns.metadata] if columns.metadata else [()] * count
    settings = (
        list(map(settings_from_message, columns.settings)) if columns.settings else [NO_SETTINGS] * count
    )
    return tuple(
        map(
            BatchItem, columns.prompts, columns.models, columns.duration_seconds, custom_ids, labels, settings
        )
    )


def create_command(request: batch_pb2.CreateBatchRequest, items: tuple[BatchItem, ...]) -> CreateBatch:
    """The CreateBatch command of a request (its items read apart: a stream sends them in parts)."""
    return from_fields(CreateBatch, request, items=items, metadata=_pairs(request.metadata))


def create_response(result: CreateBatchResult) -> batch_pb2.CreateBatchResponse:
    """The CreateBatch response (cost_per_video unset for a batch of mixed prices)."""
    return to_message(batch_pb2.CreateBatchResponse, result)


class BatchServicer(batch_pb2_grpc.BatchServiceServicer):
    """The gRPC face of `BatchHandlers`."""

    def __init__(self, handlers: BatchHandlers) -> None:
        self._handlers = handlers

    async def CreateBatch(  # noqa: N802 (gRPC method name)
        self, request: batch_pb2.CreateBatchRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> batch_pb2.CreateBatchResponse:
        command = create_command(request, request_items(request))
        return create_response(await self._handlers.intake.create_batch(command))

    async def QuoteBatch(  # noqa: N802 (gRPC method name)
        self, request: batch_pb2.CreateBatchRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> batch_pb2.BatchQuote:
        stored, item_prices = await self._handlers.intake.quote_batch(
            create_command(request, request_items(request))
        )
        answer = batch_pb2.BatchQuote(
            quote_id=stored.quote_id,
            required_credits=stored.total,
            item_prices=item_prices,
            total_count=len(item_prices),
        )
        answer.expires_at.FromDatetime(stored.expires_at)
        return answer

    async def CreateBatchStream(  # noqa: N802 (gRPC method name)
        self,
        requests: AsyncIterator[batch_pb2.CreateBatchRequest],
        context: grpc.aio.ServicerContext[object, object],
    ) -> batch_pb2.CreateBatchResponse:
        first: batch_pb2.CreateBatchRequest | None = None
        items: list[BatchItem] = []
        async for request in requests:
            # Each part's items are read as it arrives: no part is kept once read.
            items += request_items(request)
            if first is None:
                first = request
                first.ClearField("item_columns")
                first.ClearField("items")
        if first is None:
            raise InvalidArgument("a create stream needs at least one message", field="items")
        command = create_command(first, tuple(items))
        del items
        return create_response(await self._handlers.intake.create_batch(command))

    async def RetryFailed(  # noqa: N802 (gRPC method name)
        self, request: batch_pb2.RetryFailedRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> batch_pb2.CreateBatchResponse:
        command = RetryFailed(
            request.tenant_id, request.batch_id, request.request_id, tuple(request.failure_types)
        )
        return create_response(await self._handlers.retries.retry_failed(command))

    async def GetBatch(  # noqa: N802 (gRPC method name)
        self, request: batch_pb2.GetBatchRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> batch_pb2.Batch:
        return batch_message(await self._handlers.reads.get_batch(request.tenant_id, request.batch_id))

    async def ListBatches(  # noqa: N802 (gRPC method name)
        self, request: batch_pb2.ListBatchesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> batch_pb2.ListBatchesResponse:
        views, next_cursor = await self._handlers.reads.list_batches(
            ListBatches(
                request.tenant_id,
                request.status,
                request.cursor,
                request.limit,
                settlement_status=request.settlement_status,
                created_from=request_instant(request, "created_from"),
                created_to=request_instant(request, "created_to"),
                name=request.name,
                metadata=_pairs(request.metadata),
            )
        )
        return batch_page(views, next_cursor)

    async def CountOpenBatches(  # noqa: N802 (gRPC method name)
        self, request: batch_pb2.CountOpenBatchesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> batch_pb2.CountOpenBatchesResponse:
        count = await self._handlers.reads.count_open_batches(request.tenant_id, request.limit)
        return batch_pb2.CountOpenBatchesResponse(open_batches=count)

    async def AuditProviderJobs(  # noqa: N802 (gRPC method name)
        self, request: batch_pb2.AuditProviderJobsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> batch_pb2.AuditProviderJobsResponse:
        findings = await self._handlers.reads.provider_job_findings()
        return batch_pb2.AuditProviderJobsResponse(
            findings=[to_message(batch_pb2.ProviderJobFinding, found) for found in findings]
        )

    async def ListProviderJobs(  # noqa: N802 (gRPC method name)
        self, request: batch_pb2.ListProviderJobsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> batch_pb2.ListProviderJobsResponse:
        jobs, next_cursor = await self._handlers.reads.provider_jobs(
            request.batch_id, request.cursor, request.limit
        )
        return batch_pb2.ListProviderJobsResponse(
            jobs=[to_message(batch_pb2.ProviderJob, job) for job in jobs], next_cursor=next_cursor
        )

    async def ListDegradedModels(  # noqa: N802 (gRPC method name)
        self, request: batch_pb2.ListDegradedModelsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> batch_pb2.ListDegradedModelsResponse:
        degraded = await self._handlers.reads.degraded_models()
        models = []
        for found in degraded:
            model = batch_pb2.DegradedModel(
                model=found.breaker.model,
                state=found.breaker.state.value,
                failures=found.breaker.failures,
                outage_seconds=found.outage_seconds,
            )
            if found.opened_at is not None:
                model.opened_at.FromDatetime(found.opened_at)
            models.append(model)
        return batch_pb2.ListDegradedModelsResponse(models=models)

    async def ListProviderRoutes(  # noqa: N802 (gRPC method name)
        self, request: batch_pb2.ListProviderRoutesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> batch_pb2.ListProviderRoutesResponse:
        usages = await self._handlers.reads.provider_routes()
        return batch_pb2.ListProviderRoutesResponse(
            routes=[to_message(batch_pb2.ProviderRouteUsage, usage) for usage in usages]
        )

    async def ListTasks(  # noqa: N802 (gRPC method name)
        self, request: batch_pb2.ListTasksRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> batch_pb2.ListTasksResponse:
        found, next_cursor = await self._handlers.reads.list_tasks(
            ListTasks(
                request.tenant_id,
                request.batch_id,
                request.status,
                request.cursor,
                request.limit,
                failure_type=request.failure_type,
                statuses=tuple(request.statuses),
            )
        )
        return task_page(found, next_cursor)

    async def CancelBatch(  # noqa: N802 (gRPC method name)
        self, request: batch_pb2.CancelBatchRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> batch_pb2.Batch:
        return batch_message(
            await self._handlers.cancellation.cancel_batch(request.tenant_id, request.batch_id)
        )

    async def GetBatchBreakdown(  # noqa: N802 (gRPC method name)
        self, request: batch_pb2.GetBatchRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> batch_pb2.BatchBreakdown:
        return breakdown_message(
            await self._handlers.reads.batch_breakdown(request.tenant_id, request.batch_id)
        )

    async def UploadInputFile(  # noqa: N802 (gRPC method name)
        self, request: batch_pb2.UploadInputFileRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> batch_pb2.InputFile:
        uploads = self._handlers.input_files
        if uploads is None:
            raise InputFilesUnavailable("input files are not configured on this server")
        stored = await uploads.upload(request.tenant_id, request.filename, request.content)
        return input_file_message(stored)

    async def ListBatchTotals(  # noqa: N802 (gRPC method name)
        self, request: batch_pb2.ListBatchTotalsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> batch_pb2.ListBatchTotalsResponse:
        found, next_cursor = await self._handlers.reads.list_batch_totals(
            request.cursor,
            request.limit,
            batch_ids=list(request.batch_ids),
            created_from=request_instant(request, "created_from"),
        )
        return batch_pb2.ListBatchTotalsResponse(
            batches=[totals_message(totals) for totals in found], next_cursor=next_cursor
        )


def breakdown_message(breakdown: BatchBreakdown) -> batch_pb2.BatchBreakdown:
    """The BatchBreakdown message (unset timestamps for what has not happened yet)."""
    return to_message(
        batch_pb2.BatchBreakdown,
        breakdown,
        groups=[
            from_fields(batch_pb2.OutcomeGroup, group, failure_type=group.failure_type or "")
            for group in breakdown.groups
        ],
    )


def totals_message(totals: BatchTotals) -> batch_pb2.BatchTotals:
    """The BatchTotals message of one batch."""
    return from_fields(
        batch_pb2.BatchTotals, totals, batch_id=str(totals.batch_id), tenant_id=str(totals.tenant_id)
    )
