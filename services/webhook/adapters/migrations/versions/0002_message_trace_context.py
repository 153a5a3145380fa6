"""Webhook messages keep the W3C traceparent of the event that created them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Adds messages.traceparent (nullable: older rows and untraced events have none)."""
    op.add_column("messages", sa.Column("traceparent", sa.Text(), nullable=True), schema="webhook")


def downgrade() -> None:
    """Drops messages.traceparent."""
    op.drop_column("messages", "traceparent", schema="webhook")
