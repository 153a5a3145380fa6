"""Stored quotes (issue 29, ADR-123): a batch priced without freezing, honoured once.

A quote keeps its priced lines and the fingerprint of the create body it priced; a reservation
that cites it freezes exactly those lines' price and records its batch (`batch_id`, unique: a
quote is used at most once) in the same transaction.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

S = "billing"


def upgrade() -> None:
    op.create_table(
        "quotes",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey(f"{S}.tenants.id"), nullable=False),
        sa.Column("api_key_id", sa.Uuid, nullable=True),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("lines", postgresql.JSONB, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("batch_id", sa.Uuid, nullable=True, unique=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("total >= 0", name="ck_quotes_total"),
        sa.CheckConstraint("(batch_id IS NULL) = (used_at IS NULL)", name="ck_quotes_used"),
        schema=S,
    )
    op.create_index("ix_quotes_tenant_id", "quotes", ["tenant_id"], schema=S)


def downgrade() -> None:
    op.drop_table("quotes", schema=S)
