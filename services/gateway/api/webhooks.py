"""Webhook endpoints, messages and signing secret, for customers (an operator reads a batch's
deliveries through the admin router, services/gateway/api/admin.py).

No `from __future__ import annotations`: FastAPI must resolve the endpoints' local annotations.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from reelbatch.proto.webhook.v1 import webhook_pb2

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.http.auth import ApiKeyAuthenticator, tenant_dependency
from services.gateway.http.params import UUID_PATTERN, PageQuery, PageRequest, documented, error_responses
from services.gateway.schemas.errors import ErrorResponse
from services.gateway.schemas.proto_views import utc_or_none
from services.gateway.schemas.webhooks import (
    DeliveryPage,
    DeliveryView,
    EndpointCreated,
    EndpointIn,
    EndpointPage,
    EndpointSecretRotated,
    EndpointView,
    SigningSecretView,
)

MessageIdPath = Annotated[str, Path(pattern=r"^msg_[0-9a-f]{32}$", description="The webhook-id.")]
EndpointIdPath = Annotated[str, Path(pattern=UUID_PATTERN, description="The endpoint id.")]


def webhooks_router(
    settings: Settings,
    backends: Backends,
    authenticator: ApiKeyAuthenticator,
) -> APIRouter:
    """Customer routes under /api/enterprise."""
    router = APIRouter(tags=["webhooks"], responses=error_responses(401, 500, 503))
    customer = Depends(tenant_dependency(authenticator))
    deadline = settings.grpc_deadline_seconds
    webhook = backends.webhook

    async def deliveries(tenant_id: str, batch_id: str, page: PageRequest) -> DeliveryPage:
        # The tenant's messages; batch_id "" matches every batch.
        answer = await webhook.ListDeliveries(
            webhook_pb2.ListDeliveriesRequest(
                tenant_id=tenant_id, batch_id=batch_id, cursor=page.cursor, limit=page.limit
            ),
            timeout=deadline,
        )
        return DeliveryPage(
            items=[DeliveryView.from_proto(delivery) for delivery in answer.deliveries],
            next_cursor=answer.next_cursor or None,
        )

    @router.post(
        "/api/enterprise/webhook-endpoints",
        **documented(
            EndpointCreated,
            "Register a webhook endpoint (its secret is shown once)",
            status_code=201,
            responses={
                **error_responses(422),
                409: {
                    "model": ErrorResponse,
                    "description": (
                        "The tenant already has a live endpoint at this URL (`endpoint_already_registered`, "
                        "with its `endpoint_id`): one endpoint per URL, so no message is delivered twice."
                    ),
                },
            },
        ),
    )
    async def create_webhook_endpoint(
        tenant_id: Annotated[str, customer], body: EndpointIn
    ) -> EndpointCreated:
        created = await webhook.CreateEndpoint(
            webhook_pb2.CreateEndpointRequest(
                tenant_id=tenant_id, url=body.url, event_types=body.event_types, description=body.description
            ),
            timeout=deadline,
        )
        return EndpointCreated.by_name(created.endpoint, secret=created.secret)

    @router.get(
        "/api/enterprise/webhook-endpoints", **documented(EndpointPage, "List the tenant's webhook endpoints")
    )
    async def list_webhook_endpoints(tenant_id: Annotated[str, customer], page: PageQuery) -> EndpointPage:
        endpoints = await webhook.ListEndpoints(
            webhook_pb2.ListEndpointsRequest(tenant_id=tenant_id, cursor=page.cursor, limit=page.limit),
            timeout=deadline,
        )
        return EndpointPage(
            items=[EndpointView.from_proto(endpoint) for endpoint in endpoints.endpoints],
            next_cursor=endpoints.next_cursor or None,
        )

    @router.delete(
        "/api/enterprise/webhook-endpoints/{endpoint_id}",
        **documented(EndpointView, "Delete a webhook endpoint", 404),
    )
    async def delete_webhook_endpoint(
        tenant_id: Annotated[str, customer], endpoint_id: EndpointIdPath
    ) -> EndpointView:
        endpoint = await webhook.DeleteEndpoint(
            webhook_pb2.DeleteEndpointRequest(tenant_id=tenant_id, endpoint_id=endpoint_id), timeout=deadline
        )
        return EndpointView.from_proto(endpoint)

    @router.post(
        "/api/enterprise/webhook-endpoints/{endpoint_id}/rotate-secret",
        **documented(
            EndpointSecretRotated,
            "Rotate an endpoint's signing secret (the old one keeps signing during the overlap)",
            404,
        ),
    )
    async def rotate_webhook_endpoint_secret(
        tenant_id: Annotated[str, customer], endpoint_id: EndpointIdPath
    ) -> EndpointSecretRotated:
        rotated = await webhook.RotateEndpointSecret(
            webhook_pb2.RotateEndpointSecretRequest(tenant_id=tenant_id, endpoint_id=endpoint_id),
            timeout=deadline,
        )
        return EndpointSecretRotated.by_name(
            rotated.endpoint,
            secret=rotated.secret,
            previous_expires_at=utc_or_none(
                rotated.previous_expires_at, rotated.HasField("previous_expires_at")
            ),
        )

    @router.get(
        "/api/enterprise/webhook-messages",
        **documented(DeliveryPage, "The tenant's webhook messages with their attempts, newest first", 422),
    )
    async def list_webhook_messages(
        tenant_id: Annotated[str, customer],
        page: PageQuery,
        batch_id: Annotated[str | None, Query(pattern=UUID_PATTERN)] = None,
    ) -> DeliveryPage:
        return await deliveries(tenant_id, (batch_id or "").lower(), page)

    @router.post(
        "/api/enterprise/webhook-messages/{message_id}/redeliver",
        **documented(DeliveryView, "Send a message again (same webhook-id)", 404, status_code=202),
    )
    async def redeliver_webhook_message(
        tenant_id: Annotated[str, customer], message_id: MessageIdPath
    ) -> DeliveryView:
        delivery = await webhook.RedeliverMessage(
            webhook_pb2.RedeliverMessageRequest(tenant_id=tenant_id, message_id=message_id), timeout=deadline
        )
        return DeliveryView.from_proto(delivery)

    @router.get(
        "/api/enterprise/webhook-secret",
        **documented(SigningSecretView, "The secret signing deliveries to batch webhook_urls"),
    )
    async def get_webhook_signing_secret(tenant_id: Annotated[str, customer]) -> SigningSecretView:
        secret = await webhook.GetSigningSecret(
            webhook_pb2.GetSigningSecretRequest(tenant_id=tenant_id), timeout=deadline
        )
        return SigningSecretView.from_proto(secret)

    @router.post(
        "/api/enterprise/webhook-secret/rotate",
        **documented(
            SigningSecretView, "Rotate the signing secret (the old one keeps signing during the overlap)"
        ),
    )
    async def rotate_webhook_signing_secret(tenant_id: Annotated[str, customer]) -> SigningSecretView:
        secret = await webhook.RotateSigningSecret(
            webhook_pb2.RotateSigningSecretRequest(tenant_id=tenant_id), timeout=deadline
        )
        return SigningSecretView.from_proto(secret)

    return router
