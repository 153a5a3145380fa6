"""Customer console access (issue 24): console users, invites, sessions, failed sign-ins per
email, and each tenant's activity log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

S = "billing"
ROLES = "role IN ('owner', 'developer', 'finance')"


def _moment(name: str, *, nullable: bool = False, now: bool = False) -> sa.Column[object]:
    default = sa.func.now() if now else None
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("billing.tenants.id"), nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("invite_id", sa.Uuid, nullable=True),
        _moment("created_at", now=True),
        _moment("removed_at", nullable=True),
        sa.CheckConstraint(ROLES, name="ck_console_users_role"),
        schema=S,
    )
    op.create_index(
        "uq_console_users_active_email",
        "console_users",
        ["email"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("removed_at IS NULL"),
    )
    op.create_index("ix_console_users_tenant_id", "console_users", ["tenant_id"], schema=S)
    op.create_table(
        "console_invites",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("billing.tenants.id"), nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("invited_by_kind", sa.Text, nullable=False),
        sa.Column("invited_by_id", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("invited_by_label", sa.Text, nullable=False, server_default=sa.text("''")),
        _moment("created_at", now=True),
        _moment("expires_at"),
        _moment("accepted_at", nullable=True),
        _moment("revoked_at", nullable=True),
        sa.Column("user_id", sa.Uuid, nullable=True),
        sa.CheckConstraint(ROLES, name="ck_console_invites_role"),
        schema=S,
    )
    op.create_index("ix_console_invites_tenant_id", "console_invites", ["tenant_id"], schema=S)
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("user_id", sa.Uuid, sa.ForeignKey("billing.console_users.id"), nullable=False),
        sa.Column("csrf_token", sa.Text, nullable=False),
        sa.Column("client_address", sa.Text, nullable=False, server_default=sa.text("''")),
        _moment("created_at"),
        _moment("last_seen_at"),
        _moment("expires_at"),
        _moment("revoked_at", nullable=True),
        schema=S,
    )
    op.create_index("ix_console_sessions_user_id", "console_sessions", ["user_id"], schema=S)
    op.create_table(
        "console_sign_in_failures",
        sa.Column("email", sa.Text, primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        _moment("window_started_at"),
        _moment("locked_until", nullable=True),
        schema=S,
    )
    op.create_table(
        "tenant_activity",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("billing.tenants.id"), nullable=False),
        _moment("occurred_at"),
        *(
            sa.Column(name, sa.Text, nullable=False)
            for name in (
                "actor_kind",
                "actor_id",
                "actor_label",
                "action",
                "target_kind",
                "target_id",
                "detail",
                "client_address",
            )
        ),
        schema=S,
    )
    op.create_index("ix_tenant_activity_tenant_id", "tenant_activity", ["tenant_id", "id"], schema=S)


def downgrade() -> None:
    for table in (
        "tenant_activity",
        "console_sign_in_failures",
        "console_sessions",
        "console_invites",
        "console_users",
    ):
        op.drop_table(table, schema=S)
