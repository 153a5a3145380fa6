"""Creating a batch (POST /api/enterprise/video-batch): the idempotency key, the tenant's room for
another batch, the webhook URL's check, and the call to the batch service (one message, or a stream
of parts for a very large batch, ADR-086).

The body was read and shape-checked by `batch_input`; the rules of a batch are the batch
service's: it answers every violation at once, which `errors` maps.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace

import grpc
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.webhook.v1 import webhook_pb2

from libs.config import Settings
from libs.errors import FieldViolation
from libs.rpc.errors import remote_error
from services.gateway.adapters.backends import Backends
from services.gateway.http.errors import api_error_from_remote, validation_error
from services.gateway.http.middleware import REQUEST_ID_HEADER
from services.gateway.schemas.batches import BatchColumns
from services.gateway.schemas.fields import MAX_REQUEST_ID_CHARS, is_valid_request_id

# Prompt characters per gRPC message: at most 4 bytes each in UTF-8, 8 MiB with their other
# columns, well inside the 64 MiB message limit (and a small batch is one unary call).
MAX_PART_CHARS = 2 * 1024 * 1024


def part_bounds(payload: BatchColumns) -> list[int]:
    """Where the parts of at most MAX_PART_CHARS prompt characters each begin, and the end (two
    bounds, one part, for nearly every batch)."""
    count = len(payload.prompts)
    bounds = [0]
    chars = 0
    for index, prompt in enumerate(payload.prompts):
        chars += len(prompt) + len(payload.custom_ids[index] if payload.custom_ids else "")
        if chars > MAX_PART_CHARS and index > bounds[-1]:
            bounds.append(index)
            chars = len(prompt)
    bounds.append(count)
    return bounds


def request_parts(
    payload: BatchColumns, first: batch_pb2.CreateBatchRequest
) -> Iterator[batch_pb2.CreateBatchRequest]:
    """`first` (the batch's fields) with the first part's items, then a request per further part,
    each built when the stream asks for it: one part's message exists at a time."""
    for start, end in itertools.pairwise(part_bounds(payload)):
        part = first if start == 0 else batch_pb2.CreateBatchRequest()
        part.item_columns.CopyFrom(_columns(payload, start, end))
        yield part


def _columns(payload: BatchColumns, start: int, end: int) -> batch_pb2.BatchItemColumns:
    # Columns, not one message per item: list copies in C for 10,000 items.
    columns = batch_pb2.BatchItemColumns(
        prompts=payload.prompts[start:end],
        models=payload.models[start:end],
        duration_seconds=payload.durations[start:end],
        custom_ids=payload.custom_ids[start:end],
    )
    if payload.settings:
        columns.settings.extend(payload.settings[start:end])
    if payload.metadata:
        add = columns.metadata.add
        for labels in payload.metadata[start:end]:
            add().pairs.update(labels)
    return columns


# The IETF draft's idempotency header; X-Request-ID (the older one) still works.
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"


def presented_key(idempotency_key_header: str | None, request_id_header: str | None) -> str:
    """The key the client sent ("" for none): Idempotency-Key, else X-Request-ID. Both sent with
    different values is a 422: which one the client meant cannot be guessed."""
    if idempotency_key_header and request_id_header and idempotency_key_header != request_id_header:
        message = f"{IDEMPOTENCY_KEY_HEADER} and {REQUEST_ID_HEADER} disagree; send one, or the same value"
        raise validation_error(
            [{"loc": ("header", IDEMPOTENCY_KEY_HEADER), "msg": message, "type": "mismatch"}]
        )
    return idempotency_key_header or request_id_header or ""


def idempotency_key(presented: str, generated: str, header: str = REQUEST_ID_HEADER) -> str:
    """The client's X-Request-ID (`presented`, "" when absent), or the id generated for this request."""
    if not presented:
        return generated
    if not is_valid_request_id(presented):
        message = f"must be 1..{MAX_REQUEST_ID_CHARS} printable ASCII characters"
        raise validation_error([{"loc": ("header", header), "msg": message}])
    return presented


def _batch_fields(tenant_id: str, payload: BatchColumns, api_key_id: str) -> batch_pb2.CreateBatchRequest:
    """The batch's own fields of a create (or quote) request, without its items."""
    return batch_pb2.CreateBatchRequest(
        tenant_id=tenant_id,
        webhook_url=payload.webhook_url or "",
        deadline_seconds=payload.deadline_seconds or 0,
        name=payload.name or "",
        metadata=payload.batch_metadata or {},
        api_key_id=api_key_id,
        quote_id=(payload.quote_id or "").lower(),
    )


class BatchCreation:
    """Validates a create, checks the tenant's open batches and the webhook URL, and creates."""

    def __init__(self, settings: Settings, backends: Backends) -> None:
        self._batch = backends.batch
        self._webhook = backends.webhook
        self._deadline = settings.grpc_deadline_seconds
        # The tenant's room for another batch is checked by the batch service, in the create's own
        # transaction (ADR-138): one limit across every gateway replica, and no call of its own.
        self._max_open_batches = settings.max_open_batches
        # A stream carries up to 64 MiB to a batch service that stores 10,000 tasks: more time.
        self._stream_deadline = self._deadline * 6

    async def create(
        self,
        tenant_id: str,
        request_id: str,
        payload: BatchColumns,
        *,
        generated: bool,
        api_key_id: str = "",
    ) -> batch_pb2.CreateBatchResponse:
        """Creates a shape-checked batch (`generated`: the key was not the client's); a request
        too large for one gRPC message goes as a stream of parts, still one create."""
        if payload.webhook_url:
            await self._check_webhook_url(payload.webhook_url)
        first = _batch_fields(tenant_id, payload, api_key_id)
        first.request_id = request_id
        first.request_id_generated = generated
        first.open_batch_limit = self._max_open_batches
        if len(part_bounds(payload)) <= 2:
            first.item_columns.CopyFrom(_columns(payload, 0, len(payload.prompts)))
            return await self._batch.CreateBatch(first, timeout=self._deadline)
        return await self._batch.CreateBatchStream(
            request_parts(payload, first), timeout=self._stream_deadline
        )

    async def quote(self, tenant_id: str, payload: BatchColumns, api_key_id: str) -> batch_pb2.BatchQuote:
        """Prices a shape-checked create body and stores the quote (nothing frozen, no batch)."""
        if payload.quote_id:
            raise validation_error(
                [
                    {
                        "loc": ("body", "quote_id"),
                        "msg": "a quote cannot cite a quote",
                        "type": "extra_forbidden",
                    }
                ]
            )
        if payload.webhook_url:
            await self._check_webhook_url(payload.webhook_url)
        request = _batch_fields(tenant_id, payload, api_key_id)
        request.item_columns.CopyFrom(_columns(payload, 0, len(payload.prompts)))
        return await self._batch.QuoteBatch(request, timeout=self._stream_deadline)

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
