"""Dispatch windows, provider slots, claimed_by, deadlines, cancel reasons and retried batches.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-11
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "batch"


def upgrade() -> None:
    op.add_column(
        "batches", sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True), schema=SCHEMA
    )
    op.add_column("batches", sa.Column("cancel_reason", sa.Text(), nullable=True), schema=SCHEMA)
    op.add_column(
        "batches", sa.Column("retry_of", postgresql.UUID(as_uuid=True), nullable=True), schema=SCHEMA
    )
    op.create_index(
        "ix_batches_deadline",
        "batches",
        ["deadline_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("finished_at IS NULL AND deadline_at IS NOT NULL AND NOT cancel_requested"),
    )
    op.add_column(
        "tasks", sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True), schema=SCHEMA
    )
    op.add_column("tasks", sa.Column("claimed_by", sa.Text(), nullable=True), schema=SCHEMA)
    # Tasks of batches queued before this revision were all dispatched at once: mark them so.
    op.execute(
        f"UPDATE {SCHEMA}.tasks SET dispatched_at = created_at "
        f"WHERE status IN ('queued', 'running') AND batch_id IN "
        f"(SELECT id FROM {SCHEMA}.batches WHERE status IN ('queued', 'processing'))"
    )
    op.create_index(
        "ix_tasks_running_model",
        "tasks",
        ["model", "tenant_id"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_index(
        "ix_tasks_outstanding",
        "tasks",
        ["tenant_id", "batch_id", "model"],
        schema=SCHEMA,
        postgresql_where=sa.text("dispatched_at IS NOT NULL AND status IN ('queued', 'running')"),
    )
    op.create_index(
        "ix_tasks_undispatched",
        "tasks",
        ["batch_id", "batch_index"],
        schema=SCHEMA,
        postgresql_where=sa.text("dispatched_at IS NULL AND status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_undispatched", "tasks", schema=SCHEMA)
    op.drop_index("ix_tasks_outstanding", "tasks", schema=SCHEMA)
    op.drop_index("ix_tasks_running_model", "tasks", schema=SCHEMA)
    op.drop_column("tasks", "claimed_by", schema=SCHEMA)
    op.drop_column("tasks", "dispatched_at", schema=SCHEMA)
    op.drop_index("ix_batches_deadline", "batches", schema=SCHEMA)
    op.drop_column("batches", "retry_of", schema=SCHEMA)
    op.drop_column("batches", "cancel_reason", schema=SCHEMA)
    op.drop_column("batches", "deadline_at", schema=SCHEMA)
