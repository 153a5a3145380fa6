"""Tasks handed back by a worker that stopped (issue 27 item 6, ADR-139).

A worker told to stop gives the tasks it could not finish within its grace period back at once
(queued and dispatched again) instead of letting their leases expire. Such a claim was not lost:
`handbacks` counts them, and the lease sweep fails a task only after MAX_TASK_CLAIMS claims that
were lost (claims - handbacks), so rolling restarts and scale-downs never fail a task. Adding a
column with a constant default rewrites nothing (PostgreSQL 11+).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "batch"


def upgrade() -> None:
    op.add_column(
        "tasks", sa.Column("handbacks", sa.Integer(), nullable=False, server_default="0"), schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_column("tasks", "handbacks", schema=SCHEMA)
