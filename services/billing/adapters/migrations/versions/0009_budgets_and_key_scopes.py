"""Spend control (issue 29, ADR-121/122): monthly budgets, the budget attribution of each batch
hold, and API key scopes with an optional expiry.

Existing keys get every scope (`batches`, `read`, `billing`): they keep the full access they had.
A hold records the UTC month its credits were frozen in (`budget_period`, the first day of that
month), the key that created its batch and the batch's `project`, so a budget's use is the net
spend of the holds of its period (ADR-122): refunds and releases give budget back by themselves.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

S = "billing"
INDEX = "ix_batch_holds_tenant_budget_period"
ALL_SCOPES = "'{batches,read,billing}'::text[]"


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column("scopes", postgresql.ARRAY(sa.Text), nullable=False, server_default=sa.text(ALL_SCOPES)),
        schema=S,
    )
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True), schema=S)
    op.create_check_constraint(
        "ck_api_keys_scopes", "api_keys", f"scopes <@ {ALL_SCOPES} AND cardinality(scopes) > 0", schema=S
    )
    op.create_table(
        "budgets",
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey(f"{S}.tenants.id"), nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("scope_id", sa.Text, nullable=False),
        sa.Column("monthly_credits", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("tenant_id", "scope", "scope_id", name="pk_budgets"),
        sa.CheckConstraint("scope IN ('tenant', 'api_key', 'project')", name="ck_budgets_scope"),
        sa.CheckConstraint("monthly_credits >= 0", name="ck_budgets_monthly_credits"),
        schema=S,
    )
    op.add_column("batch_holds", sa.Column("api_key_id", sa.Uuid, nullable=True), schema=S)
    op.add_column("batch_holds", sa.Column("project", sa.Text, nullable=True), schema=S)
    op.add_column("batch_holds", sa.Column("budget_period", sa.Date, nullable=True), schema=S)
    # Built CONCURRENTLY: a live ledger keeps freezing batches meanwhile.
    with op.get_context().autocommit_block():
        op.create_index(
            INDEX,
            "batch_holds",
            ["tenant_id", "budget_period"],
            schema=S,
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name="batch_holds", schema=S, postgresql_concurrently=True, if_exists=True)
    for column in ("budget_period", "project", "api_key_id"):
        op.drop_column("batch_holds", column, schema=S)
    op.drop_table("budgets", schema=S)
    op.drop_constraint("ck_api_keys_scopes", "api_keys", schema=S)
    op.drop_column("api_keys", "expires_at", schema=S)
    op.drop_column("api_keys", "scopes", schema=S)
