"""Operator endpoints under /api/admin.

Authenticated by `Authorization: Bearer <admin token or operator key>`; reads (GET) also accept
the dashboard's session cookie, so the dashboard can link to JSON and CSV exports. No state change
is ever made on a cookie alone.
"""

from typing import Annotated

from fastapi import APIRouter, Body, Query
from fastapi.responses import Response, StreamingResponse
from reelbatch.proto.billing.v1 import billing_pb2

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.api.ledger_exports import (
    CreatedFrom,
    CreatedTo,
    csv_download,
    export_filename,
    ledger_csv,
    started,
)
from services.gateway.http.admin_sessions import AdminSessions
from services.gateway.http.auth import AdminAuthenticator, admin_api_router
from services.gateway.http.params import (
    BatchIdPath,
    PageCursor,
    PageLimit,
    PageQuery,
    TenantIdPath,
    documented,
)
from services.gateway.schemas.access import ApiKeyCreated, CreateApiKeyRequest
from services.gateway.schemas.admin_batches import (
    AdminBatchDetail,
    AdminBatchPage,
    FailureType,
    SettlementStatus,
)
from services.gateway.schemas.admin_webhooks import DeliveryPage
from services.gateway.schemas.batches import BatchStatus
from services.gateway.schemas.credits import (
    BatchBillingView,
    CreditsView,
    LedgerPage,
    TopUpRequest,
    TopUpResult,
)
from services.gateway.schemas.model_health import ProviderRoutePage
from services.gateway.schemas.reconciliation import ReconciliationView
from services.gateway.schemas.tasks import TaskPage, TaskStatus
from services.gateway.schemas.tenants import CreateTenantRequest, TenantCreated, TenantPage
from services.gateway.use_cases.admin_reads import AdminReads, BatchListQuery
from services.gateway.use_cases.ledger_export import ALL_TENANTS, ledger_rows


