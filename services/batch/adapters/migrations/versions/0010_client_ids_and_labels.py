"""The client's own ids and labels: an item's custom_id and metadata, a batch's name and metadata.

Stored as given and echoed in every task view, event, webhook and results line (issue 25). A
custom_id is unique within its batch by the create rule (the batch service's validation), not by
an index: an index would cost every create of 10,000 items a second B-tree, and nothing looks a
task up by its custom_id. Batch lists filter by name (an index per tenant) and by metadata
containment (a GIN index); both are partial, so batches without them cost nothing.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "batch"


def upgrade() -> None:
    op.add_column("tasks", sa.Column("custom_id", sa.Text(), nullable=True), schema=SCHEMA)
    op.add_column("tasks", sa.Column("metadata", postgresql.JSONB(), nullable=True), schema=SCHEMA)
    op.add_column("batches", sa.Column("name", sa.Text(), nullable=True), schema=SCHEMA)
    op.add_column("batches", sa.Column("metadata", postgresql.JSONB(), nullable=True), schema=SCHEMA)
    op.create_index(
        "ix_batches_tenant_name",
        "batches",
        ["tenant_id", "name", "created_at", "id"],
        schema=SCHEMA,
        postgresql_where=sa.text("name IS NOT NULL"),
    )
    op.create_index(
        "ix_batches_metadata",
        "batches",
        ["metadata"],
        schema=SCHEMA,
        postgresql_using="gin",
        postgresql_ops={"metadata": "jsonb_path_ops"},
        postgresql_where=sa.text("metadata IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_batches_metadata", table_name="batches", schema=SCHEMA)
    op.drop_index("ix_batches_tenant_name", table_name="batches", schema=SCHEMA)
    op.drop_column("batches", "metadata", schema=SCHEMA)
    op.drop_column("batches", "name", schema=SCHEMA)
    op.drop_column("tasks", "metadata", schema=SCHEMA)
    op.drop_column("tasks", "custom_id", schema=SCHEMA)
