"""Per-second pricing: a batch's hold has one line per (model, duration), each at its own price.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

S = "billing"


def upgrade() -> None:
    op.add_column(
        "batch_hold_lines",
        sa.Column("duration_seconds", sa.Integer, nullable=False, server_default=sa.text("0")),
        schema=S,
    )
    op.drop_constraint("pk_batch_hold_lines", "batch_hold_lines", type_="primary", schema=S)
    op.create_primary_key(
        "pk_batch_hold_lines", "batch_hold_lines", ["batch_id", "model", "duration_seconds"], schema=S
    )


def downgrade() -> None:
    op.drop_constraint("pk_batch_hold_lines", "batch_hold_lines", type_="primary", schema=S)
    op.create_primary_key("pk_batch_hold_lines", "batch_hold_lines", ["batch_id", "model"], schema=S)
    op.drop_column("batch_hold_lines", "duration_seconds", schema=S)