def admin_router(
    settings: Settings, backends: Backends, sessions: AdminSessions, admin_auth: AdminAuthenticator
) -> APIRouter:
    """The /api/admin routes: tenants, keys, top-ups, batches of every tenant, reconciliation, exports.

    Operators authenticate with the admin token, an operator key (`finance` keys may only read:
    403 otherwise) or, on reads, the dashboard's session cookie (see `services.gateway.http.auth`).
    """
    router = admin_api_router(admin_auth)
    deadline = settings.grpc_deadline_seconds
    reads = AdminReads(backends, deadline)

    @router.post("/tenants", **documented(TenantCreated, "Create a tenant", 413, 422, status_code=201))
    async def create_tenant(body: CreateTenantRequest) -> TenantCreated:
        response = await backends.billing.CreateTenant(
            billing_pb2.CreateTenantRequest(name=body.name), timeout=deadline
        )
        return TenantCreated(tenant_id=response.tenant_id)

    @router.post(
        "/tenants/{tenant_id}/api-keys",
        **documented(
            ApiKeyCreated,
            "Issue an API key (the clear key is shown once)",
            404,
            409,
            413,
            422,
            status_code=201,
        ),
    )
    async def create_api_key(
        tenant_id: TenantIdPath, body: Annotated[CreateApiKeyRequest | None, Body()] = None
    ) -> ApiKeyCreated:
        api_key = body.api_key if body is not None and body.api_key is not None else ""
        request = billing_pb2.CreateApiKeyRequest(
            tenant_id=tenant_id, api_key=api_key, scopes=(body.scopes or []) if body else []
        )
        if body is not None and body.expires_at is not None:
            request.expires_at.FromDatetime(body.expires_at)
        response = await backends.billing.CreateApiKey(request, timeout=deadline)
        return ApiKeyCreated(api_key=response.api_key, key_id=response.key_id)

    @router.post(
        "/tenants/{tenant_id}/credits",
        **documented(TopUpResult, "Add credits (idempotent on `reference`)", 404, 409, 413, 422),
    )
    async def top_up(tenant_id: TenantIdPath, body: TopUpRequest) -> TopUpResult:
        response = await backends.billing.TopUp(
            billing_pb2.TopUpRequest(tenant_id=tenant_id, credits=body.credits, reference=body.reference),
            timeout=deadline,
        )
        return TopUpResult(balance=response.balance, replayed=response.replayed)

    @router.get("/tenants/{tenant_id}/credits", **documented(CreditsView, "A tenant's balances", 404))
    async def get_tenant_credits(tenant_id: TenantIdPath) -> CreditsView:
        return await reads.tenant_credits(tenant_id)

    @router.get("/tenants", **documented(TenantPage, "List tenants with their balances, oldest first", 422))
    async def list_tenants(page: PageQuery) -> TenantPage:
        return await reads.tenants(cursor=page.cursor, limit=page.limit)

    @router.get(
        "/tenants/{tenant_id}/ledger",
        **documented(LedgerPage, "Changes of a tenant's available balance, newest first", 404, 422),
    )
    async def list_tenant_ledger(tenant_id: TenantIdPath, page: PageQuery) -> LedgerPage:
        return await reads.tenant_ledger(tenant_id, cursor=page.cursor, limit=page.limit)

    @router.get(
        "/batches", **documented(AdminBatchPage, "List batches of every tenant (or one), newest first", 422)
    )
    async def list_batches(
        page: PageQuery,
        tenant_id: Annotated[
            str | None, Query(max_length=64, description="Only this tenant's batches.")
        ] = None,
        status: Annotated[BatchStatus | None, Query(description="Only batches in this status.")] = None,
        settlement_status: Annotated[
            SettlementStatus | None, Query(description="Only batches in this settlement status.")
        ] = None,
        created_from: CreatedFrom = None,
        created_to: CreatedTo = None,
    ) -> Response:
        # The documented AdminBatchPage, written from the backend's fields (ADR-164).
        page_json = await reads.batches_json(
            BatchListQuery(
                tenant_id=tenant_id or "",
                status=status or "",
                settlement_status=settlement_status or "",
                created_from=created_from,
                created_to=created_to,
                cursor=page.cursor,
                limit=page.limit,
            )
        )
        return Response(page_json, media_type="application/json")

    @router.get(
        "/batches/{batch_id}",
        **documented(
            AdminBatchDetail,
            "Any batch: progress, money, net, margin, timing and failures by whose fault",
            404,
        ),
    )
    async def get_batch(batch_id: BatchIdPath) -> AdminBatchDetail:
        return await reads.batch(batch_id)

    @router.get(
        "/batches/{batch_id}/tasks", **documented(TaskPage, "List any batch's tasks in batch order", 404, 422)
    )
    async def list_batch_tasks(
        batch_id: BatchIdPath,
        page: PageQuery,
        status: Annotated[TaskStatus | None, Query(description="Only tasks in this status.")] = None,
        failure_type: Annotated[
            FailureType | None, Query(description="Only tasks that failed this way.")
        ] = None,
    ) -> TaskPage:
        return await reads.tasks(
            batch_id,
            status=status or "",
            failure_type=failure_type or "",
            cursor=page.cursor,
            limit=page.limit,
        )

    @router.get(
        "/batches/{batch_id}/billing",
        **documented(
            BatchBillingView,
            "A batch's money: upfront, captures, refunds, net spent and its ledger entries",
            404,
            422,
        ),
    )
    async def get_batch_billing(
        batch_id: BatchIdPath, cursor: PageCursor = None, limit: PageLimit = 500
    ) -> BatchBillingView:
        return await reads.billing(batch_id, cursor=cursor or "", limit=limit)

    @router.get(
        "/batches/{batch_id}/webhooks",
        **documented(DeliveryPage, "A batch's webhook deliveries with every attempt, newest first", 404, 422),
    )
    async def list_batch_webhooks(batch_id: BatchIdPath, page: PageQuery) -> DeliveryPage:
        return await reads.webhooks(batch_id, cursor=page.cursor, limit=page.limit)

    @router.get(
        "/provider-routes",
        **documented(
            ProviderRoutePage,
            "Each provider route of each model: its share of the videos, jobs, failures and cost",
        ),
    )
    async def provider_routes() -> ProviderRoutePage:
        return ProviderRoutePage(items=await reads.provider_routes())

    @router.get(
        "/reconciliation",
        **documented(
            ReconciliationView,
            "Check every credit (I1-I3); an empty `discrepancies` list means the books balance",
        ),
    )
    async def reconcile() -> ReconciliationView:
        return await reads.reconciliation()

    @router.get(
        "/ledger.csv",
        summary="Export every ledger entry created in [created_from, created_to) as CSV (streamed)",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}}, "description": "One line per ledger entry."}},
    )
    async def export_ledger(
        created_from: CreatedFrom = None, created_to: CreatedTo = None
    ) -> StreamingResponse:
        rows = await started(ledger_rows(backends.billing, ALL_TENANTS, created_from, created_to))
        return csv_download(ledger_csv(rows), export_filename("ledger", created_from, created_to))

    return router
