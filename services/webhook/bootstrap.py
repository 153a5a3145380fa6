"""Wires the webhook service from Settings; nothing connects at import time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from libs.config import Settings
from libs.connections import ServiceConnections, open_connections
from libs.migrations import upgrade_to_head
from services.webhook.adapters.batch_client import BatchServiceReader
from services.webhook.adapters.network import HttpSender, SystemResolver
from services.webhook.adapters.repository import WebhookRepository
from services.webhook.domain.destinations import DestinationPolicy
from services.webhook.use_cases.dependencies import DeliveryPolicy
from services.webhook.use_cases.handlers import WebhookHandlers


def migrate(database_url: str) -> None:
    """Brings the webhook schema to the latest migration (safe to run from several processes)."""
    upgrade_to_head(Path(__file__).parent / "adapters" / "migrations", database_url)


def destination_policy(settings: Settings) -> DestinationPolicy:
    return DestinationPolicy(
        allow_http=settings.webhook_allow_http, allow_private=settings.webhook_allow_private
    )


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    return DeliveryPolicy(
        retry_schedule_seconds=tuple(settings.webhook_retry_schedule_seconds),
        jitter_fraction=settings.webhook_retry_jitter,
        lease_seconds=settings.webhook_lease_seconds,
        secret_overlap_seconds=settings.webhook_secret_overlap_seconds,
    )


@dataclass
class WebhookApp:
    """Everything a webhook process runs on; its process (entrypoints/main.py) closes them."""

    # The channel goes to the batch service.
    connections: ServiceConnections
    sender: HttpSender
    handlers: WebhookHandlers


async def bootstrap(settings: Settings) -> WebhookApp:
    """Builds the webhook service on the configured bus (RabbitMQ, or PostgreSQL in embedded mode)."""
    connections = await open_connections(settings, settings.grpc_target("batch"))
    sender = HttpSender(settings.webhook_timeout_seconds)
    handlers = WebhookHandlers(
        WebhookRepository(connections.database),
        destinations=destination_policy(settings),
        delivery=delivery_policy(settings),
        resolver=SystemResolver(),
        sender=sender,
        batches=BatchServiceReader(connections.channel, deadline_seconds=settings.grpc_deadline_seconds),
    )
    return WebhookApp(connections, sender, handlers)
