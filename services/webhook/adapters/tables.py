"""The webhook schema as SQLAlchemy Core tables (the migrations create exactly these)."""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)

from libs.columns import created_at_column, tenant_id_column, timestamp_column, uuid_id_column

SCHEMA = "webhook"

metadata = MetaData(schema=SCHEMA)

endpoints = Table(
    "endpoints",
    metadata,
    uuid_id_column(),
    tenant_id_column(),
    Column("url", Text, nullable=False),
    Column("event_types", ARRAY(Text), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    # Signing keys must be usable, so they are stored as issued (protect the database).
    Column("secret", Text, nullable=False),
    # The secret a rotation replaced: it still signs, alongside, until previous_secret_expires_at.
    Column("previous_secret", Text, nullable=True),
    timestamp_column("previous_secret_expires_at", nullable=True),
    Column("status", Text, nullable=False, server_default="enabled"),
    created_at_column(),
    timestamp_column("disabled_at", nullable=True),
    CheckConstraint("status IN ('enabled', 'disabled', 'deleted')", name="ck_endpoints_status"),
    Index("ix_webhook_endpoints_tenant_id", "tenant_id", "created_at"),
)

signing_secrets = Table(
    "signing_secrets",
    metadata,
    tenant_id_column(primary_key=True),
    Column("secret", Text, nullable=False),
    Column("previous_secret", Text, nullable=True),
    timestamp_column("previous_expires_at", nullable=True),
    created_at_column(),
)

batch_destinations = Table(
    "batch_destinations",
    metadata,
    Column("batch_id", Uuid, primary_key=True),
    tenant_id_column(),
    Column("webhook_url", Text, nullable=False),
    created_at_column(),
)

messages = Table(
    "messages",
    metadata,
    # The Standard Webhooks `webhook-id`: fixed at creation, reused by every attempt and replay.
    Column("id", Text, primary_key=True),
    tenant_id_column(),
    Column("batch_id", Uuid, nullable=True),
    Column("event_type", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("url", Text, nullable=False),
    Column("endpoint_id", Uuid, ForeignKey("webhook.endpoints.id"), nullable=True),
    Column("dedupe_key", Text, nullable=False, unique=True),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempt_count", Integer, nullable=False, server_default=text("0")),
    # Attempts since creation or the last replay: the retry schedule is indexed by this.
    Column("round_attempts", Integer, nullable=False, server_default=text("0")),
    timestamp_column("next_attempt_at", nullable=True),
    timestamp_column("lease_until", nullable=True),
    Column("claim_token", Uuid, nullable=True),
    created_at_column(),
    timestamp_column("delivered_at", nullable=True),
    # W3C traceparent of the event that created the message: its deliveries join that trace.
    Column("traceparent", Text, nullable=True),
    CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="ck_messages_status"),
    Index("ix_webhook_messages_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    Index("ix_webhook_messages_batch_id", "batch_id", "created_at"),
    Index("ix_webhook_messages_tenant_id", "tenant_id", "created_at"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("message_id", Text, ForeignKey("webhook.messages.id"), nullable=False),
    Column("attempt_number", Integer, nullable=False),
    timestamp_column("attempted_at", nullable=False),
    Column("duration_ms", BigInteger, nullable=False),
    Column("http_status", Integer, nullable=False),
    Column("error_class", Text, nullable=False),
    Column("response_body", Text, nullable=False),
    UniqueConstraint("message_id", "attempt_number", name="uq_webhook_attempts_number"),
)
