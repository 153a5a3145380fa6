"""Customer endpoints under /api/enterprise (authenticated by X-API-Key)."""

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.http.auth import ApiCaller, ApiKeyAuthenticator, caller_dependency, tenant_dependency
from services.gateway.http.errors import ApiError
from services.gateway.http.middleware import REQUEST_ID_HEADER, request_id_of
from services.gateway.http.params import (
    DEFAULT_PAGE_SIZE,
    UUID_PATTERN,
    BatchIdPath,
    PageCursor,
    PageLimit,
    PageQuery,
    documented,
    error_responses,
    metadata_filter,
)
from services.gateway.schemas.batches import (
    BatchAccepted,
    BatchColumns,
    BatchPage,
    BatchStatus,
    BatchView,
    RetryFailedRequest,
)
from services.gateway.schemas.credits import BatchBillingView, CreditsView, LedgerPage
from services.gateway.schemas.fields import MAX_REQUEST_ID_CHARS, json_bytes
from services.gateway.schemas.tasks import TaskPage, TaskStatus
from services.gateway.use_cases.batch_creation import (
    IDEMPOTENCY_KEY_HEADER,
    BatchCreation,
    idempotency_key,
    presented_key,
)
from services.gateway.use_cases.batch_input import read_create_body
from services.gateway.use_cases.batch_reads import BatchReads

MAX_BATCH_NAME_CHARS = batch_pb2.CREATE_BATCH_LIMIT_MAX_NAME_CHARS
# The create path: its body is read as a stream, with its own size limit (the middleware's).
CREATE_BATCH_PATH = "/api/enterprise/video-batch"

# On an answer that replays an earlier one (the same batch, nothing frozen again).
REPLAYED_HEADER = "Idempotent-Replayed"

# The create body is parsed by hand (bytes -> model_validate_json, with the configured limits),
# so its schema is declared here for /openapi.json.
_KEY_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": IDEMPOTENCY_KEY_HEADER,
        "in": "header",
        "required": False,
        "description": (
            f"Idempotency key: 1..{MAX_REQUEST_ID_CHARS} printable ASCII characters. The same key and "
            f"body replay the first answer (with `{REPLAYED_HEADER}: true`); the same key with another "
            "body is a 409 naming the batch that holds it. Generated when absent."
        ),
        "schema": {"type": "string", "maxLength": MAX_REQUEST_ID_CHARS},
    },
    {
        "name": REQUEST_ID_HEADER,
        "in": "header",
        "required": False,
        "description": (
            f"The idempotency key's older name, still accepted. Sent with a different "
            f"{IDEMPOTENCY_KEY_HEADER}: 422."
        ),
        "schema": {"type": "string", "maxLength": MAX_REQUEST_ID_CHARS},
    },
]
_CREATE_BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "JSON (`CreateBatchRequest`), or JSONL (`application/jsonl`): one item per line, or an "
            'OpenAI Batch-style line `{"custom_id": "..", "body": {..item fields..}}`, with the '
            "batch's own fields as query parameters. Either may be sent with `Content-Encoding: gzip`. "
            "At most REELBATCH_MAX_CREATE_BODY_BYTES (default 64 MiB) as sent and decompressed."
        ),
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/CreateBatchRequest"}},
            "application/jsonl": {"schema": {"type": "string", "description": "One JSON item per line."}},
        },
    },
    "parameters": [
        *_KEY_PARAMETERS,
        {
            "name": "Content-Encoding",
            "in": "header",
            "required": False,
            "description": "`gzip` for a compressed body (JSON or JSONL).",
            "schema": {"type": "string", "enum": ["gzip", "identity"]},
        },
        *(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": f"JSONL bodies only: the batch's `{name}` (as in the JSON body).",
                "schema": {"type": "integer" if name == "deadline_seconds" else "string"},
            }
            for name in ("webhook_url", "deadline_seconds", "name")
        ),
        {
            "name": "metadata[key]",
            "in": "query",
            "required": False,
            "description": "JSONL bodies only: one pair of the batch's `metadata` per parameter.",
            "schema": {"type": "string"},
        },
    ],
}


def request_idempotency_key(request: Request) -> tuple[str, bool]:
    """The client's Idempotency-Key (or X-Request-ID), else the id generated for this request; and
    whether it was generated."""
    headers = request.headers
    presented = presented_key(headers.get(IDEMPOTENCY_KEY_HEADER), headers.get(REQUEST_ID_HEADER))
    header = IDEMPOTENCY_KEY_HEADER if headers.get(IDEMPOTENCY_KEY_HEADER) else REQUEST_ID_HEADER
    return idempotency_key(presented, request_id_of(request.scope), header), not presented


