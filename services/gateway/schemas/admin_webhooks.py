"""Webhook deliveries as operators see them: each message and its HTTP attempts."""

from __future__ import annotations

from datetime import UTC
from typing import Self

from pydantic import AwareDatetime, BaseModel, Field
from reelbatch.proto.webhook.v1 import webhook_pb2

from services.gateway.schemas.fields import optional_time
from services.gateway.schemas.pages import CursorPage


class DeliveryAttemptView(BaseModel):
    """One HTTP attempt at delivering a webhook."""

    attempt_number: int
    attempted_at: AwareDatetime
    duration_ms: int
    http_status: int | None = Field(description="null when no HTTP response was received.")
    error_class: str | None = Field(description="timeout, connection, 4xx, 5xx or blocked; null on success.")
    response_body: str = Field(description="First 1 KiB of the response body.")


class DeliveryView(BaseModel):
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
        return cls(
            message_id=delivery.message_id,
            event_type=delivery.event_type,
            url=delivery.url,
            status=delivery.status,
            attempts=[
                DeliveryAttemptView(
                    attempt_number=attempt.attempt_number,
                    attempted_at=attempt.attempted_at.ToDatetime(tzinfo=UTC),
                    duration_ms=attempt.duration_ms,
                    http_status=attempt.http_status or None,
                    error_class=attempt.error_class or None,
                    response_body=attempt.response_body,
                )
                for attempt in delivery.attempts
            ],
            created_at=delivery.created_at.ToDatetime(tzinfo=UTC),
            next_attempt_at=optional_time(delivery.next_attempt_at, delivery.HasField("next_attempt_at")),
            delivered_at=optional_time(delivery.delivered_at, delivery.HasField("delivered_at")),
        )


class DeliveryPage(CursorPage[DeliveryView]):
    """One page of webhook deliveries, newest first."""
