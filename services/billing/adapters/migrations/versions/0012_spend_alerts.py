"""Spend alert thresholds (issue 29, ADR-125): one row per tenant that set any.

A crossing is not stored: the freeze that crosses a threshold writes its `billing.alert` event to
the outbox in its own transaction (before/after balances under the wallet lock), so there is no
armed/fired state to keep in step with the ledger.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

S = "billing"


def upgrade() -> None:
    op.create_table(
        "alert_thresholds",
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey(f"{S}.tenants.id"), primary_key=True),
        sa.Column("low_balance_credits", sa.BigInteger, nullable=True),
        sa.Column("budget_percent", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("low_balance_credits >= 1", name="ck_alert_thresholds_low_balance"),
        sa.CheckConstraint("budget_percent BETWEEN 1 AND 100", name="ck_alert_thresholds_percent"),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("alert_thresholds", schema=S)
