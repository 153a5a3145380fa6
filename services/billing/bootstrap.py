"""Wires the billing service from Settings; nothing connects at import time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from libs.config import Settings
from libs.connections import ServiceConnections, open_connections
from libs.field_mapping import from_fields
from libs.messaging.outbox import OutboxRelay
from libs.migrations import upgrade_to_head
from libs.price_list import CreditPack as ConfiguredPack
from libs.price_list import ModelPricing
from services.billing.adapters.batch_client import BatchServiceOutcomes
from services.billing.adapters.repository import BillingRepository
from services.billing.adapters.stripe_checkout import StripeCheckout
from services.billing.adapters.stripe_payments import StripePayments
from services.billing.adapters.stripe_webhooks import StripeWebhookVerifier
from services.billing.adapters.tables import outbox
from services.billing.domain.console_access import ConsolePolicy
from services.billing.domain.packs import CreditPack
from services.billing.domain.pricing import ModelCapabilities, ModelPrice
from services.billing.use_cases.handlers import BillingHandlers

# Billing's schema migrations (alembic).
MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


def migrate(database_url: str) -> None:
    """Brings the billing schema to the latest migration (safe to run from several processes)."""
    upgrade_to_head(MIGRATIONS, database_url)


def price_list(pricing: dict[str, ModelPricing]) -> dict[str, ModelPrice]:
    """The configured price list in domain terms."""
    return {
        model: from_fields(
            ModelPrice, row, model=model, capabilities=ModelCapabilities(**row.settings.as_fields())
        )
        for model, row in pricing.items()
    }


def pack_catalog(packs: dict[str, ConfiguredPack]) -> dict[str, CreditPack]:
    """The configured prepaid packs in domain terms."""
    return {pack_id: from_fields(CreditPack, row, pack_id=pack_id) for pack_id, row in packs.items()}


@dataclass
class BillingApp:
    """Everything a billing process runs on; its process (entrypoints/main.py) closes them."""

    # The channel goes to the batch service.
    connections: ServiceConnections
    handlers: BillingHandlers
    relay: OutboxRelay


async def bootstrap(settings: Settings) -> BillingApp:
    """Builds the billing service on the configured bus (RabbitMQ, or PostgreSQL in embedded mode)."""
    connections = await open_connections(settings, settings.grpc_target("batch"))
    batch_service = BatchServiceOutcomes(connections.channel, deadline_seconds=settings.grpc_deadline_seconds)
    handlers = BillingHandlers(
        BillingRepository(connections.database),
        price_list(settings.pricing),
        outcome_source=batch_service,
        totals_source=batch_service,
        chunk_size=settings.billing_chunk_size,
        packs=pack_catalog(settings.packs),
        credit_value_usd_micros=settings.credit_value_usd_micros,
        stripe_verifier=StripeWebhookVerifier(
            settings.stripe_webhook_secret.get_secret_value() if settings.stripe_webhook_secret else None,
            settings.stripe_webhook_tolerance_seconds,
        ),
        checkout=(
            StripeCheckout(settings.stripe_secret_key.get_secret_value(), settings.stripe_api_base)
            if settings.stripe_secret_key
            else None
        ),
        stripe_payments=(
            StripePayments(settings.stripe_secret_key.get_secret_value(), settings.stripe_api_base)
            if settings.stripe_secret_key
            else None
        ),
        console_policy=console_policy(settings),
    )
    relay = OutboxRelay.configured(settings, connections.database, outbox, connections.bus)
    return BillingApp(connections, handlers, relay)


def console_policy(settings: Settings) -> ConsolePolicy:
    """The console's invite and session lifetimes and sign-in lock-out, from settings."""
    return ConsolePolicy(
        invite_seconds=settings.console_invite_seconds,
        session_idle_seconds=settings.console_session_idle_seconds,
        session_max_seconds=settings.console_session_max_seconds,
        max_failures=settings.console_sign_in_max_failures,
        failure_window_seconds=settings.console_sign_in_failure_window_seconds,
        lockout_seconds=settings.console_lockout_seconds,
    )
