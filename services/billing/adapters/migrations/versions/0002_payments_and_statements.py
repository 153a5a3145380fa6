"""Billing: paid credits (payments account, purchases), payment records, per-model transfers, frozen costs.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "billing"
SYSTEM_KINDS = "('revenue', 'grants', 'payments')"
ACCOUNT_KINDS = "('available', 'hold', 'revenue', 'grants', 'payments')"
REF_TYPES = "('topup', 'purchase', 'batch_upfront', 'batch_capture', 'batch_refund', 'batch_settle')"


def upgrade() -> None:
    # A second source account: paid credits come from `payments`, promotional ones from `grants`.
    op.drop_constraint("ck_accounts_kind", "accounts", schema=S)
    op.drop_constraint("ck_accounts_not_negative", "accounts", schema=S)
    op.drop_constraint("ck_accounts_owner", "accounts", schema=S)
    op.create_check_constraint("ck_accounts_kind", "accounts", f"kind IN {ACCOUNT_KINDS}", schema=S)
    op.create_check_constraint(
        "ck_accounts_not_negative", "accounts", f"kind IN {SYSTEM_KINDS} OR balance >= 0", schema=S
    )
    op.create_check_constraint(
        "ck_accounts_owner",
        "accounts",
        "(kind = 'available' AND tenant_id IS NOT NULL AND batch_id IS NULL)"
        " OR (kind = 'hold' AND tenant_id IS NOT NULL AND batch_id IS NOT NULL)"
        f" OR (kind IN {SYSTEM_KINDS} AND tenant_id IS NULL AND batch_id IS NULL AND balance = 0)",
        schema=S,
    )
    op.drop_index("uq_accounts_system_kind", "accounts", schema=S)
    op.create_index(
        "uq_accounts_system_kind",
        "accounts",
        ["kind"],
        unique=True,
        schema=S,
        postgresql_where=sa.text(f"kind IN {SYSTEM_KINDS}"),
    )
    op.execute(f"INSERT INTO {S}.accounts (kind) VALUES ('payments')")

    op.drop_constraint("ck_transfers_ref_type", "transfers", schema=S)
    op.create_check_constraint("ck_transfers_ref_type", "transfers", f"ref_type IN {REF_TYPES}", schema=S)
    op.add_column("transfers", sa.Column("model", sa.Text, nullable=True), schema=S)
    op.add_column(
        "batch_hold_lines",
        sa.Column("provider_cost_usd_micros", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        schema=S,
    )

    op.create_table(
        "payments",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey(f"{S}.tenants.id"), nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("reference", sa.Text, nullable=False),
        sa.Column("payment_intent", sa.Text, nullable=True),
        sa.Column("pack_id", sa.Text, nullable=True),
        sa.Column("credits", sa.BigInteger, nullable=False),
        sa.Column("amount_usd_cents", sa.BigInteger, nullable=False),
        sa.Column("transfer_id", sa.BigInteger, sa.ForeignKey(f"{S}.transfers.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("provider IN ('stripe', 'invoice')", name="ck_payments_provider"),
        sa.CheckConstraint("credits > 0", name="ck_payments_credits_positive"),
        sa.CheckConstraint("amount_usd_cents >= 0", name="ck_payments_amount_not_negative"),
        sa.UniqueConstraint("provider", "reference", name="uq_payments_provider_reference"),
        schema=S,
    )
    op.create_index(
        "uq_payments_payment_intent",
        "payments",
        ["provider", "payment_intent"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("payment_intent IS NOT NULL"),
    )
    op.create_index("ix_payments_tenant_id", "payments", ["tenant_id"], schema=S)

    op.create_table(
        "payment_events",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=True),
        sa.Column("event_type", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("tenant_id", sa.Uuid, nullable=True),
        sa.Column("payment_reference", sa.Text, nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=S,
    )
    op.create_index(
        "uq_payment_events_provider_event_id",
        "payment_events",
        ["provider", "event_id"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("event_id IS NOT NULL"),
    )
    # Statements and margins read a month of one account's entries / of captures.
    op.create_index(
        "ix_ledger_entries_account_id_created_at", "ledger_entries", ["account_id", "created_at"], schema=S
    )
    op.create_index(
        "ix_transfers_capture_created_at",
        "transfers",
        ["created_at"],
        schema=S,
        postgresql_where=sa.text("ref_type = 'batch_capture'"),
    )


def downgrade() -> None:
    op.drop_index("ix_transfers_capture_created_at", "transfers", schema=S)
    op.drop_index("ix_ledger_entries_account_id_created_at", "ledger_entries", schema=S)
    op.drop_table("payment_events", schema=S)
    op.drop_table("payments", schema=S)
    op.drop_column("batch_hold_lines", "provider_cost_usd_micros", schema=S)
    op.drop_column("transfers", "model", schema=S)
    # Fails while purchases exist: paid credits cannot be dropped silently.
    op.execute(f"DELETE FROM {S}.accounts WHERE kind = 'payments'")
