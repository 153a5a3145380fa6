"""The budget key and quote a batch was created with, kept for its freeze (issue 29, ADR-121).

A batch whose create crashed between its insert and its freeze is frozen later by the recovery
loop; with only the batch row to go on it used to be frozen against its tenant and project
budgets alone and re-priced (ADR-121's trade-off). `api_key_id` and `quote_id` (NULL for none)
let that freeze count the key's budget and honour the quote, as the create would have. Nullable
columns without a default: adding them rewrites nothing.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "batch"


def upgrade() -> None:
    op.add_column("batches", sa.Column("api_key_id", sa.Text(), nullable=True), schema=SCHEMA)
    op.add_column("batches", sa.Column("quote_id", sa.Text(), nullable=True), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("batches", "quote_id", schema=SCHEMA)
    op.drop_column("batches", "api_key_id", schema=SCHEMA)
