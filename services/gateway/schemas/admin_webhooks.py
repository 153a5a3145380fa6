"""Webhook deliveries as operators see them: each message and its HTTP attempts."""

from __future__ import annotations

from typing import Self

from pydantic import AwareDatetime, Field
from reelbatch.proto.webhook.v1 import webhook_pb2

from services.gateway.schemas.pages import CursorPage
from services.gateway.schemas.proto_views import ProtoView


class DeliveryAttemptView(ProtoView):
    """One HTTP attempt at delivering a webhook."""

    attempt_number: int
    attempted_at: AwareDatetime
    duration_ms: int
    http_status: int | None = Field(description="null when no HTTP response was received.")
    error_class: str | None = Field(description="timeout, connection, 4xx, 5xx or blocked; null on success.")
    response_body: str = Field(description="First 1 KiB of the response body.")

    @classmethod
    def from_proto(cls, attempt: webhook_pb2.DeliveryAttempt) -> Self:
        """Builds the view from one attempt of the webhook service's Delivery (0: no HTTP status)."""
        return cls.by_name(attempt, http_status=attempt.http_status or None)


class DeliveryView(ProtoView):
    """One webhook message and its attempts."""

    message_id: str
    event_type: str
    url: str
    status: str = Field(description="pending, delivered or failed.")
    attempts: list[DeliveryAttemptView]
    created_at: AwareDatetime
    next_attempt_at: AwareDatetime | None
    delivered_at: AwareDatetime | None

    @classmethod
    def from_proto(cls, delivery: webhook_pb2.Delivery) -> Self:
        """Builds the view from the webhook service's Delivery."""
        return cls.by_name(
            delivery, attempts=[DeliveryAttemptView.from_proto(attempt) for attempt in delivery.attempts]
        )


class DeliveryPage(CursorPage[DeliveryView]):
    """One page of webhook deliveries, newest first."""
