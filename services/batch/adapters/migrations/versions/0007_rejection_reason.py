"""Why a rejected batch was rejected: short of credits, or a model left the price list.

A batch whose model was withdrawn between its quote and its reservation stayed `reserving`:
every recovery round asked billing again and was refused again, and the batch held one of the
tenant's open-batch slots for good. It is now rejected with `model_unavailable`; the batches
rejected before this column existed were all short of credits.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("batches", sa.Column("rejection_reason", sa.Text(), nullable=True), schema="batch")
    op.execute("UPDATE batch.batches SET rejection_reason = 'insufficient_credits' WHERE status = 'rejected'")


def downgrade() -> None:
    op.drop_column("batches", "rejection_reason", schema="batch")
