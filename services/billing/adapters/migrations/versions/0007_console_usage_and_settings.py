"""Customer console (issue 24): a tenant's transfers by kind and period are indexed, and the
tenant's console settings (whether finance members may buy credits) get a table.

The usage page sums a tenant's batch_upfront / batch_refund / batch_settle transfers of a period
and the totals of its top-ups; without (tenant_id, ref_type, created_at) each would scan every
transfer of the tenant. Built CONCURRENTLY, so a live ledger keeps taking writes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

S = "billing"
INDEX = "ix_transfers_tenant_ref_type_created_at"


def upgrade() -> None:
    op.create_table(
        "tenant_console_settings",
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey(f"{S}.tenants.id"), primary_key=True),
        sa.Column("finance_may_buy_credits", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=S,
    )
    with op.get_context().autocommit_block():
        op.create_index(
            INDEX,
            "transfers",
            ["tenant_id", "ref_type", "created_at"],
            schema=S,
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name="transfers", schema=S, postgresql_concurrently=True, if_exists=True)
    op.drop_table("tenant_console_settings", schema=S)
