"""Circuit breakers per model, shared by every worker (issue 26 item 7, ADR-113).

One row per model that ever failed transiently at its provider: closed, open (no attempt starts
until `retry_at`) or half-open (one probe runs until `probe_until`). Times are epoch seconds of
the database's clock, the one clock all workers share.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "batch"


def upgrade() -> None:
    op.create_table(
        "model_breakers",
        sa.Column("model", sa.Text(), primary_key=True),
        sa.Column("state", sa.Text(), nullable=False, server_default="closed"),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("outage_since", sa.Float(), nullable=True),
        sa.Column("retry_at", sa.Float(), nullable=True),
        sa.Column("probe_until", sa.Float(), nullable=True),
        # How often it opened, and when it last opened and closed (the operator's record).
        sa.Column("opens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('closed', 'open', 'half_open')", name="ck_model_breakers_state"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("model_breakers", schema=SCHEMA)
