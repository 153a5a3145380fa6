"""What the customer console's developers do: API keys (created and shown once, revoked), webhook
endpoints (registered, secrets rotated) and the delivery log with replays.

Every call names the signed-in member's tenant; billing and webhook scope each call by it, so
another tenant's key, endpoint or message is NOT_FOUND (the pages answer 404).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from reelbatch.proto.billing.v1 import billing_pb2
from reelbatch.proto.webhook.v1 import webhook_pb2

from services.gateway.adapters.backends import Backends
from services.gateway.schemas.access import ApiKeyView
from services.gateway.schemas.fields import optional_timestamp
from services.gateway.schemas.webhooks import DeliveryView, EndpointView

# Deliveries read for the timeline page (newest first).
TIMELINE_PAGE = 50


@dataclass(frozen=True)
class CreatedSecret:
    """Something created with a secret shown this once (an API key, an endpoint's signing secret)."""

    identifier: str
    secret: str


@dataclass(frozen=True)
class Timeline:
    """A page of webhook messages, each with its attempts, and where the next page starts."""

    messages: tuple[DeliveryView, ...]
    next_cursor: str | None
    endpoints: dict[str, str]

    @property
    def failed_count(self) -> int:
        return sum(1 for message in self.messages if message.status == "failed")


class ConsoleDevelopers:
    """One tenant's keys, endpoints and webhook messages, as its developers manage them."""

    def __init__(
        self, backends: Backends, deadline_seconds: float, forget_key: Callable[[str], None] | None = None
    ) -> None:
        self._backends = backends
        self._deadline = deadline_seconds
        # Drops a revoked key from this gateway's key cache at once (the other replicas drop it
        # when billing's invalidation stream announces it, ADR-130).
        self._forget_key = forget_key

    async def keys(self, tenant_id: str) -> tuple[ApiKeyView, ...]:
        """The tenant's API keys, oldest first, never their secrets."""
        answer = await self._backends.billing.ListApiKeys(
            billing_pb2.ListApiKeysRequest(tenant_id=tenant_id), timeout=self._deadline
        )
        return tuple(ApiKeyView.from_proto(key) for key in answer.keys)

    async def create_key(self, tenant_id: str, scopes: Sequence[str]) -> CreatedSecret:
        """A new API key of the tenant with these scopes; its secret is in this answer only."""
        created = await self._backends.billing.CreateApiKey(
            billing_pb2.CreateApiKeyRequest(tenant_id=tenant_id, scopes=scopes), timeout=self._deadline
        )
        return CreatedSecret(created.key_id, created.api_key)

    async def revoke_key(self, tenant_id: str, key_id: str) -> ApiKeyView:
        """Revokes one of the tenant's keys (refused by every gateway replica within milliseconds)."""
        revoked = await self._backends.billing.RevokeApiKey(
            billing_pb2.RevokeApiKeyRequest(tenant_id=tenant_id, key_id=key_id), timeout=self._deadline
        )
        if self._forget_key is not None:
            self._forget_key(revoked.key_id)
        return ApiKeyView.from_proto(revoked)

    async def endpoints(self, tenant_id: str) -> tuple[EndpointView, ...]:
        """The tenant's webhook endpoints, newest first."""
        answer = await self._backends.webhook.ListEndpoints(
            webhook_pb2.ListEndpointsRequest(tenant_id=tenant_id, limit=100), timeout=self._deadline
        )
        return tuple(EndpointView.from_proto(endpoint) for endpoint in answer.endpoints)

    async def create_endpoint(
        self, tenant_id: str, url: str, event_types: Sequence[str], description: str
    ) -> CreatedSecret:
        """Registers an endpoint (the webhook service refuses an unsafe URL or unknown event type)."""
        created = await self._backends.webhook.CreateEndpoint(
            webhook_pb2.CreateEndpointRequest(
                tenant_id=tenant_id, url=url, event_types=list(event_types), description=description
            ),
            timeout=self._deadline,
        )
        return CreatedSecret(created.endpoint.endpoint_id, created.secret)

    async def rotate_endpoint_secret(self, tenant_id: str, endpoint_id: str) -> CreatedSecret:
        """A new signing secret for the endpoint; the previous one keeps signing for an overlap."""
        rotated = await self._backends.webhook.RotateEndpointSecret(
            webhook_pb2.RotateEndpointSecretRequest(tenant_id=tenant_id, endpoint_id=endpoint_id),
            timeout=self._deadline,
        )
        return CreatedSecret(rotated.endpoint.endpoint_id, rotated.secret)

    async def timeline(self, tenant_id: str, batch_id: str = "", cursor: str = "") -> Timeline:
        """The tenant's webhook messages, newest first, each with every attempt."""
        page, endpoints = (
            await self._backends.webhook.ListDeliveries(
                webhook_pb2.ListDeliveriesRequest(
                    tenant_id=tenant_id, batch_id=batch_id, cursor=cursor, limit=TIMELINE_PAGE
                ),
                timeout=self._deadline,
            ),
            await self.endpoints(tenant_id),
        )
        return Timeline(
            messages=tuple(DeliveryView.from_proto(delivery) for delivery in page.deliveries),
            next_cursor=page.next_cursor or None,
            endpoints={endpoint.endpoint_id: endpoint.url for endpoint in endpoints},
        )

    async def replay(self, tenant_id: str, message_id: str) -> DeliveryView:
        """Sends one message again, with the same webhook-id and a fresh attempt budget."""
        delivery = await self._backends.webhook.RedeliverMessage(
            webhook_pb2.RedeliverMessageRequest(tenant_id=tenant_id, message_id=message_id),
            timeout=self._deadline,
        )
        return DeliveryView.from_proto(delivery)

    async def replay_failed_since(self, tenant_id: str, since: datetime) -> int:
        """Sends again every failed message of the tenant created at or after `since`; how many."""
        answer = await self._backends.webhook.RecoverFailed(
            webhook_pb2.RecoverFailedRequest(tenant_id=tenant_id, since=optional_timestamp(since)),
            timeout=self._deadline,
        )
        return answer.redelivered_count


def attempts_by_outcome(message: DeliveryView) -> dict[str, int]:
    """How a message's attempts ended: delivered, timeout, connection, 4xx, 5xx, blocked."""
    counts: dict[str, int] = defaultdict(int)
    for attempt in message.attempts:
        counts[attempt.error_class or "delivered"] += 1
    return dict(counts)
