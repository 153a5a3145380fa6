"""Operator keys with roles, and the video access audit log (issue 8).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

S = "billing"


def upgrade() -> None:
    op.create_table(
        "admin_keys",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("key_hash", sa.Text, nullable=False, unique=True),
        sa.Column("key_prefix", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('admin', 'finance')", name="ck_admin_keys_role"),
        schema=S,
    )
    op.create_table(
        "video_access_log",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("client_address", sa.Text, nullable=False),
        sa.Column("batch_id", sa.Text, nullable=False),
        sa.Column("task_id", sa.Text, nullable=False),
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("via", sa.Text, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        schema=S,
    )
    op.create_index(
        "ix_billing_video_access_log_tenant_id", "video_access_log", ["tenant_id", "id"], schema=S
    )
    op.create_index("ix_billing_video_access_log_batch_id", "video_access_log", ["batch_id", "id"], schema=S)


def downgrade() -> None:
    op.drop_table("video_access_log", schema=S)
    op.drop_table("admin_keys", schema=S)
