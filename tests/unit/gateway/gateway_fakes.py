"""In-memory fakes of the billing, batch and webhook stubs used by the gateway tests.

Refusals are raised as real `grpc.aio.AioRpcError`s whose trailing metadata is built from a
`ServiceError` by `libs.rpc.errors.status_for`, so the gateway decodes them the production way.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from reelbatch.proto.batch.v1 import batch_pb2, batch_pb2_grpc
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc
from reelbatch.proto.webhook.v1 import webhook_pb2, webhook_pb2_grpc

from libs.errors import ErrorCategory, NotFound, ServiceError, Unauthenticated
from libs.rpc.errors import status_for
from libs.token_bucket import BucketState, draw
from services.gateway.adapters.backends import Backends

TENANT_ID = "7d0c1a52-6f0e-4a4e-9a51-2b8f0f6a1c01"
OTHER_TENANT_ID = "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed"
BATCH_ID = "550e8400-e29b-41d4-a716-446655440000"
RETRY_ID = "9c5b94b1-35ad-49bb-b118-8e8fc24abf80"
TASK_ID = "6fa459ea-ee8a-4ca4-894e-db77e160355e"
API_KEY = "demo-key"
KEY_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
ADMIN_TOKEN = "test-admin-token-123"
CREATED_AT = datetime(2026, 1, 20, 10, 0, tzinfo=UTC)
# BatchView JSON of `FakeBatch`'s batch (processing: one task succeeded, one pending).
BATCH_VIEW = {
    "batch_id": BATCH_ID,
    "status": "processing",
    "total_count": 2,
    "success_count": 1,
    "failed_count": 0,
    "cancelled_count": 0,
    "pending_count": 1,
    "frozen_credits": 20,
    "credits_spent": 10,
    "refunded_credits": 0,
    "settlement_status": "pending",
    "created_at": "2026-01-20T10:00:00Z",
    "finished_at": None,
    "webhook_url": None,
    "retry_of": None,
    "retries": [],
    "name": None,
    "metadata": {},
}


class InsufficientCreditsError(ServiceError):
    """The batch service's 402 refusal, as the gateway receives it."""

    category = ErrorCategory.FAILED_PRECONDITION
    reason = "insufficient_credits"


class IdempotencyKeyReusedError(ServiceError):
    """The batch service's 409 refusal of a request id used with another body."""

    category = ErrorCategory.ALREADY_EXISTS
    reason = "idempotency_key_reused"


class _TooManyOpenBatches(ServiceError):
    """The batch service's refusal of a create over the tenant's open-batch limit."""

    category = ErrorCategory.RESOURCE_EXHAUSTED
    reason = "rate_limited"

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} batches may be in progress at once", retry_after_seconds=5)


def rpc_error(error: ServiceError) -> grpc.aio.AioRpcError:
    """The exception a grpc.aio stub raises when the server refused with `error`."""
    status = status_for(error)
    return grpc.aio.AioRpcError(
        code=status.code,
        initial_metadata=grpc.aio.Metadata(),
        trailing_metadata=grpc.aio.Metadata(*status.trailing_metadata),
        details=status.details,
        debug_error_string="",
    )


def transport_error(code: grpc.StatusCode, details: str = "") -> grpc.aio.AioRpcError:
    """A failure raised by gRPC itself (no ErrorInfo), e.g. UNAVAILABLE when nothing listens."""
    return grpc.aio.AioRpcError(
        code=code,
        initial_metadata=grpc.aio.Metadata(),
        trailing_metadata=grpc.aio.Metadata(),
        details=details,
        debug_error_string="",
    )


