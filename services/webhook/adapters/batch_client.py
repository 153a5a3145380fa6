"""Reads a batch's REST fields from the batch service (admin scope) for batch.completed payloads."""

from __future__ import annotations

import grpc
from reelbatch.proto.batch.v1 import batch_pb2, batch_pb2_grpc

from libs.public_batch import batch_event_fields
from libs.rpc.errors import as_service_error, remote_error
from services.webhook.domain.records import BatchSnapshot


class BatchServiceReader:
    """`GetBatch` with tenant_id "" (admin scope); refusals and outages raise ServiceError."""

    def __init__(self, channel: grpc.aio.Channel, *, deadline_seconds: float) -> None:
        self._stub = batch_pb2_grpc.BatchServiceStub(channel)
        self._deadline = deadline_seconds

    async def batch(self, batch_id: str) -> BatchSnapshot:
        try:
            batch = await self._stub.GetBatch(
                batch_pb2.GetBatchRequest(tenant_id="", batch_id=batch_id), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as error:
            raise as_service_error(remote_error(error)) from error
        return batch_snapshot(batch)


def batch_snapshot(batch: batch_pb2.Batch) -> BatchSnapshot:
    """The snapshot of batch's Batch message, its event fields the REST view's (`libs.public_batch`)."""
    return BatchSnapshot(
        status=batch.status, webhook_url=batch.webhook_url, event_fields=batch_event_fields(batch)
    )
