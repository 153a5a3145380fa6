"""The WebhookService gRPC servicer: proto in, handler call, proto out (errors are ServiceErrors)."""

# Method names are fixed by the generated gRPC base class.
# ruff: noqa: N802

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from reelbatch.proto.webhook.v1 import webhook_pb2, webhook_pb2_grpc

from libs.errors import InvalidArgument
from libs.field_mapping import from_fields
from libs.rpc.timestamps import request_instant
from services.webhook.domain.records import Endpoint, Message, TenantSecret
from services.webhook.use_cases.handlers import WebhookHandlers

SERVICE_NAME = webhook_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name

Context = grpc.aio.ServicerContext[object, object]

DEFAULT_PAGE_SIZE = 50
# Up to the gateway's one page-size rule (1..1000, ADR-093), so a page is never silently shorter.
MAX_PAGE_SIZE = 1000


def _timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    value = Timestamp()
    value.FromDatetime(moment.astimezone(UTC))
    return value


def _tenant(tenant_id: str, *, admin_allowed: bool) -> str:
    """The tenant id checked as a UUID; "" (admin scope) only where the contract allows it."""
    if not tenant_id and admin_allowed:
        return ""
    try:
        return str(uuid.UUID(tenant_id))
    except ValueError:
        raise InvalidArgument("tenant_id must be a UUID", tenant_id=tenant_id) from None


def _limit(limit: int) -> int:
    return min(limit, MAX_PAGE_SIZE) if limit > 0 else DEFAULT_PAGE_SIZE


def endpoint_proto(endpoint: Endpoint) -> webhook_pb2.Endpoint:
    return from_fields(webhook_pb2.Endpoint, endpoint, created_at=_timestamp(endpoint.created_at))


def delivery_proto(message: Message) -> webhook_pb2.Delivery:
    return from_fields(
        webhook_pb2.Delivery,
        message,
        batch_id=message.batch_id or "",
        endpoint_id=message.endpoint_id or "",
        created_at=_timestamp(message.created_at),
        next_attempt_at=_timestamp(message.next_attempt_at),
        delivered_at=_timestamp(message.delivered_at),
        attempts=[
            from_fields(webhook_pb2.DeliveryAttempt, attempt, attempted_at=_timestamp(attempt.attempted_at))
            for attempt in message.attempts
        ],
    )


def secret_proto(secret: TenantSecret, now: datetime) -> webhook_pb2.SigningSecret:
    overlapping = len(secret.signing_secrets(now)) > 1
    return webhook_pb2.SigningSecret(
        secret=secret.secret,
        previous_secret=secret.previous_secret or "" if overlapping else "",
        previous_expires_at=_timestamp(secret.previous_expires_at) if overlapping else None,
        created_at=_timestamp(secret.created_at),
    )


class WebhookServicer(webhook_pb2_grpc.WebhookServiceServicer):
    """Translates WebhookService calls to `WebhookHandlers`."""

    def __init__(self, handlers: WebhookHandlers) -> None:
        self._handlers = handlers

    async def ListDeliveries(
        self, request: webhook_pb2.ListDeliveriesRequest, context: Context
    ) -> webhook_pb2.ListDeliveriesResponse:
        found, next_cursor = await self._handlers.list_deliveries(
            _tenant(request.tenant_id, admin_allowed=True),
            request.batch_id,
            request.cursor,
            _limit(request.limit),
        )
        return webhook_pb2.ListDeliveriesResponse(
            deliveries=[delivery_proto(message) for message in found], next_cursor=next_cursor
        )

    async def ValidateUrl(
        self, request: webhook_pb2.ValidateUrlRequest, context: Context
    ) -> webhook_pb2.ValidateUrlResponse:
        await self._handlers.validate_url(request.url)
        return webhook_pb2.ValidateUrlResponse()

    async def CreateEndpoint(
        self, request: webhook_pb2.CreateEndpointRequest, context: Context
    ) -> webhook_pb2.CreateEndpointResponse:
        endpoint, secret = await self._handlers.create_endpoint(
            _tenant(request.tenant_id, admin_allowed=False),
            request.url,
            list(request.event_types),
            request.description,
        )
        return webhook_pb2.CreateEndpointResponse(endpoint=endpoint_proto(endpoint), secret=secret)

    async def ListEndpoints(
        self, request: webhook_pb2.ListEndpointsRequest, context: Context
    ) -> webhook_pb2.ListEndpointsResponse:
        found, next_cursor = await self._handlers.list_endpoints(
            _tenant(request.tenant_id, admin_allowed=False), request.cursor, _limit(request.limit)
        )
        return webhook_pb2.ListEndpointsResponse(
            endpoints=[endpoint_proto(endpoint) for endpoint in found], next_cursor=next_cursor
        )

    async def DeleteEndpoint(
        self, request: webhook_pb2.DeleteEndpointRequest, context: Context
    ) -> webhook_pb2.Endpoint:
        endpoint = await self._handlers.delete_endpoint(
            _tenant(request.tenant_id, admin_allowed=False), request.endpoint_id
        )
        return endpoint_proto(endpoint)

    async def GetSigningSecret(
        self, request: webhook_pb2.GetSigningSecretRequest, context: Context
    ) -> webhook_pb2.SigningSecret:
        secret = await self._handlers.signing_secret(_tenant(request.tenant_id, admin_allowed=False))
        return secret_proto(secret, datetime.now(UTC))

    async def RotateSigningSecret(
        self, request: webhook_pb2.RotateSigningSecretRequest, context: Context
    ) -> webhook_pb2.SigningSecret:
        secret = await self._handlers.rotate_signing_secret(_tenant(request.tenant_id, admin_allowed=False))
        return secret_proto(secret, datetime.now(UTC))

    async def RotateEndpointSecret(
        self, request: webhook_pb2.RotateEndpointSecretRequest, context: Context
    ) -> webhook_pb2.RotateEndpointSecretResponse:
        rotated = await self._handlers.rotate_endpoint_secret(
            _tenant(request.tenant_id, admin_allowed=False), request.endpoint_id
        )
        return webhook_pb2.RotateEndpointSecretResponse(
            endpoint=endpoint_proto(rotated.endpoint),
            secret=rotated.secret,
            previous_expires_at=_timestamp(rotated.previous_expires_at),
        )

    async def RedeliverMessage(
        self, request: webhook_pb2.RedeliverMessageRequest, context: Context
    ) -> webhook_pb2.Delivery:
        message = await self._handlers.redeliver(
            _tenant(request.tenant_id, admin_allowed=True), request.message_id
        )
        return delivery_proto(message)

    async def RecoverFailed(
        self, request: webhook_pb2.RecoverFailedRequest, context: Context
    ) -> webhook_pb2.RecoverFailedResponse:
        since = request_instant(request, "since") or datetime.min.replace(tzinfo=UTC)
        count = await self._handlers.recover_failed(_tenant(request.tenant_id, admin_allowed=True), since)
        return webhook_pb2.RecoverFailedResponse(redelivered_count=count)
