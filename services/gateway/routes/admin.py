"""Operator endpoints under /api/admin (authenticated by `Authorization: Bearer <admin token>`)."""

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2

from libs.config import Settings
from services.gateway.auth import admin_dependency
from services.gateway.backends import Backends
from services.gateway.routes.params import (
    DEFAULT_PAGE_SIZE,
    BatchIdPath,
    PageCursor,
    PageLimit,
    error_responses,
)
from services.gateway.schemas import (
    AdminBatchPage,
    AdminBatchView,
    ApiKeyCreated,
    BatchStatus,
    CreateApiKeyRequest,
    CreateTenantRequest,
    CreditsView,
    TaskPage,
    TaskStatus,
    TaskView,
    TenantCreated,
    TopUpRequest,
    TopUpResult,
)

# Admin scope on batch reads: no tenant filter (see batch.proto).
ALL_TENANTS = ""

TenantIdPath = Annotated[str, Path(min_length=1, max_length=64, description="Identifier of the tenant.")]


def admin_router(settings: Settings, backends: Backends) -> APIRouter:
    """The /api/admin routes: tenants, API keys, top-ups and batches of every tenant."""
    router = APIRouter(
        prefix="/api/admin",
        tags=["admin"],
        dependencies=[Depends(admin_dependency(settings))],
        responses=error_responses(401, 500, 503),
    )
    deadline = settings.grpc_deadline_seconds

    @router.post(
        "/tenants",
        status_code=201,
        response_model=TenantCreated,
        summary="Create a tenant",
        responses=error_responses(413, 422),
    )
    async def create_tenant(body: CreateTenantRequest) -> TenantCreated:
        response = await backends.billing.CreateTenant(
            billing_pb2.CreateTenantRequest(name=body.name), timeout=deadline
        )
        return TenantCreated(tenant_id=response.tenant_id)

    @router.post(
        "/tenants/{tenant_id}/api-keys",
        status_code=201,
        response_model=ApiKeyCreated,
        summary="Issue an API key (the clear key is shown once)",
        responses=error_responses(404, 409, 413, 422),
    )
    async def create_api_key(
        tenant_id: TenantIdPath, body: Annotated[CreateApiKeyRequest | None, Body()] = None
    ) -> ApiKeyCreated:
        api_key = body.api_key if body is not None and body.api_key is not None else ""
        response = await backends.billing.CreateApiKey(
            billing_pb2.CreateApiKeyRequest(tenant_id=tenant_id, api_key=api_key), timeout=deadline
        )
        return ApiKeyCreated(api_key=response.api_key, key_id=response.key_id)

    @router.post(
        "/tenants/{tenant_id}/credits",
        response_model=TopUpResult,
        summary="Add credits (idempotent on `reference`)",
        responses=error_responses(404, 409, 413, 422),
    )
    async def top_up(tenant_id: TenantIdPath, body: TopUpRequest) -> TopUpResult:
        response = await backends.billing.TopUp(
            billing_pb2.TopUpRequest(tenant_id=tenant_id, credits=body.credits, reference=body.reference),
            timeout=deadline,
        )
        return TopUpResult(balance=response.balance, replayed=response.replayed)

    @router.get(
        "/tenants/{tenant_id}/credits",
        response_model=CreditsView,
        summary="A tenant's balances",
        responses=error_responses(404),
    )
    async def get_tenant_credits(tenant_id: TenantIdPath) -> CreditsView:
        balance = await backends.billing.GetBalance(
            billing_pb2.GetBalanceRequest(tenant_id=tenant_id), timeout=deadline
        )
        return CreditsView.from_proto(balance)

    @router.get(
        "/batches",
        response_model=AdminBatchPage,
        summary="List batches of every tenant (or one), newest first",
        responses=error_responses(422),
    )
    async def list_batches(
        tenant_id: Annotated[
            str | None, Query(max_length=64, description="Only this tenant's batches.")
        ] = None,
        status: Annotated[BatchStatus | None, Query(description="Only batches in this status.")] = None,
        cursor: PageCursor = None,
        limit: PageLimit = DEFAULT_PAGE_SIZE,
    ) -> AdminBatchPage:
        response = await backends.batch.ListBatches(
            batch_pb2.ListBatchesRequest(
                tenant_id=tenant_id or ALL_TENANTS, status=status or "", cursor=cursor or "", limit=limit
            ),
            timeout=deadline,
        )
        return AdminBatchPage(
            items=[AdminBatchView.from_proto(batch) for batch in response.batches],
            next_cursor=response.next_cursor or None,
        )

    @router.get(
        "/batches/{batch_id}",
        response_model=AdminBatchView,
        summary="Get any batch",
        responses=error_responses(404),
    )
    async def get_batch(batch_id: BatchIdPath) -> AdminBatchView:
        batch = await backends.batch.GetBatch(
            batch_pb2.GetBatchRequest(tenant_id=ALL_TENANTS, batch_id=batch_id), timeout=deadline
        )
        return AdminBatchView.from_proto(batch)

    @router.get(
        "/batches/{batch_id}/tasks",
        response_model=TaskPage,
        summary="List any batch's tasks in batch order",
        responses=error_responses(404, 422),
    )
    async def list_batch_tasks(
        batch_id: BatchIdPath,
        status: Annotated[TaskStatus | None, Query(description="Only tasks in this status.")] = None,
        cursor: PageCursor = None,
        limit: PageLimit = DEFAULT_PAGE_SIZE,
    ) -> TaskPage:
        response = await backends.batch.ListTasks(
            batch_pb2.ListTasksRequest(
                tenant_id=ALL_TENANTS,
                batch_id=batch_id,
                status=status or "",
                cursor=cursor or "",
                limit=limit,
            ),
            timeout=deadline,
        )
        return TaskPage(
            items=[TaskView.from_proto(task) for task in response.tasks],
            next_cursor=response.next_cursor or None,
        )

    return router
