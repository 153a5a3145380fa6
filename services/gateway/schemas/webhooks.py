"""Webhooks as customers see them: account endpoints, messages with their attempts, the signing
secret."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from reelbatch.proto.webhook.v1 import webhook_pb2

from services.gateway.schemas.proto_views import MessageView, ProtoView

# The event types an endpoint may subscribe to, as the webhook service accepts them (it validates
# every request): the batch and spend alert events, delivered by default, then the opt-in task events.
WEBHOOK_EVENT_TYPES = (
    "batch.queued",
    "batch.completed",
    "batch.cancelled",
    "credits.low",
    "budget.threshold",
    "auto_top_up.failed",
    "task.succeeded",
    "task.failed",
)


class EndpointIn(BaseModel):
    """An account-level webhook endpoint to register."""

    url: str = Field(max_length=2048, description="https:// URL receiving Standard Webhooks POSTs.")
    event_types: list[str] = Field(
        default_factory=list,
        max_length=len(WEBHOOK_EVENT_TYPES),
        description=f"{', '.join(WEBHOOK_EVENT_TYPES)}; empty means the batch and alert events.",
    )
    description: str = Field(default="", max_length=500)


class EndpointView(MessageView[webhook_pb2.Endpoint]):
    endpoint_id: str
    url: str
    event_types: list[str]
    status: str
    description: str
    created_at: datetime | None


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


class AttemptView(ProtoView):
    attempt_number: int
    attempted_at: datetime | None
    duration_ms: int
    http_status: int | None
    error_class: str | None
    response_body: str

    @classmethod
    def from_proto(cls, attempt: webhook_pb2.DeliveryAttempt) -> AttemptView:
        """Builds the view from one attempt of the webhook service's Delivery (0: no HTTP status)."""
        return cls.by_name(attempt, http_status=attempt.http_status or None)


class DeliveryView(ProtoView):
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
        """Builds the view from the webhook service's Delivery, its attempts included."""
        return cls.by_name(
            delivery, attempts=[AttemptView.from_proto(attempt) for attempt in delivery.attempts]
        )


class DeliveryPage(BaseModel):
    items: list[DeliveryView]
    next_cursor: str | None


class SigningSecretView(MessageView[webhook_pb2.SigningSecret]):
    secret: str = Field(description="Signs deliveries to a batch's own webhook_url.")
    previous_secret: str | None = Field(description="Still signing (alongside) until previous_expires_at.")
    previous_expires_at: datetime | None
