"""Webhooks as customers see them: account endpoints, messages with their attempts, the signing
secret."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, Field
from reelbatch.proto.webhook.v1 import webhook_pb2

# The event types an endpoint may subscribe to, as the webhook service accepts them (it validates
# every request): the batch events, delivered by default, then the opt-in task events.
WEBHOOK_EVENT_TYPES = ("batch.queued", "batch.completed", "batch.cancelled", "task.succeeded", "task.failed")


def utc_or_none(value: Timestamp, present: bool) -> datetime | None:
    """A protobuf time as a UTC datetime, None when the field is not set."""
    return value.ToDatetime(tzinfo=UTC) if present else None


class EndpointIn(BaseModel):
    """An account-level webhook endpoint to register."""

    url: str = Field(max_length=2048, description="https:// URL receiving Standard Webhooks POSTs.")
    event_types: list[str] = Field(
        default_factory=list,
        max_length=len(WEBHOOK_EVENT_TYPES),
        description=f"{', '.join(WEBHOOK_EVENT_TYPES)}; empty means the batch events.",
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
    def from_proto(cls, endpoint: webhook_pb2.Endpoint) -> EndpointView:
        return cls(
            endpoint_id=endpoint.endpoint_id,
            url=endpoint.url,
            event_types=list(endpoint.event_types),
            status=endpoint.status,
            description=endpoint.description,
            created_at=utc_or_none(endpoint.created_at, endpoint.HasField("created_at")),
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
    def from_proto(cls, delivery: webhook_pb2.Delivery) -> DeliveryView:
        return cls(
            message_id=delivery.message_id,
            batch_id=delivery.batch_id or None,
            event_type=delivery.event_type,
            url=delivery.url,
            endpoint_id=delivery.endpoint_id or None,
            status=delivery.status,
            created_at=utc_or_none(delivery.created_at, delivery.HasField("created_at")),
            next_attempt_at=utc_or_none(delivery.next_attempt_at, delivery.HasField("next_attempt_at")),
            delivered_at=utc_or_none(delivery.delivered_at, delivery.HasField("delivered_at")),
            attempts=[
                AttemptView(
                    attempt_number=attempt.attempt_number,
                    attempted_at=utc_or_none(attempt.attempted_at, attempt.HasField("attempted_at")),
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

    @classmethod
    def from_proto(cls, secret: webhook_pb2.SigningSecret) -> SigningSecretView:
        """Builds the view from the webhook service's signing secret."""
        return cls(
            secret=secret.secret,
            previous_secret=secret.previous_secret or None,
            previous_expires_at=utc_or_none(
                secret.previous_expires_at, secret.HasField("previous_expires_at")
            ),
        )
