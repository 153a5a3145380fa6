"""Buying credits: the price list, prepaid packs and monthly statements (customers), offline
payments and monthly margins (operators), and the Stripe Checkout webhook.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response
from reelbatch.proto.billing.v1 import billing_pb2

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.http.auth import (
    AdminAuthenticator,
    ApiKeyAuthenticator,
    admin_api_router,
    tenant_dependency,
)
from services.gateway.http.params import MonthQuery, TenantIdPath, documented, error_responses
from services.gateway.schemas.errors import ErrorResponse
from services.gateway.schemas.pricing import (
    AdminPaymentRequest,
    ModelMarginView,
    MonthlyMarginsView,
    PackCatalog,
    PaymentRecorded,
    StatementView,
    StripeEventReceived,
)

CSV_MEDIA_TYPE = "text/csv"


def wants_csv(request: Request, format_: str | None) -> bool:
    """CSV when asked with `format=csv` or an Accept header naming text/csv."""
    if format_ is not None:
        return format_ == "csv"
    return CSV_MEDIA_TYPE in request.headers.get("accept", "")


def pricing_router(settings: Settings, backends: Backends, authenticator: ApiKeyAuthenticator) -> APIRouter:
    """Customer routes: packs and the monthly statement (the price list is `models`')."""
    router = APIRouter(prefix="/api/enterprise", tags=["pricing"], responses=error_responses(401, 500, 503))
    authenticated = Depends(tenant_dependency(authenticator))
    deadline = settings.grpc_deadline_seconds

    @router.get("/packs", response_model=PackCatalog, summary="Prepaid packs (credits never expire)")
    async def list_packs(_: Annotated[str, authenticated]) -> PackCatalog:
        response = await backends.billing.ListPacks(billing_pb2.ListPacksRequest(), timeout=deadline)
        return PackCatalog.from_proto(response)

    @router.get(
        "/statement",
        response_model=StatementView,
        summary="A monthly statement (JSON, or CSV with format=csv or Accept: text/csv)",
        responses={**error_responses(422), 200: {"content": {CSV_MEDIA_TYPE: {}}}},
    )
    async def get_statement(
        request: Request,
        tenant_id: Annotated[str, authenticated],
        month: MonthQuery,
        format_: Annotated[str | None, Query(alias="format", pattern="^(json|csv)$")] = None,
    ) -> Response | StatementView:
        response = await backends.billing.GetStatement(
            billing_pb2.GetStatementRequest(tenant_id=tenant_id, month=month), timeout=deadline
        )
        statement = StatementView.from_proto(response)
        if wants_csv(request, format_):
            return PlainTextResponse(
                statement.to_csv(),
                media_type=CSV_MEDIA_TYPE,
                headers={"Content-Disposition": f'attachment; filename="statement-{statement.month}.csv"'},
            )
        return statement

    return router


def stripe_webhook_router(settings: Settings, backends: Backends) -> APIRouter:
    """The Stripe Checkout webhook: authenticated by its signature alone (verified in billing)."""
    router = APIRouter(prefix="/api/payments", tags=["payments"], responses=error_responses(500, 503))
    deadline = settings.grpc_deadline_seconds

    @router.post(
        "/stripe/webhook",
        response_model=StripeEventReceived,
        summary="Stripe webhook (checkout.session.completed credits the pack once)",
        responses={
            400: {
                "model": ErrorResponse,
                "description": "Unsigned, tampered or stale delivery (`invalid_signature`).",
            }
        },
    )
    async def stripe_webhook(request: Request) -> StripeEventReceived:
        response = await backends.billing.HandleStripeEvent(
            billing_pb2.HandleStripeEventRequest(
                payload=await request.body(), signature=request.headers.get("stripe-signature", "")
            ),
            timeout=deadline,
        )
        return StripeEventReceived(event_id=response.event_id, outcome=response.outcome)

    return router


def admin_pricing_router(settings: Settings, backends: Backends, admin_auth: AdminAuthenticator) -> APIRouter:
    """Operator routes: offline payments and monthly margins."""
    router = admin_api_router(admin_auth)
    deadline = settings.grpc_deadline_seconds

    @router.post(
        "/tenants/{tenant_id}/payments",
        **documented(
            PaymentRecorded, "Record an offline payment (invoice), credited once per reference", 404, 413, 422
        ),
    )
    async def record_payment(tenant_id: TenantIdPath, body: AdminPaymentRequest) -> PaymentRecorded:
        response = await backends.billing.RecordPayment(
            billing_pb2.RecordPaymentRequest(
                tenant_id=tenant_id,
                reference=body.reference,
                pack_id=body.pack_id or "",
                credits=body.credits,
                amount_usd_cents=body.amount_usd_cents,
            ),
            timeout=deadline,
        )
        return PaymentRecorded(balance=response.balance, credits=response.credits, replayed=response.replayed)

    @router.get(
        "/margins",
        **documented(MonthlyMarginsView, "Gross margin of the month's delivered videos, per model", 422),
    )
    async def monthly_margins(month: MonthQuery) -> MonthlyMarginsView:
        response = await backends.billing.GetMonthlyMargins(
            billing_pb2.GetMonthlyMarginsRequest(month=month), timeout=deadline
        )
        return MonthlyMarginsView(
            month=response.month,
            credit_value_usd_micros=response.credit_value_usd_micros,
            items=[ModelMarginView.from_proto(line) for line in response.models],
            total=ModelMarginView.from_proto(response.total),
        )

    return router