def timestamp(moment: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


def succeeded_task() -> batch_pb2.Task:
    """Task TASK_ID of BATCH_ID, succeeded, with its stored (unsigned) video URL."""
    return batch_pb2.Task(
        task_id=TASK_ID,
        batch_id=BATCH_ID,
        batch_index=0,
        status="succeeded",
        model="sora-2",
        prompt="A cat playing piano",
        unit_price=10,
        video_url=f"http://127.0.0.1:8000/videos/{BATCH_ID}/{TASK_ID}.mp4",
        attempts=1,
        finished_at=timestamp(CREATED_AT),
    )


class FakeStub:
    """Records every call (method, request, timeout); raises a queued failure when one is set."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Message, float | None]] = []
        self.failures: dict[str, BaseException] = {}

    def _record(self, method: str, request: Message, timeout: float | None) -> None:
        self.calls.append((method, request, timeout))
        failure = self.failures.get(method)
        if failure is not None:
            raise failure

    def requests(self, method: str) -> list[Any]:
        """The requests received by `method`, in order."""
        return [request for name, request, _ in self.calls if name == method]


class FakeBilling(FakeStub):
    """Billing with one tenant (`demo-key`) holding 5,000 credits."""

    def __init__(self) -> None:
        super().__init__()
        self.api_keys: dict[str, str] = {API_KEY: TENANT_ID}
        self.key_revoked = False
        self.ledger: list[billing_pb2.LedgerEntry] = []
        # The shared token buckets, by the rule billing applies in SQL; `now` is their clock.
        self.buckets: dict[str, BucketState] = {}
        self.now = time.monotonic
        self.draws = 0

    async def TakeRateTokens(
        self, request: billing_pb2.TakeRateTokensRequest, timeout: float | None = None
    ) -> billing_pb2.TakeRateTokensResponse:
        # Not in `calls`: tests that list the calls a route makes are about the route, not limits.
        self.draws += 1
        taken = draw(
            self.buckets.get(request.bucket),
            self.now(),
            wanted=request.wanted,
            rate=request.rate_per_second,
            burst=request.burst,
            returned=request.returned,
        )
        if request.wanted or request.returned:
            self.buckets[request.bucket] = taken.bucket
        return billing_pb2.TakeRateTokensResponse(granted=taken.granted, tokens_left=taken.bucket.tokens)

    async def AuthenticateApiKey(
        self, request: billing_pb2.AuthenticateApiKeyRequest, timeout: float | None = None
    ) -> billing_pb2.AuthenticateApiKeyResponse:
        self._record("AuthenticateApiKey", request, timeout)
        tenant_id = self.api_keys.get(request.api_key)
        if tenant_id is None:
            raise rpc_error(Unauthenticated("unknown API key"))
        return billing_pb2.AuthenticateApiKeyResponse(tenant_id=tenant_id, key_id=KEY_ID)

    async def GetApiKey(
        self, request: billing_pb2.GetApiKeyRequest, timeout: float | None = None
    ) -> billing_pb2.ApiKeyInfo:
        self._record("GetApiKey", request, timeout)
        if request.key_id != KEY_ID or request.tenant_id != self.api_keys.get(API_KEY):
            raise rpc_error(NotFound("API key not found"))
        info = billing_pb2.ApiKeyInfo(key_id=KEY_ID, tenant_id=request.tenant_id, prefix=API_KEY[:12])
        info.created_at.FromDatetime(CREATED_AT)
        if self.key_revoked:
            info.revoked_at.FromDatetime(CREATED_AT)
        return info

    async def RecordVideoAccess(
        self, request: billing_pb2.VideoAccess, timeout: float | None = None
    ) -> billing_pb2.RecordVideoAccessResponse:
        self._record("RecordVideoAccess", request, timeout)
        return billing_pb2.RecordVideoAccessResponse(access_id=str(len(self.requests("RecordVideoAccess"))))

    async def GetBalance(
        self, request: billing_pb2.GetBalanceRequest, timeout: float | None = None
    ) -> billing_pb2.GetBalanceResponse:
        self._record("GetBalance", request, timeout)
        return billing_pb2.GetBalanceResponse(available_credits=4980, held_credits=20)

    async def ListLedgerEntries(
        self, request: billing_pb2.ListLedgerEntriesRequest, timeout: float | None = None
    ) -> billing_pb2.ListLedgerEntriesResponse:
        self._record("ListLedgerEntries", request, timeout)
        return billing_pb2.ListLedgerEntriesResponse(entries=self.ledger, next_cursor="")

    async def CreateTenant(
        self, request: billing_pb2.CreateTenantRequest, timeout: float | None = None
    ) -> billing_pb2.CreateTenantResponse:
        self._record("CreateTenant", request, timeout)
        return billing_pb2.CreateTenantResponse(tenant_id=OTHER_TENANT_ID)

    async def CreateApiKey(
        self, request: billing_pb2.CreateApiKeyRequest, timeout: float | None = None
    ) -> billing_pb2.CreateApiKeyResponse:
        self._record("CreateApiKey", request, timeout)
        return billing_pb2.CreateApiKeyResponse(api_key=request.api_key or "rb_generated", key_id="key-2")

    async def TopUp(
        self, request: billing_pb2.TopUpRequest, timeout: float | None = None
    ) -> billing_pb2.TopUpResponse:
        self._record("TopUp", request, timeout)
        replayed = request.reference == "payment-1-seen"
        return billing_pb2.TopUpResponse(balance=5000 + request.credits, replayed=replayed)


def sent_items(request: batch_pb2.CreateBatchRequest) -> list[batch_pb2.BatchItem]:
    """The items of a CreateBatch request, whether sent as messages or as columns."""
    if not request.HasField("item_columns"):
        return list(request.items)
    columns = request.item_columns
    return [
        batch_pb2.BatchItem(prompt=prompt, model=model, duration_seconds=duration)
        for prompt, model, duration in zip(
            columns.prompts, columns.models, columns.duration_seconds, strict=True
        )
    ]


class FakeBatch(FakeStub):
    """Batch holding one batch (BATCH_ID, owned by TENANT_ID) and pricing sora-2 at 10 credits."""

    prices: Mapping[str, int] = {"sora-2": 10, "veo-3": 20}

    def __init__(self) -> None:
        super().__init__()
        self.batch = batch_pb2.Batch(
            batch_id=BATCH_ID,
            tenant_id=TENANT_ID,
            status="processing",
            total_count=2,
            success_count=1,
            failed_count=0,
            cancelled_count=0,
            pending_count=1,
            frozen_credits=20,
            credits_spent=10,
            refunded_credits=0,
            settlement_status="pending",
            created_at=timestamp(CREATED_AT),
            request_id="demo-1",
        )
        self.tasks: list[batch_pb2.Task] = []
        # The tenant's unfinished batches, as the batch service counts them in a create.
        self.open_batches = 3
        # Models whose circuit breaker is open (the admin overview shows them degraded).
        self.degraded_models: list[batch_pb2.DegradedModel] = []
        # Provider routes of models (the admin overview's table, ADR-149).
        self.provider_routes: list[batch_pb2.ProviderRouteUsage] = []

    def _owned(self, tenant_id: str, batch_id: str) -> batch_pb2.Batch:
        if batch_id != self.batch.batch_id or tenant_id not in ("", self.batch.tenant_id):
            raise rpc_error(NotFound("batch not found"))
        return self.batch

    async def CreateBatch(
        self, request: batch_pb2.CreateBatchRequest, timeout: float | None = None
    ) -> batch_pb2.CreateBatchResponse:
        self._record("CreateBatch", request, timeout)
        if 0 < request.open_batch_limit <= self.open_batches:
            raise rpc_error(_TooManyOpenBatches(request.open_batch_limit))
        items = sent_items(request)
        unit_prices = {self.prices[item.model] for item in items}
        required = sum(self.prices[item.model] for item in items)
        response = batch_pb2.CreateBatchResponse(
            batch_id=BATCH_ID,
            total_count=len(items),
            required_credits=required,
            available_credits=5000,
            status="queued",
            request_id=request.request_id,
        )
        if len(unit_prices) == 1:
            response.cost_per_video = unit_prices.pop()
        return response

    async def CreateBatchStream(
        self, parts: Iterable[batch_pb2.CreateBatchRequest], timeout: float | None = None
    ) -> batch_pb2.CreateBatchResponse:
        """As CreateBatch of the parts joined (each part recorded as a `CreateBatchStream` call)."""
        joined = batch_pb2.CreateBatchRequest()
        for part in parts:
            self._record("CreateBatchStream", part, timeout)
            columns = part.item_columns
            part_copy = batch_pb2.CreateBatchRequest()
            part_copy.CopyFrom(part)
            part_copy.ClearField("item_columns")
            joined.MergeFrom(part_copy)
            joined.item_columns.prompts.extend(columns.prompts)
            joined.item_columns.models.extend(columns.models)
            joined.item_columns.duration_seconds.extend(columns.duration_seconds)
        return await self.CreateBatch(joined, timeout)

    async def RetryFailed(
        self, request: batch_pb2.RetryFailedRequest, timeout: float | None = None
    ) -> batch_pb2.CreateBatchResponse:
        """As the batch service: BATCH_ID's one retry (RETRY_ID), replayed from the second call on."""
        self._record("RetryFailed", request, timeout)
        self._owned(request.tenant_id, request.batch_id)
        first = self.requests("RetryFailed")[0]
        return batch_pb2.CreateBatchResponse(
            batch_id=RETRY_ID,
            total_count=1,
            cost_per_video=10,
            required_credits=10,
            available_credits=4990,
            status="queued",
            request_id=first.request_id,
            replayed=len(self.requests("RetryFailed")) > 1,
        )

    async def GetBatch(
        self, request: batch_pb2.GetBatchRequest, timeout: float | None = None
    ) -> batch_pb2.Batch:
        self._record("GetBatch", request, timeout)
        return self._owned(request.tenant_id, request.batch_id)

    async def CancelBatch(
        self, request: batch_pb2.CancelBatchRequest, timeout: float | None = None
    ) -> batch_pb2.Batch:
        self._record("CancelBatch", request, timeout)
        batch = batch_pb2.Batch()
        batch.CopyFrom(self._owned(request.tenant_id, request.batch_id))
        batch.status = "cancelled"
        batch.cancelled_count, batch.pending_count = batch.pending_count, 0
        batch.finished_at.CopyFrom(timestamp(CREATED_AT.replace(minute=5)))
        return batch

    async def CountOpenBatches(
        self, request: batch_pb2.CountOpenBatchesRequest, timeout: float | None = None
    ) -> batch_pb2.CountOpenBatchesResponse:
        self._record("CountOpenBatches", request, timeout)
        return batch_pb2.CountOpenBatchesResponse(open_batches=min(self.open_batches, request.limit))

    async def ListBatches(
        self, request: batch_pb2.ListBatchesRequest, timeout: float | None = None
    ) -> batch_pb2.ListBatchesResponse:
        self._record("ListBatches", request, timeout)
        return batch_pb2.ListBatchesResponse(batches=[self.batch], next_cursor="cursor-2")

    async def ListDegradedModels(
        self, request: batch_pb2.ListDegradedModelsRequest, timeout: float | None = None
    ) -> batch_pb2.ListDegradedModelsResponse:
        self._record("ListDegradedModels", request, timeout)
        return batch_pb2.ListDegradedModelsResponse(models=self.degraded_models)

    async def ListProviderRoutes(
        self, request: batch_pb2.ListProviderRoutesRequest, timeout: float | None = None
    ) -> batch_pb2.ListProviderRoutesResponse:
        self._record("ListProviderRoutes", request, timeout)
        return batch_pb2.ListProviderRoutesResponse(routes=self.provider_routes)

    async def ListTasks(
        self, request: batch_pb2.ListTasksRequest, timeout: float | None = None
    ) -> batch_pb2.ListTasksResponse:
        self._record("ListTasks", request, timeout)
        self._owned(request.tenant_id, request.batch_id)
        return batch_pb2.ListTasksResponse(tasks=self.tasks, next_cursor="")


class FakeWebhook(FakeStub):
    """Webhook with no deliveries unless the test sets some; every URL is acceptable by default."""

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: list[webhook_pb2.Delivery] = []

    async def ListDeliveries(
        self, request: webhook_pb2.ListDeliveriesRequest, timeout: float | None = None
    ) -> webhook_pb2.ListDeliveriesResponse:
        self._record("ListDeliveries", request, timeout)
        return webhook_pb2.ListDeliveriesResponse(deliveries=self.deliveries, next_cursor="")

    async def ValidateUrl(
        self, request: webhook_pb2.ValidateUrlRequest, timeout: float | None = None
    ) -> webhook_pb2.ValidateUrlResponse:
        self._record("ValidateUrl", request, timeout)
        return webhook_pb2.ValidateUrlResponse()


class Readiness:
    """A readiness probe whose answer the test decides."""

    def __init__(self) -> None:
        self.serving = {"billing": True, "batch": True, "webhook": True}

    async def __call__(self) -> Mapping[str, bool]:
        return dict(self.serving)


# The fields a task view has for a task of a fake that sets no settings and no live detail.
NO_TASK_DETAIL: dict[str, object] = {
    "settings": None,
    "duration_seconds": None,
    "started_at": None,
    "current_attempt": None,
    "next_attempt_at": None,
    "last_error": None,
    "credits_charged": 0,
    "credits_refunded": 0,
}


def fake_backends(
    billing: FakeBilling,
    batch: FakeBatch,
    readiness: Readiness,
    webhook: FakeWebhook | None = None,
) -> Backends:
    """The fakes in the shape the app expects (they implement only the methods the gateway calls)."""
    return Backends(
        billing=cast("billing_pb2_grpc.BillingServiceAsyncStub", billing),
        batch=cast("batch_pb2_grpc.BatchServiceAsyncStub", batch),
        webhook=cast("webhook_pb2_grpc.WebhookServiceAsyncStub", webhook or FakeWebhook()),
        readiness=readiness,
    )


def assert_error_shape(body: Mapping[str, Any], code: str) -> Mapping[str, Any]:
    """Checks `{"ok": false, "error": {"code": code, "message": <non-empty str>, ...}}`."""
    assert body["ok"] is False
    assert set(body) == {"ok", "error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return cast(Mapping[str, Any], body["error"])


CUSTOMER = {"X-API-Key": API_KEY}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
