"""Automatic top-up (issue 29 item 5, ADR-135): a tenant's settings (threshold, pack, purchases per
month, its Stripe customer and saved payment method) and the purchases its crossings asked for.

`auto_top_ups` is the top-up loop's outbox: a freeze that takes the available credits below the
threshold writes one row in its own transaction; the loop creates the off-session PaymentIntent
(Idempotency-Key: the row's crossing key) and the verified `payment_intent.succeeded` webhook
credits it, like every other payment. At most one purchase per tenant is open at a time.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

S = "billing"


def upgrade() -> None:
    op.create_table(
        "auto_top_up_settings",
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey(f"{S}.tenants.id"), primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("threshold_credits", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("pack_id", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("max_per_month", sa.Integer, nullable=False, server_default=sa.text("1")),
        sa.Column("stripe_customer_id", sa.Text, nullable=True),
        sa.Column("payment_method_id", sa.Text, nullable=True),
        sa.Column("payment_method_label", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("disabled_reason", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("threshold_credits >= 0", name="ck_auto_top_up_threshold"),
        sa.CheckConstraint("max_per_month BETWEEN 1 AND 100", name="ck_auto_top_up_max_per_month"),
        schema=S,
    )
    op.create_table(
        "auto_top_ups",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey(f"{S}.tenants.id"), nullable=False),
        sa.Column("crossing_key", sa.Text, nullable=False, unique=True),
        sa.Column("pack_id", sa.Text, nullable=False),
        sa.Column("credits", sa.BigInteger, nullable=False),
        sa.Column("amount_usd_cents", sa.BigInteger, nullable=False),
        sa.Column("period", sa.Date, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'pending'")),
        sa.Column("payment_intent", sa.Text, nullable=True),
        sa.Column("failure_code", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("failure_message", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "status IN ('pending', 'submitted', 'succeeded', 'failed')", name="ck_auto_top_ups_status"
        ),
        schema=S,
    )
    op.create_index(
        "uq_auto_top_ups_open_per_tenant",
        "auto_top_ups",
        ["tenant_id"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("status IN ('pending', 'submitted')"),
    )
    op.create_index("ix_auto_top_ups_tenant_period", "auto_top_ups", ["tenant_id", "period"], schema=S)
    op.create_index(
        "ix_auto_top_ups_pending",
        "auto_top_ups",
        ["created_at"],
        schema=S,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_table("auto_top_ups", schema=S)
    op.drop_table("auto_top_up_settings", schema=S)
