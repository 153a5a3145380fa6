"""Webhook endpoints, messages and signing secret (customer), and a batch's deliveries (admin).

No `from __future__ import annotations`: FastAPI must resolve the endpoints' local annotations.
"""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, Field
from reelbatch.proto.webhook.v1 import webhook_pb2

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.http.auth import (
    AdminAuthenticator,
    ApiKeyAuthenticator,
    admin_dependency,
    tenant_dependency,
)
from services.gateway.http.params import (
    DEFAULT_PAGE_SIZE,
    UUID_PATTERN,
    BatchIdPath,
    PageCursor,
    PageLimit,
    error_responses,
)

MessageIdPath = Annotated[str, Path(pattern=r"^msg_[0-9a-f]{32}$", description="The webhook-id.")]
EndpointIdPath = Annotated[str, Path(pattern=UUID_PATTERN, description="The endpoint id.")]


class EndpointIn(BaseModel):
    """An account-level webhook endpoint to register."""

    url: str = Field(max_length=2048, description="https:// URL receiving Standard Webhooks POSTs.")
    event_types: list[str] = Field(
        default_factory=list,
        max_length=5,
        description="batch.queued, batch.completed, batch.cancelled, task.succeeded, task.failed; "
        "empty means the batch events.",
    )
    description: str = Field(default="", max_length=500)


class EndpointView(BaseModel):
    endpoint_id: str
    url: str
    event_types: list[str]
    status: str
    description: str
    created_at: datetime | None

    @classmethod
    def from_proto(cls, endpoint: webhook_pb2.Endpoint) -> "EndpointView":
        return cls(
            endpoint_id=endpoint.endpoint_id,
            url=endpoint.url,
            event_types=list(endpoint.event_types),
            status=endpoint.status,
            description=endpoint.description,
            created_at=_utc(endpoint.created_at, endpoint.HasField("created_at")),
        )


class EndpointCreated(EndpointView):
    secret: str = Field(description="whsec_ signing secret; shown only once.")


class EndpointSecretRotated(EndpointView):
    secret: str = Field(description="The new whsec_ signing secret; shown only once.")
    previous_expires_at: datetime | None = Field(
        description="Until then deliveries carry a signature with the previous secret too."
    )


class EndpointPage(BaseModel):
    items: list[EndpointView]
    next_cursor: str | None


class AttemptView(BaseModel):
    attempt_number: int
    attempted_at: datetime | None
    duration_ms: int
    http_status: int | None
    error_class: str | None
    response_body: str


class DeliveryView(BaseModel):
    message_id: str
    batch_id: str | None
    event_type: str
    url: str
    endpoint_id: str | None
    status: str
    created_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    attempts: list[AttemptView]

    @classmethod
    def from_proto(cls, delivery: webhook_pb2.Delivery) -> "DeliveryView":
        return cls(
            message_id=delivery.message_id,
            batch_id=delivery.batch_id or None,
            event_type=delivery.event_type,
            url=delivery.url,
            endpoint_id=delivery.endpoint_id or None,
            status=delivery.status,
            created_at=_utc(delivery.created_at, delivery.HasField("created_at")),
            next_attempt_at=_utc(delivery.next_attempt_at, delivery.HasField("next_attempt_at")),
            delivered_at=_utc(delivery.delivered_at, delivery.HasField("delivered_at")),
            attempts=[
                AttemptView(
                    attempt_number=attempt.attempt_number,
                    attempted_at=_utc(attempt.attempted_at, attempt.HasField("attempted_at")),
                    duration_ms=attempt.duration_ms,
                    http_status=attempt.http_status or None,
                    error_class=attempt.error_class or None,
                    response_body=attempt.response_body,
                )
                for attempt in delivery.attempts
            ],
        )


class DeliveryPage(BaseModel):
    items: list[DeliveryView]
    next_cursor: str | None


class SigningSecretView(BaseModel):
    secret: str = Field(description="Signs deliveries to a batch's own webhook_url.")
    previous_secret: str | None = Field(description="Still signing (alongside) until previous_expires_at.")
    previous_expires_at: datetime | None


def _utc(value: Timestamp, present: bool) -> datetime | None:
    return value.ToDatetime(tzinfo=UTC) if present else None


def _secret_view(secret: webhook_pb2.SigningSecret) -> SigningSecretView:
    return SigningSecretView(
        secret=secret.secret,
        previous_secret=secret.previous_secret or None,
        previous_expires_at=_utc(secret.previous_expires_at, secret.HasField("previous_expires_at")),
    )


