"""What the service stores and reads back, in domain terms (the repository maps rows to these)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Endpoint:
    """An account-level destination with its event filter."""

    endpoint_id: str
    tenant_id: str
    url: str
    event_types: tuple[str, ...]
    status: str
    created_at: datetime
    description: str = ""


def secrets_signing_at(
    current: str, previous: str | None, previous_expires_at: datetime | None, now: datetime
) -> tuple[str, ...]:
    """Every secret that signs at `now`: the current one, plus the previous during the overlap."""
    if previous and previous_expires_at and now < previous_expires_at:
        return (current, previous)
    return (current,)


@dataclass(frozen=True)
class RotatedEndpointSecret:
    """An endpoint's new secret (shown once) and when the one it replaced stops signing."""

    endpoint: Endpoint
    secret: str
    previous_expires_at: datetime


@dataclass(frozen=True)
class TenantSecret:
    """The tenant's default signing secret (for batch webhook_urls) and the one it replaced."""

    secret: str
    created_at: datetime
    previous_secret: str | None = None
    previous_expires_at: datetime | None = None

    def signing_secrets(self, now: datetime) -> tuple[str, ...]:
        """Every secret that signs at `now`: the current one, plus the previous during overlap."""
        return secrets_signing_at(self.secret, self.previous_secret, self.previous_expires_at, now)


@dataclass(frozen=True)
class Attempt:
    """One recorded HTTP attempt of a message."""

    attempt_number: int
    attempted_at: datetime
    duration_ms: int
    http_status: int
    error_class: str
    response_body: str


@dataclass(frozen=True)
class Message:
    """A webhook message to one destination, with its delivery state and attempts."""

    message_id: str
    tenant_id: str
    batch_id: str | None
    event_type: str
    url: str
    endpoint_id: str | None
    status: str
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    attempts: tuple[Attempt, ...] = field(default=())


@dataclass(frozen=True)
class NewMessage:
    """A message about to be recorded (ignored if its dedupe key already exists)."""

    message_id: str
    tenant_id: str
    batch_id: str | None
    event_type: str
    body: bytes
    url: str
    endpoint_id: str | None
    dedupe_key: str


@dataclass(frozen=True)
class ClaimedMessage:
    """A due message leased to this deliverer, with what it takes to send it."""

    message_id: str
    url: str
    body: bytes
    endpoint_id: str | None
    secrets: tuple[str, ...]
    round_attempts: int
    attempt_count: int
    claim_token: str
    # W3C traceparent of the event that created the message ("" when unknown), for tracing.
    traceparent: str = ""


@dataclass(frozen=True)
class BatchSnapshot:
    """A batch as the batch service answers it: its status, its own webhook_url ("" when none),
    and the fields its batch events carry, as the REST API shows them (`event_fields`)."""

    status: str
    webhook_url: str
    event_fields: Mapping[str, object]
