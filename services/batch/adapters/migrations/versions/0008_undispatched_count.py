"""Each batch counts its tasks not yet dispatched on its row (ADR-042).

The dispatch window top-up of every create and outcome transaction probed the tasks index once
per open batch of the tenant (for tasks still to dispatch) and counted every dispatched,
unfinished task of the tenant (up to its whole window), so its cost grew with the tenant's open
batches and window. With this count and the outcome counters of 0004 the window is arithmetic
over the tenant's open batch rows: outstanding = total - finished - undispatched.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "batch"


def upgrade() -> None:
    op.add_column(
        "batches",
        sa.Column("undispatched_count", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        schema=SCHEMA,
    )
    # Open batches keep counting from what their tasks say now; finished ones have none left.
    op.execute(
        """
        UPDATE batch.batches AS b SET undispatched_count = c.undispatched
        FROM (
            SELECT batch_id, count(*) AS undispatched FROM batch.tasks
            WHERE dispatched_at IS NULL AND status = 'queued'
            GROUP BY batch_id
        ) AS c
        WHERE b.id = c.batch_id AND b.finished_at IS NULL
        """
    )


def downgrade() -> None:
    op.drop_column("batches", "undispatched_count", schema=SCHEMA)