async def create_body_of(request: Request, settings: Settings) -> BatchColumns:
    """The create body of `request` (JSON or JSONL, gzip or not), read as a stream and shape-checked:
    the create's and the quote's (same body)."""
    return await read_create_body(
        request.stream(),
        content_type=request.headers.get("content-type", ""),
        content_encoding=request.headers.get("content-encoding", ""),
        query=request.query_params.multi_items(),
        limit=settings.max_create_body_bytes,
    )


def replayed_headers(replayed: bool) -> dict[str, str] | None:
    """`Idempotent-Replayed: true` on an answer that replays an earlier one."""
    return {REPLAYED_HEADER: "true"} if replayed else None


def json_answer(document: Mapping[str, Any]) -> Response:
    """A 200 answering a read's fields as JSON: the route's `response_model` documents the shape,
    and the fields come from the model's own `fields_of`, so nothing is validated twice."""
    return Response(json_bytes(document), media_type="application/json")


def customer_router(
    settings: Settings,
    backends: Backends,
    authenticator: ApiKeyAuthenticator,
    reads: BatchReads,
    creation: BatchCreation,
) -> APIRouter:
    """The /api/enterprise routes, calling batch and billing with the caller's tenant id."""
    router = APIRouter(
        prefix="/api/enterprise",
        tags=["customer"],
        responses=error_responses(401, 500, 503),
    )
    authenticated = Depends(tenant_dependency(authenticator))
    deadline = settings.grpc_deadline_seconds
    calling = Depends(caller_dependency(authenticator))

    @router.post(
        "/video-batch",
        **documented(
            BatchAccepted,
            "Create a batch of videos (price frozen up front)",
            402,
            409,
            413,
            415,
            422,
            429,
            status_code=202,
            openapi_extra=_CREATE_BATCH_BODY,
        ),
    )
    async def create_video_batch(request: Request, caller: Annotated[ApiCaller, calling]) -> Response:
        request_id, generated = request_idempotency_key(request)
        payload = await create_body_of(request, settings)
        response = await creation.create(
            caller.tenant_id, request_id, payload, generated=generated, api_key_id=caller.key_id
        )
        # The 202 body's fields as JSON (the route's response_model documents them).
        return Response(
            json_bytes(BatchAccepted.fields_of(response, request_id)),
            status_code=202,
            media_type="application/json",
            headers=replayed_headers(response.replayed),
        )

    @router.get(
        "/video-batch",
        **documented(
            BatchPage,
            "List the tenant's batches, newest first",
            422,
            description="Filter by `name`, and by metadata: `metadata[key]=value` (every pair must match).",
            openapi_extra={
                "parameters": [
                    {
                        "name": "metadata[key]",
                        "in": "query",
                        "required": False,
                        "description": "Only batches whose metadata has this value at `key` (repeatable).",
                        "schema": {"type": "string"},
                    }
                ]
            },
        ),
    )
    async def list_video_batches(
        request: Request,
        tenant_id: Annotated[str, authenticated],
        status: Annotated[BatchStatus | None, Query(description="Only batches in this status.")] = None,
        name: Annotated[
            str | None, Query(max_length=MAX_BATCH_NAME_CHARS, description="Only batches of this name.")
        ] = None,
        cursor: PageCursor = None,
        limit: PageLimit = DEFAULT_PAGE_SIZE,
    ) -> Response:
        response = await backends.batch.ListBatches(
            batch_pb2.ListBatchesRequest(
                tenant_id=tenant_id,
                status=status or "",
                cursor=cursor or "",
                limit=limit,
                name=name or "",
                metadata=metadata_filter(request.query_params.multi_items()),
            ),
            timeout=deadline,
        )
        return json_answer(
            {
                "items": [BatchView.fields_of(batch) for batch in response.batches],
                "next_cursor": response.next_cursor or None,
            }
        )

    @router.get("/video-batch/{batch_id}", **documented(BatchView, "Get a batch: progress and money", 404))
    async def get_video_batch(tenant_id: Annotated[str, authenticated], batch_id: BatchIdPath) -> Response:
        return Response(await reads.batch(tenant_id, batch_id), media_type="application/json")

    @router.get(
        "/video-batch/{batch_id}/tasks",
        **documented(TaskPage, "List a batch's tasks in batch order", 404, 422),
    )
    async def list_video_batch_tasks(
        caller: Annotated[ApiCaller, calling],
        batch_id: BatchIdPath,
        status: Annotated[TaskStatus | None, Query(description="Only tasks in this status.")] = None,
        cursor: PageCursor = None,
        limit: PageLimit = DEFAULT_PAGE_SIZE,
    ) -> Response:
        page = await reads.task_page(caller, batch_id, status=status or "", cursor=cursor or "", limit=limit)
        return Response(page, media_type="application/json")

    @router.post(
        "/video-batch/{batch_id}/cancel",
        **documented(BatchView, "Cancel the tasks not yet started (they are refunded)", 404, 409),
    )
    async def cancel_video_batch(
        tenant_id: Annotated[str, authenticated], batch_id: BatchIdPath
    ) -> BatchView:
        batch = await backends.batch.CancelBatch(
            batch_pb2.CancelBatchRequest(tenant_id=tenant_id, batch_id=batch_id), timeout=deadline
        )
        return BatchView.from_proto(batch)

    @router.post(
        "/video-batch/{batch_id}/retry-failed",
        status_code=202,
        response_model=BatchAccepted,
        summary="Retry the failed items of a finished batch as a new batch (new reservation), once",
        description=(
            "A batch is retried at most once: a repeated, concurrent or later call answers the first "
            f"retry batch with the header `{REPLAYED_HEADER}: true` and freezes nothing more, whatever "
            "its X-Request-ID or `failure_types`. Only a retry refused with 402 (nothing frozen) leaves "
            "room for another call. A retry batch's own failed items can be retried once in turn."
        ),
        openapi_extra={"parameters": _KEY_PARAMETERS},
        responses=error_responses(402, 404, 409, 422),
    )
    async def retry_failed_video_batch(
        request: Request,
        tenant_id: Annotated[str, authenticated],
        batch_id: BatchIdPath,
        body: Annotated[RetryFailedRequest | None, Body()] = None,
    ) -> Response:
        request_id, _ = request_idempotency_key(request)
        response = await backends.batch.RetryFailed(
            batch_pb2.RetryFailedRequest(
                tenant_id=tenant_id,
                batch_id=batch_id,
                request_id=request_id,
                failure_types=(body.failure_types or []) if body else [],
            ),
            timeout=deadline,
        )
        return Response(
            json_bytes(BatchAccepted.fields_of(response, request_id)),
            status_code=202,
            media_type="application/json",
            headers=replayed_headers(response.replayed),
        )

    @router.get("/credits", response_model=CreditsView, summary="The tenant's balances")
    async def get_credits(tenant_id: Annotated[str, authenticated]) -> CreditsView:
        balance = await backends.billing.GetBalance(
            billing_pb2.GetBalanceRequest(tenant_id=tenant_id), timeout=deadline
        )
        return CreditsView.from_proto(balance)

    @router.get("/ledger", **documented(LedgerPage, "Changes of the available balance, newest first", 422))
    async def list_ledger_entries(
        tenant_id: Annotated[str, authenticated],
        page: PageQuery,
        batch_id: Annotated[
            str | None, Query(pattern=UUID_PATTERN, description="Only entries of this batch.")
        ] = None,
    ) -> LedgerPage:
        response = await backends.billing.ListLedgerEntries(
            billing_pb2.ListLedgerEntriesRequest(
                tenant_id=tenant_id,
                batch_id=(batch_id or "").lower(),
                cursor=page.cursor,
                limit=page.limit,
            ),
            timeout=deadline,
        )
        return LedgerPage.from_proto(response)

    @router.get(
        "/video-batch/{batch_id}/billing",
        **documented(BatchBillingView, "A batch's money: totals and every ledger transfer", 404, 422),
    )
    async def get_video_batch_billing(
        tenant_id: Annotated[str, authenticated],
        batch_id: BatchIdPath,
        cursor: PageCursor = None,
        limit: PageLimit = DEFAULT_PAGE_SIZE,
    ) -> BatchBillingView:
        ledger = await backends.billing.GetBatchLedger(
            billing_pb2.GetBatchLedgerRequest(batch_id=batch_id, cursor=cursor or "", limit=limit),
            timeout=deadline,
        )
        # Billing reads any batch's ledger: another tenant's batch is not found, like a batch read.
        if ledger.tenant_id != tenant_id:
            raise ApiError(404, "not_found", "batch not found")
        return BatchBillingView.from_proto(ledger)

    return router
