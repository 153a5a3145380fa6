"""Creating a batch (POST /api/enterprise/video-batch), answered as the 202 body's JSON bytes.

Used by the FastAPI route (services/gateway/api/customer.py), which documents it: one parse, one
shape check and one backend call. The rules of a batch are the batch service's: it answers every
violation at once, which `errors` maps.
"""

from __future__ import annotations

from dataclasses import replace

import grpc
import orjson
from pydantic import ValidationError
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.webhook.v1 import webhook_pb2

from libs.config import Settings
from libs.errors import FieldViolation
from libs.rpc.errors import remote_error
from services.gateway.adapters.backends import Backends
from services.gateway.http.errors import api_error_from_remote, validation_error
from services.gateway.http.middleware import REQUEST_ID_HEADER
from services.gateway.http.rate_limits import OpenBatchLimit
from services.gateway.schemas.batches import (
    BatchAccepted,
    BatchColumns,
    CreateBatchRequest,
    plainly_valid_batch,
)
from services.gateway.schemas.fields import MAX_REQUEST_ID_CHARS, is_valid_request_id, json_bytes


def idempotency_key(presented: str, generated: str) -> str:
    """The client's X-Request-ID (`presented`, "" when absent), or the id generated for this request."""
    if not presented:
        return generated
    if not is_valid_request_id(presented):
        message = f"must be 1..{MAX_REQUEST_ID_CHARS} printable ASCII characters"
        raise validation_error([{"loc": ("header", REQUEST_ID_HEADER), "msg": message}])
    return presented


def parse_create_batch(body: bytes) -> BatchColumns:
    """Parses the create body and checks its shape: a plainly right one column by column (10,000
    items in a few milliseconds), anything else with the model, which names the error."""
    try:
        plain = plainly_valid_batch(orjson.loads(body))
    except orjson.JSONDecodeError:
        plain = None
    if plain is not None:
        return plain
    try:
        return BatchColumns.of(CreateBatchRequest.model_validate_json(body))
    except ValidationError as error:
        raise validation_error(
            error.errors(include_url=False, include_context=False, include_input=False)
        ) from None


class BatchCreation:
    """Validates a create, checks the tenant's open batches and the webhook URL, and creates."""

    def __init__(self, settings: Settings, backends: Backends) -> None:
        self._batch = backends.batch
        self._webhook = backends.webhook
        self._deadline = settings.grpc_deadline_seconds
        self._open_batches = OpenBatchLimit(backends.batch, settings.max_open_batches, self._deadline)

    async def create(
        self, tenant_id: str, presented_request_id: str, generated_request_id: str, body: bytes
    ) -> bytes:
        """The 202 body (`BatchAccepted`) as JSON; refusals raise (`ApiError`, gRPC errors)."""
        request_id = idempotency_key(presented_request_id, generated_request_id)
        payload = parse_create_batch(body)
        await self._open_batches.ensure_room(tenant_id)
        if payload.webhook_url:
            await self._check_webhook_url(payload.webhook_url)
        response = await self._batch.CreateBatch(
            batch_pb2.CreateBatchRequest(
                tenant_id=tenant_id,
                request_id=request_id,
                # Columns, not one message per item: three list copies in C for 10,000 items.
                item_columns=batch_pb2.BatchItemColumns(
                    prompts=payload.prompts, models=payload.models, duration_seconds=payload.durations
                ),
                webhook_url=payload.webhook_url or "",
                deadline_seconds=payload.deadline_seconds or 0,
                request_id_generated=not presented_request_id,
            ),
            timeout=self._deadline,
        )
        return json_bytes(BatchAccepted.fields_of(response, request_id))

    async def _check_webhook_url(self, url: str) -> None:
        """The SSRF rule lives in the webhook service; a refusal answers 422 before any charge, as
        a violation of the body's `webhook_url` (the field the client sent it in)."""
        try:
            await self._webhook.ValidateUrl(webhook_pb2.ValidateUrlRequest(url=url), timeout=self._deadline)
        except grpc.aio.AioRpcError as error:
            refusal = remote_error(error)
            if refusal.code is not grpc.StatusCode.INVALID_ARGUMENT:
                raise
            at_webhook_url = FieldViolation(("webhook_url",), refusal.reason, refusal.message)
            raise api_error_from_remote(replace(refusal, violations=(at_webhook_url,))) from None
