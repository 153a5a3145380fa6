"""Billing schema: tenants, API keys, accounts, transfers, ledger entries, batch holds, outbox.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from libs.messaging.outbox import outbox_notify_ddl

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "billing"
REF_TYPES = "('topup', 'batch_upfront', 'batch_capture', 'batch_refund', 'batch_settle')"


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        _created_at(),
        schema=S,
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey(f"{S}.tenants.id"), nullable=False),
        sa.Column("key_hash", sa.Text, nullable=False, unique=True),
        sa.Column("key_prefix", sa.Text, nullable=False),
        _created_at(),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        schema=S,
    )
    op.create_index("ix_billing_api_keys_tenant_id", "api_keys", ["tenant_id"], schema=S)

    op.create_table(
        "accounts",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey(f"{S}.tenants.id"), nullable=True),
        sa.Column("batch_id", sa.Uuid, nullable=True),
        sa.Column("balance", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        _created_at(),
        sa.CheckConstraint("kind IN ('available', 'hold', 'revenue', 'grants')", name="ck_accounts_kind"),
        sa.CheckConstraint("kind IN ('revenue', 'grants') OR balance >= 0", name="ck_accounts_not_negative"),
        sa.CheckConstraint(
            "(kind = 'available' AND tenant_id IS NOT NULL AND batch_id IS NULL)"
            " OR (kind = 'hold' AND tenant_id IS NOT NULL AND batch_id IS NOT NULL)"
            " OR (kind IN ('revenue', 'grants') AND tenant_id IS NULL AND batch_id IS NULL AND balance = 0)",
            name="ck_accounts_owner",
        ),
        schema=S,
    )
    op.create_index(
        "uq_accounts_available_per_tenant",
        "accounts",
        ["tenant_id"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("kind = 'available'"),
    )
    op.create_index(
        "uq_accounts_hold_per_batch",
        "accounts",
        ["batch_id"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("kind = 'hold'"),
    )
    op.create_index(
        "uq_accounts_system_kind",
        "accounts",
        ["kind"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("kind IN ('revenue', 'grants')"),
    )
    op.create_index(
        "ix_accounts_hold_by_tenant",
        "accounts",
        ["tenant_id"],
        schema=S,
        postgresql_where=sa.text("kind = 'hold'"),
    )
    op.execute(f"INSERT INTO {S}.accounts (kind) VALUES ('revenue'), ('grants')")

    op.create_table(
        "transfers",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("key", sa.Text, nullable=False, unique=True),
        sa.Column("ref_type", sa.Text, nullable=False),
        sa.Column("ref_id", sa.Text, nullable=False),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("batch_id", sa.Uuid, nullable=True),
        sa.Column("debit_account_id", sa.BigInteger, sa.ForeignKey(f"{S}.accounts.id"), nullable=False),
        sa.Column("credit_account_id", sa.BigInteger, sa.ForeignKey(f"{S}.accounts.id"), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        _created_at(),
        sa.CheckConstraint(f"ref_type IN {REF_TYPES}", name="ck_transfers_ref_type"),
        sa.CheckConstraint("amount > 0", name="ck_transfers_amount_positive"),
        sa.CheckConstraint("debit_account_id <> credit_account_id", name="ck_transfers_distinct_accounts"),
        schema=S,
    )
    op.create_index("ix_transfers_batch_id", "transfers", ["batch_id"], schema=S)

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("transfer_id", sa.BigInteger, sa.ForeignKey(f"{S}.transfers.id"), nullable=False),
        sa.Column("account_id", sa.BigInteger, sa.ForeignKey(f"{S}.accounts.id"), nullable=False),
        sa.Column("tenant_id", sa.Uuid, nullable=True),
        sa.Column("batch_id", sa.Uuid, nullable=True),
        sa.Column("ref_type", sa.Text, nullable=False),
        sa.Column("ref_id", sa.Text, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("balance_after", sa.BigInteger, nullable=True),
        _created_at(),
        sa.CheckConstraint("amount <> 0", name="ck_ledger_entries_amount_nonzero"),
        schema=S,
    )
    op.create_index("ix_ledger_entries_account_id_id", "ledger_entries", ["account_id", "id"], schema=S)
    op.create_index("ix_ledger_entries_transfer_id", "ledger_entries", ["transfer_id"], schema=S)

    op.create_table(
        "batch_holds",
        sa.Column("batch_id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey(f"{S}.tenants.id"), nullable=False),
        sa.Column("hold_account_id", sa.BigInteger, sa.ForeignKey(f"{S}.accounts.id"), nullable=False),
        sa.Column("item_count", sa.BigInteger, nullable=False),
        sa.Column("frozen", sa.BigInteger, nullable=False),
        sa.Column("available_before", sa.BigInteger, nullable=False),
        sa.Column("available_after", sa.BigInteger, nullable=False),
        sa.Column("captured", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("refunded", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("outcomes_applied", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("released", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("settlement_status", sa.Text, nullable=False, server_default=sa.text("'pending'")),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        _created_at(),
        sa.CheckConstraint(
            "settlement_status IN ('pending', 'settled', 'refunded')", name="ck_batch_holds_settlement_status"
        ),
        sa.CheckConstraint("captured + refunded + released <= frozen", name="ck_batch_holds_within_frozen"),
        sa.CheckConstraint("outcomes_applied <= item_count", name="ck_batch_holds_outcomes_within_items"),
        schema=S,
    )
    op.create_index("ix_billing_batch_holds_tenant_id", "batch_holds", ["tenant_id"], schema=S)
    op.create_table(
        "batch_hold_lines",
        sa.Column("batch_id", sa.Uuid, sa.ForeignKey(f"{S}.batch_holds.batch_id"), nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("unit_price", sa.BigInteger, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "model", name="pk_batch_hold_lines"),
        sa.CheckConstraint("unit_price > 0", name="ck_batch_hold_lines_price_positive"),
        sa.CheckConstraint("count > 0", name="ck_batch_hold_lines_count_positive"),
        schema=S,
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("message_id", sa.Text, nullable=False, unique=True),
        sa.Column("routing_key", sa.Text, nullable=False),
        sa.Column("message_type", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("headers", postgresql.JSONB, nullable=False),
        _created_at(),
        schema=S,
    )
    for statement in outbox_notify_ddl(S):
        op.execute(statement)


def downgrade() -> None:
    op.execute(f"DROP TRIGGER IF EXISTS outbox_notify ON {S}.outbox")
    op.execute(f"DROP FUNCTION IF EXISTS {S}.outbox_notify()")
    for table in (
        "outbox",
        "batch_hold_lines",
        "batch_holds",
        "ledger_entries",
        "transfers",
        "accounts",
        "api_keys",
        "tenants",
    ):
        op.drop_table(table, schema=S)
