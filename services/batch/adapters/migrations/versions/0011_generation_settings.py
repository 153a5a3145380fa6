"""Generation settings and input files (issue 25, ADR-090..ADR-092).

Tasks keep their item's settings (JSONB, NULL for none), the priced options that were part of
their price key, and the live detail of a running task (next attempt time, last error). Input
images uploaded through the files API get a table of their own; their bytes live in the video
storage.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "batch"


def upgrade() -> None:
    op.add_column("tasks", sa.Column("settings", postgresql.JSONB(), nullable=True), schema=SCHEMA)
    op.add_column(
        "tasks",
        sa.Column("price_options", sa.Text(), nullable=False, server_default=sa.text("''")),
        schema=SCHEMA,
    )
    op.add_column(
        "tasks", sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True), schema=SCHEMA
    )
    op.add_column("tasks", sa.Column("last_error", sa.Text(), nullable=True), schema=SCHEMA)
    op.create_table(
        "input_files",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("tenant_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_index("ix_input_files_tenant", "input_files", ["tenant_id", "id"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("ix_input_files_tenant", table_name="input_files", schema=SCHEMA)
    op.drop_table("input_files", schema=SCHEMA)
    for column in ("last_error", "next_attempt_at", "price_options", "settings"):
        op.drop_column("tasks", column, schema=SCHEMA)
