"""Endpoints keep the secret a rotation replaced, and until when it still signs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Adds endpoints.previous_secret and previous_secret_expires_at (empty until a rotation)."""
    op.add_column("endpoints", sa.Column("previous_secret", sa.Text(), nullable=True), schema="webhook")
    op.add_column(
        "endpoints",
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        schema="webhook",
    )


def downgrade() -> None:
    """Drops the rotation columns of endpoints."""
    op.drop_column("endpoints", "previous_secret_expires_at", schema="webhook")
    op.drop_column("endpoints", "previous_secret", schema="webhook")
