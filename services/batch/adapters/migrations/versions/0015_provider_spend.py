"""Provider spend per task (issue 26 item 2, ADR-144).

`provider_jobs.failures_billed` records, with each job, whether its provider bills a job that
failed on its side (the price list's `provider_bills_failures` when it was submitted), so what a
job costs us is a function of its row. `tasks.provider_cost_usd_micros` and `tasks.provider_jobs`
hold what the task's billed provider jobs cost, summed in the transaction that writes its
outcome: the task-outcome event carries them to billing.

Revision ID: 0015
Revises: 0014 (rate budgets)
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "batch"


def upgrade() -> None:
    # Constant defaults: PostgreSQL adds these columns without rewriting the tables.
    op.add_column(
        "provider_jobs",
        sa.Column("failures_billed", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        schema=SCHEMA,
    )
    op.add_column(
        "tasks",
        sa.Column("provider_cost_usd_micros", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        schema=SCHEMA,
    )
    op.add_column(
        "tasks",
        sa.Column("provider_jobs", sa.Integer(), nullable=False, server_default=sa.text("0")),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("tasks", "provider_jobs", schema=SCHEMA)
    op.drop_column("tasks", "provider_cost_usd_micros", schema=SCHEMA)
    op.drop_column("provider_jobs", "failures_billed", schema=SCHEMA)
