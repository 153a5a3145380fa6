"""Requests-per-minute budgets of provider routes, shared by every worker (issue 26 item 4, ADR-148).

One row per budget (a provider and its model id): the times of the create calls granted in the
current window, epoch seconds of the database's clock, changed under the row's lock.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "batch"


def upgrade() -> None:
    op.create_table(
        "rate_budgets",
        sa.Column("budget", sa.Text(), primary_key=True),
        sa.Column(
            "grants",
            postgresql.ARRAY(sa.Float(precision=53)),
            nullable=False,
            server_default=sa.text("'{}'::float8[]"),
        ),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("rate_budgets", schema=SCHEMA)
