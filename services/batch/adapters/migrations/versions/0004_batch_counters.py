"""Each batch keeps its outcome counters on its row, written with the outcomes (ADR-031).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "batch"
COUNTERS = ("succeeded_count", "failed_count", "cancelled_count", "credits_spent", "refunded_credits")


def upgrade() -> None:
    for name in COUNTERS:
        op.add_column(
            "batches",
            sa.Column(name, sa.BigInteger(), nullable=False, server_default=sa.text("0")),
            schema=SCHEMA,
        )
    # Batches already running keep counting from what their tasks say now.
    op.execute(
        """
        UPDATE batch.batches AS b
        SET succeeded_count = c.succeeded, failed_count = c.failed, cancelled_count = c.cancelled,
            credits_spent = c.spent, refunded_credits = c.refunded
        FROM (
            SELECT batch_id,
                count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                count(*) FILTER (WHERE status = 'failed') AS failed,
                count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
                coalesce(sum(unit_price) FILTER (WHERE status = 'succeeded'), 0) AS spent,
                coalesce(sum(unit_price) FILTER (WHERE status IN ('failed', 'cancelled')), 0) AS refunded
            FROM batch.tasks GROUP BY batch_id
        ) AS c
        WHERE b.id = c.batch_id
        """
    )


def downgrade() -> None:
    for name in COUNTERS:
        op.drop_column("batches", name, schema=SCHEMA)
