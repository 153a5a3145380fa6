"""Shared token buckets: every gateway replica's limits in one place (issue 27, ADR-128).

One row per bucket (an API key's request rate, an address's failed sign-ins): the tokens it held
at `updated_at` (seconds since the epoch, PostgreSQL's clock) and the rate and burst it was last
drawn with (and what that draw granted), so a sweep can delete the buckets that are full again (a missing bucket is a full one).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "billing"


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("bucket", sa.Text(), primary_key=True),
        sa.Column("tokens", sa.Float(precision=53), nullable=False),
        sa.Column("updated_at", sa.Float(precision=53), nullable=False),
        sa.Column("rate", sa.Float(precision=53), nullable=False),
        sa.Column("burst", sa.Integer(), nullable=False),
        # What the last draw granted: RETURNING sees only the new row (PostgreSQL before 18).
        sa.Column("granted", sa.Integer(), nullable=False),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("rate_buckets", schema=S)
