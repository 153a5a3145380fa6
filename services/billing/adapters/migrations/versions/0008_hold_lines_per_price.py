"""A batch hold keeps one line per (model, duration, unit price) (issue 25, ADR-090).

Priced generation settings (a resolution, audio on) give items of one model and duration
different prices; each price is its own frozen line, so captures still match a line by price.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "billing"


def upgrade() -> None:
    op.drop_constraint("pk_batch_hold_lines", "batch_hold_lines", type_="primary", schema=S)
    op.create_primary_key(
        "pk_batch_hold_lines",
        "batch_hold_lines",
        ["batch_id", "model", "duration_seconds", "unit_price"],
        schema=S,
    )


def downgrade() -> None:
    op.drop_constraint("pk_batch_hold_lines", "batch_hold_lines", type_="primary", schema=S)
    op.create_primary_key(
        "pk_batch_hold_lines", "batch_hold_lines", ["batch_id", "model", "duration_seconds"], schema=S
    )
