"""The FastAPI application of the public REST API, built from settings and backend stubs."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from libs.config import Settings
from libs.telemetry import metrics_text
from services.gateway.adapters.backends import Backends
from services.gateway.admin_ui.routes import dashboard_router, static_files
from services.gateway.api.admin import admin_router
from services.gateway.api.api_keys import api_keys_router
from services.gateway.api.auto_top_up import auto_top_up_router
from services.gateway.api.console_invites import console_invites_router
from services.gateway.api.customer import CREATE_BATCH_PATH, customer_router
from services.gateway.api.docs import ASSETS_PATH, docs_assets, docs_router
from services.gateway.api.files import files_router
from services.gateway.api.health import health_router
from services.gateway.api.ledger_exports import customer_exports_router
from services.gateway.api.models import models_router
from services.gateway.api.pricing import admin_pricing_router, pricing_router, stripe_webhook_router
from services.gateway.api.results import results_router
from services.gateway.api.spend_control import QUOTES_PATH, spend_control_router
from services.gateway.api.videos import videos_router
from services.gateway.api.webhook_events import webhook_events
from services.gateway.api.webhooks import webhooks_router
from services.gateway.console import pages as console_pages
from services.gateway.console.access import access_endpoints
from services.gateway.console.batches import batch_endpoints
from services.gateway.console.credits import credits_endpoints
from services.gateway.console.developers import developer_endpoints
from services.gateway.console.money import money_endpoints
from services.gateway.console.overview import overview_endpoints
from services.gateway.console.router import console_router
from services.gateway.console.team import team_endpoints
from services.gateway.http.admin_sessions import AdminSessions
from services.gateway.http.auth import AdminAuthenticator, ApiKeyAuthenticator
from services.gateway.http.errors import install_error_handlers
from services.gateway.http.middleware import RequestContextMiddleware
from services.gateway.http.openapi import customer_document, operation_id, operator_document
from services.gateway.http.rate_limits import FailedAttemptLimiter, SharedBuckets, SharedRateLimiter
from services.gateway.use_cases.batch_creation import BatchCreation
from services.gateway.use_cases.batch_reads import BatchReads

API_TITLE = "Reelbatch API"
API_VERSION = "1.0.0"
API_DESCRIPTION = (
    "Refund-safe batch AI video generation. The price of a batch is frozen before anything runs; "
    "every failed or cancelled video is refunded at once. Errors are always "
    '`{"ok": false, "error": {"code", "message", ...}}`.'
)


# The console's endpoint modules: each route of `console.route_table` finds its endpoint in one.
CONSOLE_ENDPOINTS = (
    access_endpoints,
    overview_endpoints,
    batch_endpoints,
    money_endpoints,
    credits_endpoints,
    developer_endpoints,
    team_endpoints,
)

# Probes and scrapes would drown the traces that matter.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def create_app(settings: Settings, backends: Backends) -> FastAPI:
    """The REST gateway: routes, authentication, limits and error mapping; connects to nothing.

    FastAPI answers every request (ADR-065).
    """
    # FastAPI's own telemetry is off: RequestContextMiddleware traces each request and records
    # `http.server.request.duration` at a third of its cost (ADR-029).
    app = FastAPI(
        title=API_TITLE,
        version=API_VERSION,
        description=API_DESCRIPTION,
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Our own offline pages (api/docs.py) replace FastAPI's CDN-backed ones.
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    install_error_handlers(app)
    # Every limit is shared by all gateway replicas: token buckets kept by billing (ADR-128).
    buckets = SharedBuckets(backends.billing, settings.grpc_deadline_seconds)
    authenticator = ApiKeyAuthenticator(
        backends.billing,
        settings.grpc_deadline_seconds,
        rate_limiter=SharedRateLimiter(buckets, settings.rate_limit_per_second, settings.rate_limit_burst),
        feed=backends.invalidations,
    )
    admin_sessions = AdminSessions(settings.admin_token)
    # One failed-attempt counter for the admin API and the dashboard sign-in alike.
    admin_auth = AdminAuthenticator(
        admin_sessions,
        backends.billing,
        settings.grpc_deadline_seconds,
        FailedAttemptLimiter(
            buckets,
            "admin_sign_in",
            settings.admin_auth_max_failures,
            settings.admin_auth_failure_window_seconds,
        ),
        feed=backends.invalidations,
    )
    app.include_router(health_router(backends))
    reads = BatchReads(settings, backends)
    creation = BatchCreation(settings, backends)
    app.include_router(customer_router(settings, backends, authenticator, reads, creation))
    app.include_router(results_router(settings, backends, authenticator))
    app.include_router(api_keys_router(settings, backends, authenticator, admin_auth))
    app.include_router(spend_control_router(settings, backends, authenticator, creation))
    app.include_router(auto_top_up_router(settings, backends, authenticator))
    app.include_router(customer_exports_router(settings, backends, authenticator))
    app.include_router(admin_router(settings, backends, admin_sessions, admin_auth))
    app.include_router(models_router(settings, backends, authenticator))
    app.include_router(files_router(settings, backends, authenticator))
    app.include_router(pricing_router(settings, backends, authenticator))
    app.include_router(stripe_webhook_router(settings, backends))
    app.include_router(admin_pricing_router(settings, backends, admin_auth))
    app.include_router(
        dashboard_router(settings, backends, admin_sessions, sign_in_failures=admin_auth.failures)
    )
    app.mount("/admin/static", static_files(), name="admin-static")
    app.include_router(console_invites_router(settings, backends, admin_auth))
    app.include_router(
        console_router(
            settings,
            backends,
            CONSOLE_ENDPOINTS,
            sign_in_failures=FailedAttemptLimiter(
                buckets,
                "console_sign_in",
                settings.admin_auth_max_failures,
                settings.admin_auth_failure_window_seconds,
            ),
            forget_api_key=authenticator.forget_key,
        )
    )
    app.mount("/console/static", console_pages.static_files(), name="console-static")
    app.include_router(videos_router(settings, backends, authenticator, admin_auth))
    app.include_router(webhooks_router(settings, backends, authenticator))
    app.webhooks.include_router(webhook_events())
    app.include_router(docs_router(API_TITLE))
    app.mount(ASSETS_PATH, docs_assets(), name="docs-assets")

    # Server span and metric (OpenTelemetry's ASGI middleware, ADR-061), request id, last-resort
    # 500 and body size limits (the create path's own, read as a stream), the RateLimit headers,
    # in one layer around the app.
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        untraced_paths=UNTRACED_PATHS,
        streamed_bodies={
            CREATE_BATCH_PATH: settings.max_create_body_bytes,
            QUOTES_PATH: settings.max_create_body_bytes,
        },
        rate_limit_burst=settings.rate_limit_burst,
    )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        """Prometheus text of this process (in embedded mode: of every service in it)."""
        return Response(metrics_text(), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = customer_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    operator_schema: dict[str, Any] = {}

    @app.get("/admin/openapi.json", include_in_schema=False)
    async def operator_openapi() -> JSONResponse:
        """The operator API's OpenAPI document (the customer API's is /openapi.json)."""
        if not operator_schema:
            operator_schema.update(operator_document(app))
        return JSONResponse(operator_schema)

    return app


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The customer API's document (see services/gateway/http/openapi.py)."""
    return customer_document(app)


__all__ = ["create_app", "openapi_document"]
