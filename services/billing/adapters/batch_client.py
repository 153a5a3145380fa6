"""Reads task outcomes from the batch service: for settling a batch whose events are late, and for
reconciliation."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from reelbatch.proto.batch.v1 import batch_pb2, batch_pb2_grpc

from libs.field_mapping import from_fields
from libs.rpc.errors import as_service_error, remote_error
from services.billing.domain.ids import BatchId, TaskId, parse_batch_id
from services.billing.domain.ledger import OutcomeKind, TaskOutcome
from services.billing.domain.reconciliation import BatchOutcomeTotals

# Queued and running tasks are not terminal: they have no outcome yet.
_OUTCOME_BY_STATUS = {
    "succeeded": OutcomeKind.CAPTURE,
    "failed": OutcomeKind.REFUND,
    "cancelled": OutcomeKind.REFUND,
}


class BatchServiceOutcomes:
    """Pages through batch's tasks and batch totals (admin scope)."""

    def __init__(self, channel: grpc.aio.Channel, *, deadline_seconds: float, page_size: int = 500) -> None:
        self._stub = batch_pb2_grpc.BatchServiceStub(channel)
        self._deadline = deadline_seconds
        self._page_size = page_size

    async def terminal_outcomes(self, batch_id: BatchId) -> list[TaskOutcome]:
        """Outcomes of the batch's terminal tasks; a refusal or outage is raised as a ServiceError."""
        outcomes: list[TaskOutcome] = []
        cursor = ""
        while True:
            request = batch_pb2.ListTasksRequest(
                tenant_id="", batch_id=str(batch_id), cursor=cursor, limit=self._page_size
            )
            try:
                page = await self._stub.ListTasks(request, timeout=self._deadline)
            except grpc.aio.AioRpcError as error:
                raise as_service_error(remote_error(error)) from error
            for task in page.tasks:
                kind = _OUTCOME_BY_STATUS.get(task.status)
                if kind is not None:
                    outcomes.append(TaskOutcome(batch_id, TaskId(task.task_id), task.model, kind))
            if not page.next_cursor:
                return outcomes
            cursor = page.next_cursor

    async def batch_totals(
        self, batch_ids: Collection[BatchId] | None = None, created_from: datetime | None = None
    ) -> dict[BatchId, BatchOutcomeTotals]:
        """What every batch's task outcomes are worth (with a filter: those of `batch_ids` and of
        the batches created since `created_from`); a refusal or outage is raised as a ServiceError."""
        if batch_ids is None and created_from is None:
            return await self._totals(batch_pb2.ListBatchTotalsRequest())
        totals: dict[BatchId, BatchOutcomeTotals] = {}
        named = sorted(str(batch_id) for batch_id in batch_ids or ())
        # One request names at most a page of batches (the batch service's limit is 1,000).
        for start in range(0, len(named), self._page_size):
            chunk = named[start : start + self._page_size]
            totals |= await self._totals(batch_pb2.ListBatchTotalsRequest(batch_ids=chunk))
        if created_from is not None:
            since = Timestamp()
            since.FromDatetime(created_from)
            totals |= await self._totals(batch_pb2.ListBatchTotalsRequest(created_from=since))
        return totals

    async def _totals(self, filters: batch_pb2.ListBatchTotalsRequest) -> dict[BatchId, BatchOutcomeTotals]:
        totals: dict[BatchId, BatchOutcomeTotals] = {}
        cursor = ""
        while True:
            request = batch_pb2.ListBatchTotalsRequest(cursor=cursor, limit=self._page_size)
            request.MergeFrom(filters)
            try:
                page = await self._stub.ListBatchTotals(request, timeout=self._deadline)
            except grpc.aio.AioRpcError as error:
                raise as_service_error(remote_error(error)) from error
            for batch in page.batches:
                batch_id = parse_batch_id(batch.batch_id)
                totals[batch_id] = from_fields(BatchOutcomeTotals, batch, batch_id=batch_id)
            if not page.next_cursor:
                return totals
            cursor = page.next_cursor
