"""A tenant's open batches in creation order, for the dispatch window top-up.

The top-up of every create and outcome transaction reads the tenant's open batches; through
`ix_batches_unfinished` (by status) it read every tenant's open batches and filtered, so its cost
grew with the whole system's backlog instead of the tenant's.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "batch"


def upgrade() -> None:
    op.create_index(
        "ix_batches_open_by_tenant",
        "batches",
        ["tenant_id", "created_at", "id"],
        schema=SCHEMA,
        postgresql_where=sa.text("finished_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_batches_open_by_tenant", table_name="batches", schema=SCHEMA)
