"""Per-second pricing: each task keeps the video length it was priced for.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "batch"


def upgrade() -> None:
    op.add_column(
        "tasks",
        sa.Column("duration_seconds", sa.Integer(), nullable=False, server_default=sa.text("0")),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("tasks", "duration_seconds", schema=SCHEMA)
