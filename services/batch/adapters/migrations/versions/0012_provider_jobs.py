"""Durable provider jobs (issue 26, ADR-110).

One row per submission of a task's attempt to a remote provider: the intent written before the
create call, the provider's job id recorded in the step that learns it, and how the job ended.
A task dispatched again after a crash resumes the job recorded here instead of paying for another.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "batch"


def upgrade() -> None:
    op.create_table(
        "provider_jobs",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("task_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("batch_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("provider_job_id", sa.Text(), nullable=True),
        sa.Column("handle", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("failure_type", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("retryable", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.Column("claim_token", postgresql.UUID(as_uuid=True), nullable=True),
        # What the provider charges us for the job (price list, US dollar micros), set with its id.
        sa.Column("cost_usd_micros", sa.BigInteger(), nullable=True),
        sa.Column(
            "submitted_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.clock_timestamp(),
        ),
        sa.Column("job_recorded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    op.create_index("ix_provider_jobs_task", "provider_jobs", ["task_id", "attempt"], schema=SCHEMA)
    op.create_index("ix_provider_jobs_batch", "provider_jobs", ["batch_id"], schema=SCHEMA)
    # A provider's job is recorded once, whoever learnt its id.
    op.create_index(
        "uq_provider_jobs_job",
        "provider_jobs",
        ["provider", "provider_job_id"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("provider_job_id IS NOT NULL"),
    )
    # Jobs that may run unwatched: the audit and the sweep of cancelled batches read these.
    op.create_index(
        "ix_provider_jobs_open",
        "provider_jobs",
        ["status"],
        schema=SCHEMA,
        postgresql_where=sa.text("status IN ('submitting', 'running', 'in_doubt')"),
    )


def downgrade() -> None:
    op.drop_table("provider_jobs", schema=SCHEMA)
