"""Webhook schema: endpoints, signing secrets, batch destinations, messages, attempts.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "webhook"


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "endpoints",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("event_types", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="enabled"),
        _created_at(),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('enabled', 'disabled', 'deleted')", name="ck_endpoints_status"),
        schema=S,
    )
    op.create_index("ix_webhook_endpoints_tenant_id", "endpoints", ["tenant_id", "created_at"], schema=S)
    op.create_table(
        "signing_secrets",
        sa.Column("tenant_id", sa.Uuid, primary_key=True),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("previous_secret", sa.Text, nullable=True),
        sa.Column("previous_expires_at", sa.DateTime(timezone=True), nullable=True),
        _created_at(),
        schema=S,
    )
    op.create_table(
        "batch_destinations",
        sa.Column("batch_id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("webhook_url", sa.Text, nullable=False),
        _created_at(),
        schema=S,
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("batch_id", sa.Uuid, nullable=True),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("endpoint_id", sa.Uuid, sa.ForeignKey(f"{S}.endpoints.id"), nullable=True),
        sa.Column("dedupe_key", sa.Text, nullable=False, unique=True),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempt_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("round_attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claim_token", sa.Uuid, nullable=True),
        _created_at(),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="ck_messages_status"),
        schema=S,
    )
    op.create_index(
        "ix_webhook_messages_due",
        "messages",
        ["next_attempt_at"],
        schema=S,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_webhook_messages_batch_id", "messages", ["batch_id", "created_at"], schema=S)
    op.create_index("ix_webhook_messages_tenant_id", "messages", ["tenant_id", "created_at"], schema=S)
    op.create_table(
        "attempts",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("message_id", sa.Text, sa.ForeignKey(f"{S}.messages.id"), nullable=False),
        sa.Column("attempt_number", sa.Integer, nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.BigInteger, nullable=False),
        sa.Column("http_status", sa.Integer, nullable=False),
        sa.Column("error_class", sa.Text, nullable=False),
        sa.Column("response_body", sa.Text, nullable=False),
        sa.UniqueConstraint("message_id", "attempt_number", name="uq_webhook_attempts_number"),
        schema=S,
    )


def downgrade() -> None:
    for table in ("attempts", "messages", "batch_destinations", "signing_secrets", "endpoints"):
        op.drop_table(table, schema=S)
