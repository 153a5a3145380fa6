"""Reads task outcomes from the batch service: for settling a batch whose events are late, and for
reconciliation."""

from __future__ import annotations

import grpc
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

    async def batch_totals(self) -> dict[BatchId, BatchOutcomeTotals]:
        """What every batch's task outcomes are worth; a refusal or outage is raised as a ServiceError."""
        totals: dict[BatchId, BatchOutcomeTotals] = {}
        cursor = ""
        while True:
            request = batch_pb2.ListBatchTotalsRequest(cursor=cursor, limit=self._page_size)
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
