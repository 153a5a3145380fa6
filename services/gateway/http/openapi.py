"""The two OpenAPI documents: the customer API (`/openapi.json`) and the operator API
(`/admin/openapi.json`), each a document an SDK generator can use (ADR-093): every operation has a
stable readable operationId (its route function's name) and a description, errors use our one
shape, and the customer document lists the webhooks we send in its `webhooks` section."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from services.gateway.http.operation_docs import OPERATION_DESCRIPTIONS
from services.gateway.schemas.batches import CreateBatchRequest
from services.gateway.schemas.errors import ErrorResponse
from services.gateway.schemas.webhook_events import SIGNING_STORY

INVALID_INPUT_DESCRIPTION = (
    "Invalid input (`validation_error`, with `errors`: [{loc, code, message, field}], every one at once)."
)
# Paths of the operator API (admin token or admin key; the Stripe webhook; probes).
_OPERATOR_PREFIXES = ("/api/admin", "/admin", "/api/payments", "/healthz", "/readyz", "/metrics")

CUSTOMER_DESCRIPTION_SUFFIX = (
    '\n\n**Pages.** Every list answers `{"items": [...], "next_cursor": ...}`: pass `next_cursor` back '
    "as `cursor` for the next page; it is null on the last page. `limit` is 1..1000 (default 50) on every "
    "list; anything else is a 422, and a page is never cut shorter than asked except on the last page."
    f"\n\n**Webhooks.** {SIGNING_STORY}"
)


def operation_id(route: APIRoute) -> str:
    """A stable, readable operationId: the route function's name (unique across the app, checked by
    a test), e.g. `create_video_batch`, instead of FastAPI's path-derived default."""
    return route.name


def is_operator_path(path: str) -> bool:
    """Whether a path belongs to the operator API rather than the customer API."""
    return path.startswith(_OPERATOR_PREFIXES)


def _routes(app: FastAPI, *, operator: bool) -> list[RouteContext]:
    """The documented operations of one API (routes of included routers with their prefixes)."""
    return [
        context
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        and context.include_in_schema
        and is_operator_path(context.path or "") == operator
    ]


def _document(
    app: FastAPI, routes: Sequence[RouteContext], *, title: str, description: str, webhooks: bool
) -> dict[str, Any]:
    document = get_openapi(
        title=title,
        version=app.version,
        description=description,
        routes=routes,
        webhooks=app.webhooks.routes if webhooks else None,
    )
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    error_ref = {"$ref": f"#/components/schemas/{ErrorResponse.__name__}"}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if not operation.get("description"):
                known = OPERATION_DESCRIPTIONS.get(operation.get("operationId", ""))
                if known:
                    operation["description"] = known
            invalid = operation.get("responses", {}).get("422")
            if invalid is not None:
                invalid["description"] = INVALID_INPUT_DESCRIPTION
                invalid["content"] = {"application/json": {"schema": error_ref}}
    for operations in document.get("webhooks", {}).values():
        for operation in operations.values():
            # A webhook is answered by the customer's server: FastAPI's 422 is not part of it.
            operation.get("responses", {}).pop("422", None)
    # FastAPI's own 422 body is never sent (our handler answers instead).
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return document


def customer_document(app: FastAPI) -> dict[str, Any]:
    """`/openapi.json`: the customer API, with the hand-parsed create body and the webhooks."""
    document = _document(
        app,
        _routes(app, operator=False),
        title=app.title,
        description=(app.description or "") + CUSTOMER_DESCRIPTION_SUFFIX,
        webhooks=True,
    )
    schemas: dict[str, Any] = document["components"]["schemas"]
    create_body = CreateBatchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(create_body.pop("$defs", {}))
    schemas["CreateBatchRequest"] = create_body
    return document


def operator_document(app: FastAPI) -> dict[str, Any]:
    """`/admin/openapi.json`: the operator API (admin token or admin key)."""
    return _document(
        app,
        _routes(app, operator=True),
        title=f"{app.title} (operator)",
        description=(
            "The operator API: tenants, API keys, credits, batches, billing, reconciliation and the "
            "dashboard's data, authenticated with `Authorization: Bearer <admin token or admin key>`. "
            "The customer API is documented at `/openapi.json`."
        ),
        webhooks=False,
    )
