"""Provider spend per task (issue 26 item 2, ADR-144).

What the providers bill us for each task, as its task-outcome event reported it (the batch
service sums the task's billed provider jobs from its journal): margins and the admin overview
read real spend from here instead of estimating one provider job per delivered video. One row per
task, written in the transaction that applies its outcome (first report wins, like the outcome).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

S = "billing"


def upgrade() -> None:
    op.create_table(
        "task_provider_costs",
        # The task id as the ledger's transfers name it (`ref_id`), so the two join on an index.
        sa.Column("task_id", sa.Text, primary_key=True),
        sa.Column("batch_id", sa.Uuid, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        # Whether the task was captured (delivered) or refunded: spend on refunded tasks is
        # spend without revenue.
        sa.Column("captured", sa.Boolean, nullable=False),
        sa.Column("provider_cost_usd_micros", sa.BigInteger, nullable=False),
        sa.Column("provider_jobs", sa.Integer, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("provider_cost_usd_micros >= 0", name="ck_task_provider_costs_cost"),
        schema=S,
    )
    op.create_index("ix_task_provider_costs_batch", "task_provider_costs", ["batch_id"], schema=S)
    op.create_index("ix_task_provider_costs_recorded_at", "task_provider_costs", ["recorded_at"], schema=S)


def downgrade() -> None:
    op.drop_table("task_provider_costs", schema=S)