def webhooks_router(
    settings: Settings,
    backends: Backends,
    authenticator: ApiKeyAuthenticator,
    admin_auth: AdminAuthenticator,
) -> APIRouter:
    """Customer routes under /api/enterprise and the admin route under /api/admin."""
    router = APIRouter(tags=["webhooks"], responses=error_responses(401, 500, 503))
    customer = Depends(tenant_dependency(authenticator))
    admin = Depends(admin_dependency(admin_auth))
    deadline = settings.grpc_deadline_seconds
    webhook = backends.webhook

    @router.post(
        "/api/enterprise/webhook-endpoints",
        status_code=201,
        response_model=EndpointCreated,
        summary="Register a webhook endpoint (its secret is shown once)",
        responses=error_responses(422),
    )
    async def create_endpoint(tenant_id: Annotated[str, customer], body: EndpointIn) -> EndpointCreated:
        created = await webhook.CreateEndpoint(
            webhook_pb2.CreateEndpointRequest(
                tenant_id=tenant_id, url=body.url, event_types=body.event_types, description=body.description
            ),
            timeout=deadline,
        )
        view = EndpointView.from_proto(created.endpoint)
        return EndpointCreated(**view.model_dump(), secret=created.secret)

    @router.get(
        "/api/enterprise/webhook-endpoints",
        response_model=EndpointPage,
        summary="List the tenant's webhook endpoints",
    )
    async def list_endpoints(
        tenant_id: Annotated[str, customer], cursor: PageCursor = None, limit: PageLimit = DEFAULT_PAGE_SIZE
    ) -> EndpointPage:
        page = await webhook.ListEndpoints(
            webhook_pb2.ListEndpointsRequest(tenant_id=tenant_id, cursor=cursor or "", limit=limit),
            timeout=deadline,
        )
        return EndpointPage(
            items=[EndpointView.from_proto(endpoint) for endpoint in page.endpoints],
            next_cursor=page.next_cursor or None,
        )

    @router.delete(
        "/api/enterprise/webhook-endpoints/{endpoint_id}",
        response_model=EndpointView,
        summary="Delete a webhook endpoint",
        responses=error_responses(404),
    )
    async def delete_endpoint(
        tenant_id: Annotated[str, customer], endpoint_id: EndpointIdPath
    ) -> EndpointView:
        endpoint = await webhook.DeleteEndpoint(
            webhook_pb2.DeleteEndpointRequest(tenant_id=tenant_id, endpoint_id=endpoint_id), timeout=deadline
        )
        return EndpointView.from_proto(endpoint)

    @router.post(
        "/api/enterprise/webhook-endpoints/{endpoint_id}/rotate-secret",
        response_model=EndpointSecretRotated,
        summary="Rotate an endpoint's signing secret (the old one keeps signing during the overlap)",
        responses=error_responses(404),
    )
    async def rotate_endpoint_secret(
        tenant_id: Annotated[str, customer], endpoint_id: EndpointIdPath
    ) -> EndpointSecretRotated:
        rotated = await webhook.RotateEndpointSecret(
            webhook_pb2.RotateEndpointSecretRequest(tenant_id=tenant_id, endpoint_id=endpoint_id),
            timeout=deadline,
        )
        view = EndpointView.from_proto(rotated.endpoint)
        return EndpointSecretRotated(
            **view.model_dump(),
            secret=rotated.secret,
            previous_expires_at=_utc(rotated.previous_expires_at, rotated.HasField("previous_expires_at")),
        )

    @router.get(
        "/api/enterprise/webhook-messages",
        response_model=DeliveryPage,
        summary="The tenant's webhook messages with their attempts, newest first",
        responses=error_responses(422),
    )
    async def list_messages(
        tenant_id: Annotated[str, customer],
        batch_id: Annotated[str | None, Query(pattern=UUID_PATTERN)] = None,
        cursor: PageCursor = None,
        limit: PageLimit = DEFAULT_PAGE_SIZE,
    ) -> DeliveryPage:
        page = await webhook.ListDeliveries(
            webhook_pb2.ListDeliveriesRequest(
                tenant_id=tenant_id, batch_id=(batch_id or "").lower(), cursor=cursor or "", limit=limit
            ),
            timeout=deadline,
        )
        return DeliveryPage(
            items=[DeliveryView.from_proto(delivery) for delivery in page.deliveries],
            next_cursor=page.next_cursor or None,
        )

    @router.post(
        "/api/enterprise/webhook-messages/{message_id}/redeliver",
        status_code=202,
        response_model=DeliveryView,
        summary="Send a message again (same webhook-id)",
        responses=error_responses(404),
    )
    async def redeliver(tenant_id: Annotated[str, customer], message_id: MessageIdPath) -> DeliveryView:
        delivery = await webhook.RedeliverMessage(
            webhook_pb2.RedeliverMessageRequest(tenant_id=tenant_id, message_id=message_id), timeout=deadline
        )
        return DeliveryView.from_proto(delivery)

    @router.get(
        "/api/enterprise/webhook-secret",
        response_model=SigningSecretView,
        summary="The secret signing deliveries to batch webhook_urls",
    )
    async def get_secret(tenant_id: Annotated[str, customer]) -> SigningSecretView:
        secret = await webhook.GetSigningSecret(
            webhook_pb2.GetSigningSecretRequest(tenant_id=tenant_id), timeout=deadline
        )
        return _secret_view(secret)

    @router.post(
        "/api/enterprise/webhook-secret/rotate",
        response_model=SigningSecretView,
        summary="Rotate the signing secret (the old one keeps signing during the overlap)",
    )
    async def rotate_secret(tenant_id: Annotated[str, customer]) -> SigningSecretView:
        secret = await webhook.RotateSigningSecret(
            webhook_pb2.RotateSigningSecretRequest(tenant_id=tenant_id), timeout=deadline
        )
        return _secret_view(secret)

    @router.get(
        "/api/admin/batches/{batch_id}/webhooks",
        response_model=DeliveryPage,
        summary="A batch's webhook deliveries with every attempt",
        tags=["admin"],
    )
    async def admin_batch_webhooks(
        _: Annotated[object, admin],
        batch_id: BatchIdPath,
        cursor: PageCursor = None,
        limit: PageLimit = DEFAULT_PAGE_SIZE,
    ) -> DeliveryPage:
        page = await webhook.ListDeliveries(
            webhook_pb2.ListDeliveriesRequest(
                tenant_id="", batch_id=batch_id.lower(), cursor=cursor or "", limit=limit
            ),
            timeout=deadline,
        )
        return DeliveryPage(
            items=[DeliveryView.from_proto(delivery) for delivery in page.deliveries],
            next_cursor=page.next_cursor or None,
        )

    return router
