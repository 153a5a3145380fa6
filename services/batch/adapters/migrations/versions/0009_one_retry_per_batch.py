"""A batch has at most one live retry, held by a unique key (ADR-048).

`retry_slot` names the source batch of a retry that was not rejected; its unique index is what
makes retry-failed idempotent per source batch, across requests and replicas. `retry_of` stays
the plain link (kept on rejected retries too), indexed so a batch can list its retries.
Batches retried more than once before this revision keep every link; the oldest of their retries
that was not rejected takes the place.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "batch"


def upgrade() -> None:
    op.add_column(
        "batches", sa.Column("retry_slot", postgresql.UUID(as_uuid=True), nullable=True), schema=SCHEMA
    )
    op.execute(
        """
        UPDATE batch.batches SET retry_slot = retry_of
        WHERE id IN (
            SELECT DISTINCT ON (retry_of) id FROM batch.batches
            WHERE retry_of IS NOT NULL AND status <> 'rejected'
            ORDER BY retry_of, created_at, id
        )
        """
    )
    op.create_index("uq_batches_retry_slot", "batches", ["retry_slot"], unique=True, schema=SCHEMA)
    op.create_index(
        "ix_batches_retry_of",
        "batches",
        ["retry_of", "created_at", "id"],
        schema=SCHEMA,
        postgresql_where=sa.text("retry_of IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_batches_retry_of", table_name="batches", schema=SCHEMA)
    op.drop_index("uq_batches_retry_slot", table_name="batches", schema=SCHEMA)
    op.drop_column("batches", "retry_slot", schema=SCHEMA)
